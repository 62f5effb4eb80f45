output "url" {
  description = "Public entry point (CloudFront)."
  value       = "https://${module.edge.cloudfront_domain_name}"
}

output "api_gateway_endpoint" {
  description = "API Gateway endpoint behind CloudFront."
  value       = module.edge.api_endpoint
}

output "cluster_name" {
  description = "ECS cluster."
  value       = module.compute.cluster_name
}

output "service_names" {
  description = "ECS services by process."
  value       = module.compute.service_names
}

output "queue_urls" {
  description = "SQS queue URLs by key."
  value       = module.queues.queue_urls
}

output "dlq_names" {
  description = "Dead-letter queue names by key."
  value       = module.queues.dlq_names
}

output "migrate_run_task_command" {
  description = "Run the one-off migration task."
  value       = module.compute.migrate_run_task_command
}

output "admin_run_task_commands" {
  description = "Operator tasks of the runbooks: redrive_<queue> (DLQ back to its queue) and reconcile (tallies from Postgres)."
  value       = module.compute.admin_run_task_commands
}

output "dashboard_name" {
  description = "CloudWatch dashboard with the SLA view."
  value       = module.observability.dashboard_name
}

output "alarm_topic_arn" {
  description = "SNS topic of every alarm."
  value       = module.observability.alarm_topic_arn
}

output "worker_backlog_target" {
  description = "Backlog per worker task that autoscaling holds."
  value       = module.autoscaling.worker_backlog_target
}

output "writer_backlog_target" {
  description = "Backlog per writer task that autoscaling holds."
  value       = module.autoscaling.writer_backlog_target
}
