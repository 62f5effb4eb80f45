output "alarm_topic_arn" {
  description = "SNS topic that every alarm of the stack notifies."
  value       = aws_sns_topic.alarms.arn
}
