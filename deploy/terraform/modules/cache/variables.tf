variable "name" {
  type        = string
  description = "Name prefix of the stack (replication group id and secret names)."

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{1,30}$", var.name))
    error_message = "name must be 2-31 lowercase letters, digits or dashes, starting with a letter."
  }
}

variable "vpc_id" {
  type        = string
  description = "VPC of the replication group."
}

variable "subnet_ids" {
  type        = list(string)
  description = "Private subnets in two or more AZs."

  validation {
    condition     = length(var.subnet_ids) >= 2
    error_message = "Multi-AZ needs subnets in at least two AZs."
  }
}

variable "client_security_group_ids" {
  type        = list(string)
  description = "Security groups allowed to connect (the tasks' group); nothing else is."

  validation {
    condition     = length(var.client_security_group_ids) > 0
    error_message = "At least one client security group is needed."
  }
}

variable "node_type" {
  type        = string
  description = "ElastiCache node type."
  default     = "cache.r7g.large"

  validation {
    condition     = startswith(var.node_type, "cache.")
    error_message = "node_type must be an ElastiCache node type such as cache.r7g.large."
  }
}

variable "replicas" {
  type        = number
  description = "Read replicas besides the primary (at least one for automatic failover)."
  default     = 1

  validation {
    condition     = var.replicas >= 1 && var.replicas <= 5
    error_message = "replicas must be between 1 and 5."
  }
}

variable "engine_version" {
  type        = string
  description = "Redis OSS engine version."
  default     = "7.1"
}

variable "parameter_group_family" {
  type        = string
  description = "Family of the module's parameter group (maxmemory-policy noeviction; cluster mode disabled: queuefront uses pub/sub and MGET on one shard); must match engine_version."
  default     = "redis7"

  validation {
    condition     = can(regex("^(redis|valkey)[0-9]", var.parameter_group_family))
    error_message = "parameter_group_family must be an ElastiCache family such as redis7."
  }
}

variable "memory_alarm_percent" {
  type        = number
  description = "DatabaseMemoryUsagePercentage above which the memory alarm pages (a full Redis refuses writes under noeviction)."
  default     = 80

  validation {
    condition     = var.memory_alarm_percent > 0 && var.memory_alarm_percent < 100
    error_message = "memory_alarm_percent must be between 0 and 100."
  }
}

variable "auth_token_version" {
  type        = number
  description = "Bump to generate a new auth token (it is written to Secrets Manager write-only, then read back for ElastiCache)."
  default     = 1

  validation {
    condition     = var.auth_token_version >= 1 && floor(var.auth_token_version) == var.auth_token_version
    error_message = "auth_token_version must be a positive integer."
  }
}

variable "snapshot_retention_days" {
  type        = number
  description = "Days of automatic snapshots (replies and cache are disposable; tallies are rebuilt from Postgres)."
  default     = 1

  validation {
    condition     = var.snapshot_retention_days >= 0 && var.snapshot_retention_days <= 35
    error_message = "snapshot_retention_days must be between 0 and 35."
  }
}

variable "kms_key_arn" {
  type        = string
  description = "KMS key for data at rest, secrets and logs."

  validation {
    condition     = can(regex("^arn:aws[a-z-]*:kms:", var.kms_key_arn))
    error_message = "kms_key_arn must be a KMS key ARN."
  }
}

variable "log_retention_days" {
  type        = number
  description = "Retention of the slow log group."
  default     = 365

  validation {
    condition     = contains([1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288, 3653], var.log_retention_days)
    error_message = "log_retention_days must be a CloudWatch Logs retention value."
  }
}

variable "alarm_topic_arn" {
  type        = string
  description = "SNS topic (the paging topic) for the memory and evictions alarms."
}

variable "runbook_base_url" {
  type        = string
  description = "Where docs/runbooks is published; each alarm's description links <runbook_base_url>/<alarm>.md."
  default     = "docs/runbooks"
}

variable "tags" {
  type        = map(string)
  description = "Tags added to every resource."
  default     = {}
}
