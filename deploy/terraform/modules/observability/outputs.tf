output "alarm_topic_arn" {
  description = "SNS topic that every alarm of the stack notifies."
  value       = aws_sns_topic.alarms.arn
}

output "dashboard_name" {
  description = "The CloudWatch dashboard with the SLA view."
  value       = aws_cloudwatch_dashboard.sla.dashboard_name
}

output "deployment_failed_rule_arn" {
  description = "EventBridge rule that sends failed ECS deployments to the alarm topic."
  value       = aws_cloudwatch_event_rule.deployment_failed.arn
}
