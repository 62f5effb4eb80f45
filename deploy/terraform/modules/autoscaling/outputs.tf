output "worker_backlog_target" {
  description = "Backlog per worker task that target tracking holds (acceptable latency / processing time)."
  value       = local.worker_backlog_target
}

output "writer_backlog_target" {
  description = "Backlog per writer task that target tracking holds."
  value       = local.writer_backlog_target
}

output "policy_arns" {
  description = "Scaling policy ARNs by name."
  value = {
    api_cpu          = aws_appautoscaling_policy.api_cpu.arn
    api_requests     = aws_appautoscaling_policy.api_requests.arn
    worker_backlog   = aws_appautoscaling_policy.worker_backlog.arn
    writer_backlog   = aws_appautoscaling_policy.writer_backlog.arn
    writer_from_zero = aws_appautoscaling_policy.writer_from_zero.arn
    writer_to_zero   = aws_appautoscaling_policy.writer_to_zero.arn
    worker_admission = aws_appautoscaling_policy.worker_admission.arn
  }
}

output "worker_peak_backend_calls" {
  description = "Most concurrent calls the workers can make on the legacy backend: at full scale, during a deploy."
  value       = local.worker_peak_backend_calls
}

output "worker_deploy_headroom_at_min" {
  description = "Worker tasks a deploy may start above the desired count at worker_min_tasks (at least 1 when the minimum healthy percent is 100)."
  value       = local.worker_deploy_headroom_at_min
}

output "backlog_queues" {
  description = "The queues each backlog-per-task policy reads (worker: high and normal; writer: ingest)."
  value = {
    worker = distinct([for q in local.worker_queue_queries : q.queue])
    writer = distinct([for q in local.writer_queue_queries : q.queue])
  }
}
