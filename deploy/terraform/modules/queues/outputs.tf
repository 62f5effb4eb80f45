output "queue_names" {
  description = "Queue names by key (high, normal, ingest): the values of QF_QUEUE_HIGH, QF_QUEUE_NORMAL, QF_QUEUE_INGEST."
  value       = { for k, q in aws_sqs_queue.main : k => q.name }
}

output "queue_arns" {
  description = "Queue ARNs by key (high, normal, ingest)."
  value       = { for k, q in aws_sqs_queue.main : k => q.arn }
}

output "queue_urls" {
  description = "Queue URLs by key (high, normal, ingest)."
  value       = { for k, q in aws_sqs_queue.main : k => q.id }
}

output "dlq_names" {
  description = "Dead-letter queue names by key."
  value       = { for k, q in aws_sqs_queue.dlq : k => q.name }
}

output "dlq_arns" {
  description = "Dead-letter queue ARNs by key."
  value       = { for k, q in aws_sqs_queue.dlq : k => q.arn }
}
