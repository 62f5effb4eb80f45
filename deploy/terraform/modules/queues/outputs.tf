output "queue_names" {
  description = "Queue names by key (high, normal, ingest): the values of QF_QUEUE_HIGH, QF_QUEUE_NORMAL, QF_QUEUE_INGEST."
  value       = local.queue_names
}

output "queue_arns" {
  description = "Queue ARNs by key (high, normal, ingest)."
  value       = local.queue_arns
}

output "queue_urls" {
  description = "Queue URLs by key (high, normal, ingest)."
  value       = { for k, q in aws_cloudcontrolapi_resource.main : k => q.id }
}

output "dlq_names" {
  description = "Dead-letter queue names by key."
  value       = local.dlq_names_made
}

output "dlq_arns" {
  description = "Dead-letter queue ARNs by key."
  value       = local.dlq_arns
}

output "max_message_bytes" {
  description = "MaximumMessageSize of every queue and DLQ (QF_MAX_MESSAGE_BYTES)."
  value       = var.max_message_bytes
}
