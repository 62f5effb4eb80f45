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
    api_requests     = one(aws_appautoscaling_policy.api_requests[*].arn)
    api_fast         = aws_appautoscaling_policy.api_fast.arn
    worker_backlog   = aws_appautoscaling_policy.worker_backlog.arn
    writer_backlog   = aws_appautoscaling_policy.writer_backlog.arn
    writer_from_zero = aws_appautoscaling_policy.writer_from_zero.arn
    writer_to_zero   = aws_appautoscaling_policy.writer_to_zero.arn
    worker_demand    = aws_appautoscaling_policy.worker_demand.arn
    worker_fast      = aws_appautoscaling_policy.worker_fast.arn
  }
}

output "worker_peak_backend_calls" {
  description = "Most concurrent calls the workers can make on the legacy backend: their slots at full scale during a deploy, within the shared limit (backend_max_concurrency)."
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

output "scheduled_actions" {
  description = "The scheduled actions of scaling_events: name => schedule, service, minimum."
  value = {
    for k, a in local.event_actions : "${var.name}-${k}" => { schedule = a.schedule, service = a.service, min_tasks = a.min }
  }
}

output "signal_reads" {
  description = "What the fast alarms read of the pods' scaling signal: namespace, dimensions and metric names, per alarm (the task definition must write the same)."
  value = {
    api_fast = {
      namespace  = aws_cloudwatch_metric_alarm.api_fast.namespace
      dimensions = aws_cloudwatch_metric_alarm.api_fast.dimensions
      metrics    = [aws_cloudwatch_metric_alarm.api_fast.metric_name]
    }
    worker_fast = {
      namespace  = one(distinct([for q in aws_cloudwatch_metric_alarm.worker_fast.metric_query : one(q.metric).namespace if !q.return_data]))
      dimensions = one(distinct([for q in aws_cloudwatch_metric_alarm.worker_fast.metric_query : one(q.metric).dimensions if !q.return_data]))
      metrics    = sort([for q in aws_cloudwatch_metric_alarm.worker_fast.metric_query : one(q.metric).metric_name if !q.return_data])
    }
  }
}
