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

variable "tags" {
  type        = map(string)
  description = "Tags added to every resource."
  default     = {}
}
