# The high, normal and ingest queues, each with its dead-letter queue, encrypted with the
# stack's KMS key, long polling by default, and two alarms each: a DLQ that is not empty,
# and an oldest message that is getting too old for anyone to still want its answer.

resource "aws_sqs_queue" "dlq" {
  for_each = var.queues

  name                              = "${each.value.name}${var.dlq_suffix}"
  message_retention_seconds         = each.value.dlq_message_retention
  kms_master_key_id                 = var.kms_key_arn
  kms_data_key_reuse_period_seconds = 300
  tags                              = merge(var.tags, { queue = each.key, role = "dlq" })
}

resource "aws_sqs_queue" "main" {
  for_each = var.queues

  name                              = each.value.name
  visibility_timeout_seconds        = each.value.visibility_timeout_s
  message_retention_seconds         = each.value.message_retention_s
  receive_wait_time_seconds         = each.value.receive_wait_s
  max_message_size                  = 262144
  kms_master_key_id                 = var.kms_key_arn
  kms_data_key_reuse_period_seconds = 300
  tags                              = merge(var.tags, { queue = each.key, role = "main" })

  redrive_policy = jsonencode({
    deadLetterTargetArn = aws_sqs_queue.dlq[each.key].arn
    maxReceiveCount     = var.max_receive_count
  })
}

# Only its own source queue may move messages into a DLQ.
resource "aws_sqs_queue_redrive_allow_policy" "dlq" {
  for_each = var.queues

  queue_url = aws_sqs_queue.dlq[each.key].id
  redrive_allow_policy = jsonencode({
    redrivePermission = "byQueue"
    sourceQueueArns   = [aws_sqs_queue.main[each.key].arn]
  })
}

resource "aws_cloudwatch_metric_alarm" "dlq_not_empty" {
  for_each = var.queues

  alarm_name          = "${aws_sqs_queue.dlq[each.key].name}-not-empty"
  alarm_description   = "Messages reached the ${each.key} dead-letter queue: they failed ${var.max_receive_count} times. Inspect, fix, then redrive."
  namespace           = "AWS/SQS"
  metric_name         = "ApproximateNumberOfMessagesVisible"
  dimensions          = { QueueName = aws_sqs_queue.dlq[each.key].name }
  statistic           = "Maximum"
  period              = 60
  evaluation_periods  = 1
  comparison_operator = "GreaterThanThreshold"
  threshold           = 0
  treat_missing_data  = "notBreaching"
  alarm_actions       = [var.alarm_topic_arn]
  ok_actions          = [var.alarm_topic_arn]
  tags                = var.tags
}

resource "aws_cloudwatch_metric_alarm" "oldest_message_age" {
  for_each = var.queues

  alarm_name          = "${aws_sqs_queue.main[each.key].name}-oldest-message-age"
  alarm_description   = "The oldest message on ${each.key} waited over ${each.value.oldest_age_alarm_s}s: consumers fall behind (for high/normal, replies are about to time out)."
  namespace           = "AWS/SQS"
  metric_name         = "ApproximateAgeOfOldestMessage"
  dimensions          = { QueueName = aws_sqs_queue.main[each.key].name }
  statistic           = "Maximum"
  period              = 60
  evaluation_periods  = 3
  datapoints_to_alarm = 2
  comparison_operator = "GreaterThanOrEqualToThreshold"
  threshold           = each.value.oldest_age_alarm_s
  treat_missing_data  = "notBreaching"
  alarm_actions       = [var.alarm_topic_arn]
  ok_actions          = [var.alarm_topic_arn]
  tags                = var.tags
}
