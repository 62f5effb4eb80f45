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

variable "api_id" {
  type        = string
  description = "API Gateway HTTP API id."
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
