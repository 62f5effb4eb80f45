terraform {
  required_version = ">= 1.11.0"

  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = "~> 5.100"
      # WAF for CloudFront (scope CLOUDFRONT) and its log group live in us-east-1.
      configuration_aliases = [aws.us_east_1]
    }
  }
}
