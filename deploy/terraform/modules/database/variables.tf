variable "name" {
  type        = string
  description = "Name prefix of the stack (instance identifier and secret names)."

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{1,30}$", var.name))
    error_message = "name must be 2-31 lowercase letters, digits or dashes, starting with a letter."
  }
}

variable "vpc_id" {
  type        = string
  description = "VPC of the instance."
}

variable "subnet_ids" {
  type        = list(string)
  description = "Private subnets in two or more AZs."

  validation {
    condition     = length(var.subnet_ids) >= 2
    error_message = "A DB subnet group needs subnets in at least two AZs."
  }
}

variable "client_security_group_ids" {
  type        = list(string)
  description = "Security groups allowed to connect: the writer's and the migrate task's group, nothing else."

  validation {
    condition     = length(var.client_security_group_ids) > 0
    error_message = "At least one client security group is needed."
  }
}

variable "database_name" {
  type        = string
  description = "Database created on the instance."
  default     = "queuefront"

  validation {
    condition     = can(regex("^[a-z][a-z0-9_]{0,62}$", var.database_name))
    error_message = "database_name must be a lowercase identifier."
  }
}

variable "username" {
  type        = string
  description = "Master user name."
  default     = "queuefront"

  validation {
    condition     = can(regex("^[a-z][a-z0-9_]{0,62}$", var.username)) && !contains(["postgres", "admin", "rdsadmin"], var.username)
    error_message = "username must be a lowercase identifier and not a reserved name."
  }
}

variable "password_rotation_days" {
  type        = number
  description = "Days between rotations of the RDS-managed master password (RDS rotates its own secret; the value never passes through Terraform)."
  default     = 30

  validation {
    condition     = var.password_rotation_days >= 1 && var.password_rotation_days <= 90 && floor(var.password_rotation_days) == var.password_rotation_days
    error_message = "password_rotation_days must be a whole number of days between 1 and 90."
  }
}

variable "engine_major_version" {
  type        = string
  description = "PostgreSQL major version (e.g. \"16\"); RDS applies the minor versions (auto_minor_version_upgrade)."
  default     = "16"

  validation {
    condition     = can(regex("^[0-9]+$", var.engine_major_version))
    error_message = "engine_major_version is the major version alone, such as \"16\": a minor one would show as drift after RDS's automatic minor upgrades."
  }
}

variable "ca_cert_identifier" {
  type        = string
  description = "The RDS CA that signs the server certificate; the image's bundle (ca_bundle_path) holds it."
  default     = "rds-ca-rsa2048-g1"
}

variable "ca_bundle_path" {
  type        = string
  description = "Path, inside the image, of the RDS CA bundle the clients verify the server with (sslrootcert)."
  default     = "/app/certs/rds-global-bundle.pem"
}

variable "instance_class" {
  type        = string
  description = "RDS instance class."
  default     = "db.r6g.large"

  validation {
    condition     = startswith(var.instance_class, "db.")
    error_message = "instance_class must be an RDS class such as db.r6g.large."
  }
}

variable "allocated_storage_gb" {
  type        = number
  description = "Initial storage (gp3)."
  default     = 100

  validation {
    condition     = var.allocated_storage_gb >= 20 && var.allocated_storage_gb <= 65536
    error_message = "allocated_storage_gb must be between 20 and 65536."
  }
}

variable "max_allocated_storage_gb" {
  type        = number
  description = "Storage autoscaling ceiling."
  default     = 1000

  validation {
    condition     = var.max_allocated_storage_gb >= 20 && var.max_allocated_storage_gb <= 65536
    error_message = "max_allocated_storage_gb must be between 20 and 65536."
  }
}

variable "multi_az" {
  type        = bool
  description = "Synchronous standby in another AZ."
  default     = true
}

variable "backup_retention_days" {
  type        = number
  description = "Days of automated backups (point-in-time recovery)."
  default     = 14

  validation {
    condition     = var.backup_retention_days >= 1 && var.backup_retention_days <= 35
    error_message = "backup_retention_days must be between 1 and 35 (0 would turn backups off)."
  }
}

variable "deletion_protection" {
  type        = bool
  description = "Refuse to delete the instance (turn off deliberately before a destroy)."
  default     = true
}

variable "kms_key_arn" {
  type        = string
  description = "KMS key for storage, Performance Insights, logs and the secret."

  validation {
    condition     = can(regex("^arn:aws[a-z-]*:kms:", var.kms_key_arn))
    error_message = "kms_key_arn must be a KMS key ARN."
  }
}

variable "alarm_topic_arn" {
  type        = string
  description = "SNS topic for the database alarms."
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
