variable "name" {
  type        = string
  description = "Name prefix of the stack."

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{1,30}$", var.name))
    error_message = "name must be 2-31 lowercase letters, digits or dashes, starting with a letter."
  }
}

variable "vpc_id" {
  type        = string
  description = "VPC of the ALB and the VPC link."
}

variable "subnet_ids" {
  type        = list(string)
  description = "Private subnets of the internal ALB and the VPC link."

  validation {
    condition     = length(var.subnet_ids) >= 2
    error_message = "An ALB needs subnets in at least two AZs."
  }
}

variable "api_port" {
  type        = number
  description = "Port the api containers listen on (QF_HTTP_PORT)."
  default     = 8080
}

variable "api_probe_port" {
  type        = number
  description = "The api containers' probe port (QF_METRICS_PORT): /healthz, /readyz, /metrics; the ALB health-checks /healthz there."
  default     = 9100
}

variable "alb_certificate_arn" {
  type        = string
  description = "ACM certificate for an HTTPS listener on the internal ALB; null: HTTP inside the VPC (TLS ends at API Gateway)."
  default     = null
}

variable "alb_certificate_domain" {
  type        = string
  description = "Name API Gateway verifies on the ALB's certificate (with alb_certificate_arn)."
  default     = null
}

variable "alb_deletion_protection" {
  type        = bool
  description = "Refuse to delete the ALB."
  default     = true
}

variable "deregistration_delay_s" {
  type        = number
  description = "Time the ALB lets in-flight requests finish on a deregistered api task; above the longest reply window."
  default     = 35

  validation {
    condition     = var.deregistration_delay_s >= 0 && var.deregistration_delay_s <= 3600
    error_message = "deregistration_delay_s must be between 0 and 3600."
  }
}

variable "integration_timeout_ms" {
  type        = number
  description = "API Gateway's wait for the api; the longest route timeout must fit under it (API Gateway's limit is 29-30 s)."
  default     = 29000

  validation {
    condition     = var.integration_timeout_ms >= 50 && var.integration_timeout_ms <= 30000
    error_message = "integration_timeout_ms must be between 50 and 30000."
  }
}

variable "default_throttle" {
  type        = object({ burst = number, rate = number })
  description = "Stage-wide API Gateway throttling: burst (requests) and steady rate (requests/s)."
  default     = { burst = 2000, rate = 1000 }
}

variable "route_throttles" {
  type        = map(object({ burst = number, rate = number }))
  description = "Routes (\"METHOD /path\", API Gateway syntax) with their own throttling (each becomes its own method of the REST API); everything else goes through the stage-wide default_throttle."
  default     = {}

  validation {
    condition     = alltrue([for k in keys(var.route_throttles) : can(regex("^(ANY|GET|POST|PUT|PATCH|DELETE|HEAD|OPTIONS) /", k))])
    error_message = "route_throttles keys must look like \"POST /api/login\"."
  }
}

variable "edge_cached_paths" {
  type        = list(string)
  description = "CloudFront path patterns of public, edge-cached GET routes (their responses carry s-maxage); cached for all viewers, keyed on the path and the query strings edge_cache_query_strings lists for it."
  default     = ["/api/polls", "/api/polls/*/results"]
}

variable "edge_cache_query_strings" {
  type        = map(list(string))
  description = "Per edge-cached path pattern, the query strings its route reads: only these are in its cache key and reach the origin (a path not listed: none)."
  default     = {}

  validation {
    condition     = alltrue([for qs in values(var.edge_cache_query_strings) : length(qs) <= 10])
    error_message = "A cache policy can whitelist at most 10 query strings."
  }
}

variable "edge_max_ttl_s" {
  type        = number
  description = "Upper bound of what CloudFront keeps (the origin's s-maxage decides, default TTL is 0)."
  default     = 300

  validation {
    condition     = var.edge_max_ttl_s >= 1 && var.edge_max_ttl_s <= 31536000
    error_message = "edge_max_ttl_s must be between 1 and 31536000."
  }
}

variable "price_class" {
  type        = string
  description = "CloudFront price class."
  default     = "PriceClass_100"

  validation {
    condition     = contains(["PriceClass_100", "PriceClass_200", "PriceClass_All"], var.price_class)
    error_message = "price_class must be PriceClass_100, PriceClass_200 or PriceClass_All."
  }
}

variable "domain_names" {
  type        = list(string)
  description = "Aliases of the distribution (needs cloudfront_certificate_arn)."
  default     = []
}

variable "cloudfront_certificate_arn" {
  type        = string
  description = "ACM certificate in us-east-1 for domain_names; null: the *.cloudfront.net certificate."
  default     = null
}

variable "cloudfront_log_bucket" {
  type        = string
  description = "S3 bucket domain (bucket.s3.amazonaws.com) for CloudFront standard logs; null: none."
  default     = null
}

variable "waf_rate_limit" {
  type        = number
  description = "Requests one client IP may make in any 5-minute window before WAF blocks it."
  default     = 2000

  validation {
    condition     = var.waf_rate_limit >= 10 && var.waf_rate_limit <= 2000000000
    error_message = "waf_rate_limit must be between 10 and 2000000000."
  }
}

variable "credential_headers" {
  type        = list(string)
  description = "Request headers that carry credentials (queuefront's auth: X-Api-Key, Authorization). The default behaviour forwards every viewer header to the origin, so each of these must be in its cache key, or one client's authenticated answer could be replayed to another."
  default     = ["Authorization", "X-Api-Key"]

  validation {
    condition     = length(var.credential_headers) > 0
    error_message = "credential_headers must name the headers credentials come in."
  }
}

variable "origin_header_name" {
  type        = string
  description = "Header CloudFront adds to every origin request with the origin secret; the ALB forwards only requests that carry it."
  default     = "X-Origin-Verify"
}

variable "origin_secret_version" {
  type        = number
  description = "Bump to generate a new origin secret (with origin_secret_accept_previous = true for that apply)."
  default     = 1

  validation {
    condition     = var.origin_secret_version >= 1 && floor(var.origin_secret_version) == var.origin_secret_version
    error_message = "origin_secret_version must be a positive integer."
  }
}

variable "origin_secret_accept_previous" {
  type        = bool
  description = "The ALB also accepts the secret's previous value (AWSPREVIOUS): on during a rotation, until CloudFront sends the new one."
  default     = false
}

variable "ingest_direct" {
  type = object({
    route_key  = string
    route_name = string
    queue_name = string
    queue_arn  = string
  })
  description = "Send one ingest route straight from API Gateway to the ingest queue (no api pod sees it): route_key as in route_throttles (\"POST /api/polls/{poll_id}/votes\"; it must be one of them), route_name its name in the route table (the writer validates against its sink). null: off."
  default     = null

  validation {
    condition     = var.ingest_direct == null || can(regex("^POST /", var.ingest_direct.route_key))
    error_message = "ingest_direct.route_key must be a POST route such as \"POST /api/polls/{poll_id}/votes\"."
  }
}

variable "manage_api_gateway_account" {
  type        = bool
  description = "Set the account's API Gateway CloudWatch role (an account-and-region-wide setting REST access logs need); false where another stack already sets it."
  default     = true
}

variable "kms_key_arn" {
  type        = string
  description = "The stack's KMS key (API Gateway access logs)."
}

variable "log_retention_days" {
  type        = number
  description = "Retention of the API Gateway and WAF log groups."
  default     = 365

  validation {
    condition     = contains([1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288, 3653], var.log_retention_days)
    error_message = "log_retention_days must be a CloudWatch Logs retention value."
  }
}

variable "tags" {
  type        = map(string)
  description = "Tags added to every resource."
  default     = {}
}
