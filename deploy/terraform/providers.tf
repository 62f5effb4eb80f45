provider "aws" {
  region = var.region

  default_tags {
    tags = merge({ project = "queuefront", stack = var.name }, var.tags)
  }
}

# CloudFront's WAF web ACL (scope CLOUDFRONT) and its log group must be in us-east-1.
provider "aws" {
  alias  = "us_east_1"
  region = "us-east-1"

  default_tags {
    tags = merge({ project = "queuefront", stack = var.name }, var.tags)
  }
}
