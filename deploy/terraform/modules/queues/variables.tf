variable "queues" {
  type = map(object({
    name                  = string
    visibility_timeout_s  = number
    message_retention_s   = number
    oldest_age_alarm_s    = number
    receive_wait_s        = optional(number, 20)
    dlq_message_retention = optional(number, 1209600)
  }))
  description = <<-EOT
    The three queues, keyed high, normal and ingest. name is what QF_QUEUE_<KEY> carries;
    visibility_timeout_s must outlast one consumer's hold on a message (worker: the backend
    call within the reply window; writer: batch gathering plus the insert);
    oldest_age_alarm_s is the ApproximateAgeOfOldestMessage alarm threshold (for high and
    normal: a little under the reply window, since older messages can no longer be answered).
  EOT

  validation {
    condition     = toset(keys(var.queues)) == toset(["high", "normal", "ingest"])
    error_message = "queues must have exactly the keys high, normal and ingest."
  }

  validation {
    condition     = alltrue([for q in values(var.queues) : can(regex("^[A-Za-z0-9_-]{1,70}$", q.name))])
    error_message = "queue names: 1-70 letters, digits, - or _ (room is left for the DLQ suffix)."
  }

  validation {
    condition     = alltrue([for q in values(var.queues) : q.visibility_timeout_s >= 0 && q.visibility_timeout_s <= 43200])
    error_message = "visibility_timeout_s must be between 0 and 43200."
  }

  validation {
    condition = alltrue([for q in values(var.queues) :
    q.message_retention_s >= 60 && q.message_retention_s <= 1209600 && q.dlq_message_retention >= 60 && q.dlq_message_retention <= 1209600])
    error_message = "message retention must be between 60 and 1209600 seconds."
  }

  validation {
    condition     = alltrue([for q in values(var.queues) : q.receive_wait_s >= 0 && q.receive_wait_s <= 20])
    error_message = "receive_wait_s (long polling) must be between 0 and 20."
  }
}

variable "dlq_suffix" {
  type        = string
  description = "Suffix of each dead-letter queue's name: <queue><suffix>, as QF_DLQ_SUFFIX tells the processes."
  default     = "-dlq"

  validation {
    condition     = can(regex("^[A-Za-z0-9_-]{1,10}$", var.dlq_suffix))
    error_message = "dlq_suffix: 1-10 letters, digits, - or _."
  }
}

variable "max_receive_count" {
  type        = number
  description = "Receives before a message moves to its DLQ (redrive policy maxReceiveCount)."
  default     = 3

  validation {
    condition     = var.max_receive_count >= 1 && var.max_receive_count <= 1000
    error_message = "max_receive_count must be between 1 and 1000."
  }
}

variable "max_message_bytes" {
  type        = number
  description = "MaximumMessageSize of every queue and DLQ, QF_MAX_MESSAGE_BYTES of the processes (SQS allows up to 1 MiB)."
  default     = 1048576

  validation {
    condition     = var.max_message_bytes >= 1024 && var.max_message_bytes <= 1048576
    error_message = "max_message_bytes must be between 1024 and 1048576 (SQS's limit)."
  }
}

variable "kms_key_arn" {
  type        = string
  description = "KMS key for server-side encryption of every queue."

  validation {
    condition     = can(regex("^arn:aws[a-z-]*:kms:", var.kms_key_arn))
    error_message = "kms_key_arn must be a KMS key ARN."
  }
}

variable "alarm_topic_arn" {
  type        = string
  description = "SNS topic that receives the queue alarms."

  validation {
    condition     = can(regex("^arn:aws[a-z-]*:sns:", var.alarm_topic_arn))
    error_message = "alarm_topic_arn must be an SNS topic ARN."
  }
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
