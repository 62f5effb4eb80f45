variable "name" {
  type        = string
  description = "Name prefix of the stack."

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{1,30}$", var.name))
    error_message = "name must be 2-31 lowercase letters, digits or dashes, starting with a letter."
  }
}

variable "create_vpc" {
  type        = bool
  description = "true: build a new VPC (public subnets with NAT gateways, private subnets, VPC endpoints). false: use vpc_id and private_subnet_ids."
  default     = true
}

variable "vpc_id" {
  type        = string
  description = "Existing VPC id, used when create_vpc is false."
  default     = null

  validation {
    condition     = var.vpc_id == null || can(regex("^vpc-[0-9a-f]+$", var.vpc_id))
    error_message = "vpc_id must look like vpc-0123abcd."
  }
}

variable "private_subnet_ids" {
  type        = list(string)
  description = "Existing private subnet ids (two or more AZs) for tasks, data stores and the VPC link, used when create_vpc is false. They need a route to the AWS APIs (NAT or VPC endpoints)."
  default     = []

  validation {
    condition     = alltrue([for s in var.private_subnet_ids : can(regex("^subnet-[0-9a-f]+$", s))])
    error_message = "private_subnet_ids must look like subnet-0123abcd."
  }
}

variable "vpc_cidr" {
  type        = string
  description = "CIDR of the new VPC (create_vpc = true)."
  default     = "10.40.0.0/16"

  validation {
    condition     = can(cidrnetmask(var.vpc_cidr)) && tonumber(split("/", var.vpc_cidr)[1]) <= 20
    error_message = "vpc_cidr must be an IPv4 CIDR of /20 or larger."
  }
}

variable "availability_zones" {
  type        = list(string)
  description = "The AZs of the new VPC, by name (e.g. eu-west-1a): named, not taken from whatever the account lists, so a plan never moves subnets when AWS adds or retires a zone."
  default     = []

  validation {
    condition     = length(var.availability_zones) == 0 || (length(var.availability_zones) >= 2 && length(var.availability_zones) <= 6 && length(distinct(var.availability_zones)) == length(var.availability_zones))
    error_message = "availability_zones must name 2 to 6 distinct zones."
  }
}

variable "single_nat_gateway" {
  type        = bool
  description = "One NAT gateway for all AZs (cheaper, an AZ outage cuts egress) instead of one per AZ."
  default     = false
}

variable "enable_vpc_endpoints" {
  type        = bool
  description = "Interface endpoints for SQS, ECR, CloudWatch Logs/metrics, Secrets Manager and KMS plus an S3 gateway endpoint, so AWS API traffic never leaves the VPC (create_vpc = true)."
  default     = true
}

variable "flow_log_retention_days" {
  type        = number
  description = "Retention of the VPC flow log group."
  default     = 365

  validation {
    condition     = contains([1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288, 3653], var.flow_log_retention_days)
    error_message = "flow_log_retention_days must be a CloudWatch Logs retention value."
  }
}

variable "kms_key_arn" {
  type        = string
  description = "KMS key for the flow log group."

  validation {
    condition     = can(regex("^arn:aws[a-z-]*:kms:", var.kms_key_arn))
    error_message = "kms_key_arn must be a KMS key ARN."
  }
}

variable "tags" {
  type        = map(string)
  description = "Tags added to every resource."
  default     = {}
}
