variable "name" {
  type        = string
  description = "Name prefix of the stack."
}

variable "kms_key_arn" {
  type        = string
  description = "KMS key of the alarm topic."
}

variable "alarm_emails" {
  type        = list(string)
  description = "E-mail addresses subscribed to the alarm topic (each must confirm)."
  default     = []

  validation {
    condition     = alltrue([for e in var.alarm_emails : can(regex("^[^@\\s]+@[^@\\s]+\\.[^@\\s]+$", e))])
    error_message = "alarm_emails must be e-mail addresses."
  }
}

variable "cluster_name" {
  type        = string
  description = "ECS cluster (for the service alarms); null before the cluster exists is not allowed."
}

variable "service_names" {
  type        = map(string)
  description = "ECS service names by process (api, worker, writer)."
}

variable "alb_arn_suffix" {
  type        = string
  description = "ALB ARN suffix (CloudWatch dimension LoadBalancer)."
}

variable "target_group_arn_suffix" {
  type        = string
  description = "api target group ARN suffix (CloudWatch dimension TargetGroup)."
}

variable "api_name" {
  type        = string
  description = "API Gateway REST API name (CloudWatch dimension ApiName)."
}

variable "api_stage" {
  type        = string
  description = "The API's stage (CloudWatch dimension Stage)."
}

variable "api_web_acl_name" {
  type        = string
  description = "Name of the regional WAF web ACL on the API's stage (its BlockedRequests are direct calls)."
}

variable "direct_calls_threshold" {
  type        = number
  description = "Requests in 5 minutes the API's WAF may refuse (callers that skipped CloudFront) before the direct-calls alarm fires."
  default     = 100
}

variable "clock_offset_threshold_s" {
  type        = number
  description = "Seconds a process's clock may be off the reference (queuefront_clock_offset_seconds, either way) before the clock alarm pages."
  default     = 1

  validation {
    condition     = var.clock_offset_threshold_s > 0
    error_message = "clock_offset_threshold_s must be positive."
  }
}

variable "alarm_subscriptions" {
  type        = map(object({ protocol = string, endpoint = string }))
  description = "Subscribers of the alarm (paging) topic besides alarm_emails, by a name of your choice: a paging service's HTTPS endpoint, SMS, a Lambda or SQS queue of a chat integration."
  default     = {}

  validation {
    condition     = alltrue([for s in values(var.alarm_subscriptions) : contains(["email", "email-json", "http", "https", "sms", "lambda", "sqs", "firehose", "application"], s.protocol)])
    error_message = "alarm_subscriptions protocols must be SNS protocols (email, https, sms, lambda, sqs, ...)."
  }
}

variable "api_5xx_threshold_percent" {
  type        = number
  description = "Share of API Gateway responses that may be 5xx (504 reply timeouts and 503 overload included) before the alarm fires."
  default     = 5

  validation {
    condition     = var.api_5xx_threshold_percent > 0 && var.api_5xx_threshold_percent <= 100
    error_message = "api_5xx_threshold_percent must be between 0 and 100."
  }
}

variable "queue_names" {
  type        = map(string)
  description = "Queue names by key (high, normal, ingest), for the dashboard."
}

variable "dlq_names" {
  type        = map(string)
  description = "Dead-letter queue names by key (high, normal, ingest), for the dashboard."
}

variable "metrics_namespace" {
  type        = string
  description = "CloudWatch namespace of the queuefront_* metrics (the compute module's collector)."
  default     = "queuefront"
}

variable "reply_timeout_threshold_percent" {
  type        = number
  description = "Share of the api's answers that may be 504 (no reply within the route's window) before the alarm fires."
  default     = 1

  validation {
    condition     = var.reply_timeout_threshold_percent > 0 && var.reply_timeout_threshold_percent <= 100
    error_message = "reply_timeout_threshold_percent must be between 0 and 100."
  }
}

variable "admission_rejection_threshold_percent" {
  type        = number
  description = "Share of the api's requests that admission may refuse with 503 for 10 minutes before the alarm fires."
  default     = 5

  validation {
    condition     = var.admission_rejection_threshold_percent > 0 && var.admission_rejection_threshold_percent <= 100
    error_message = "admission_rejection_threshold_percent must be between 0 and 100."
  }
}

variable "ingest_lag_threshold_s" {
  type        = number
  description = "Average seconds from the api accepting an ingest item to its commit before the alarm fires."
  default     = 60

  validation {
    condition     = var.ingest_lag_threshold_s > 0
    error_message = "ingest_lag_threshold_s must be positive."
  }
}

variable "runbook_base_url" {
  type        = string
  description = "Where docs/runbooks is published (a repository URL); each alarm's description links <runbook_base_url>/<alarm>.md."
  default     = "docs/runbooks"
}

variable "tags" {
  type        = map(string)
  description = "Tags added to every resource."
  default     = {}
}
