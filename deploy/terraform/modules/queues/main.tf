# The high, normal and ingest queues, each with its dead-letter queue, encrypted with the
# stack's KMS key, long polling by default, and two alarms each: a DLQ that is not empty,
# and an oldest message that is getting too old for anyone to still want its answer.
#
# Why Cloud Control and not aws_sqs_queue: SQS takes messages of up to 1 MiB since August
# 2025, and the queues must be made with QF_MAX_MESSAGE_BYTES (1048576 by default), but the
# AWS provider this stack pins (5.100, the one its offline tests run with) refuses
# aws_sqs_queue.max_message_size above 262144. AWS::SQS::Queue through Cloud Control
# carries MaximumMessageSize as SQS takes it. With a provider whose aws_sqs_queue accepts
# 1 MiB (6.x), these become aws_sqs_queue resources again (moved blocks cannot do that:
# import them).

data "aws_region" "current" {}
data "aws_caller_identity" "current" {}
data "aws_partition" "current" {}

locals {
  # A queue's ARN is its name in this account and region: known before it exists, so the
  # redrive policy and the IAM documents need no read-back of Cloud Control's properties.
  arn_prefix = "arn:${data.aws_partition.current.partition}:sqs:${data.aws_region.current.name}:${data.aws_caller_identity.current.account_id}"

  dlq_names = { for k, q in var.queues : k => "${q.name}${var.dlq_suffix}" }

  cfn_tags = [for k, v in var.tags : { Key = k, Value = v }]

  # The AWS::SQS::Queue properties of each queue (CloudFormation's names).
  dlq_state = {
    for k, q in var.queues : k => {
      QueueName                    = local.dlq_names[k]
      MessageRetentionPeriod       = q.dlq_message_retention
      MaximumMessageSize           = var.max_message_bytes # a dead letter is the message as it was
      KmsMasterKeyId               = var.kms_key_arn
      KmsDataKeyReusePeriodSeconds = 300
      Tags                         = concat(local.cfn_tags, [{ Key = "queue", Value = k }, { Key = "role", Value = "dlq" }])
    }
  }

  main_state = {
    for k, q in var.queues : k => {
      QueueName                     = q.name
      VisibilityTimeout             = q.visibility_timeout_s
      MessageRetentionPeriod        = q.message_retention_s
      ReceiveMessageWaitTimeSeconds = q.receive_wait_s
      MaximumMessageSize            = var.max_message_bytes
      KmsMasterKeyId                = var.kms_key_arn
      KmsDataKeyReusePeriodSeconds  = 300
      RedrivePolicy = {
        deadLetterTargetArn = "${local.arn_prefix}:${jsondecode(aws_cloudcontrolapi_resource.dlq[k].desired_state).QueueName}"
        maxReceiveCount     = var.max_receive_count
      }
      Tags = concat(local.cfn_tags, [{ Key = "queue", Value = k }, { Key = "role", Value = "main" }])
    }
  }
}

resource "aws_cloudcontrolapi_resource" "dlq" {
  for_each = var.queues

  type_name     = "AWS::SQS::Queue"
  desired_state = jsonencode(local.dlq_state[each.key])
}

resource "aws_cloudcontrolapi_resource" "main" {
  for_each = var.queues

  type_name     = "AWS::SQS::Queue"
  desired_state = jsonencode(local.main_state[each.key])
}

locals {
  # Read from the resources, so that whatever uses a name or an ARN waits for the queue.
  queue_names    = { for k, q in aws_cloudcontrolapi_resource.main : k => jsondecode(q.desired_state).QueueName }
  dlq_names_made = { for k, q in aws_cloudcontrolapi_resource.dlq : k => jsondecode(q.desired_state).QueueName }
  queue_arns     = { for k, n in local.queue_names : k => "${local.arn_prefix}:${n}" }
  dlq_arns       = { for k, n in local.dlq_names_made : k => "${local.arn_prefix}:${n}" }
}

# Only its own source queue may move messages into a DLQ.
resource "aws_sqs_queue_redrive_allow_policy" "dlq" {
  for_each = var.queues

  # Cloud Control's identifier of an AWS::SQS::Queue is its URL.
  queue_url = aws_cloudcontrolapi_resource.dlq[each.key].id
  redrive_allow_policy = jsonencode({
    redrivePermission = "byQueue"
    sourceQueueArns   = [local.queue_arns[each.key]]
  })
}

resource "aws_cloudwatch_metric_alarm" "dlq_not_empty" {
  for_each = var.queues

  alarm_name          = "${local.dlq_names_made[each.key]}-not-empty"
  alarm_description   = "Messages reached the ${each.key} dead-letter queue: they failed ${var.max_receive_count} times. Inspect, fix, then redrive. Runbook: ${var.runbook_base_url}/dlq-not-empty.md"
  namespace           = "AWS/SQS"
  metric_name         = "ApproximateNumberOfMessagesVisible"
  dimensions          = { QueueName = local.dlq_names_made[each.key] }
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

  alarm_name          = "${local.queue_names[each.key]}-oldest-message-age"
  alarm_description   = "The oldest message on ${each.key} waited over ${each.value.oldest_age_alarm_s}s: consumers fall behind (for high/normal, replies are about to time out). Runbook: ${var.runbook_base_url}/oldest-message-age.md"
  namespace           = "AWS/SQS"
  metric_name         = "ApproximateAgeOfOldestMessage"
  dimensions          = { QueueName = local.queue_names[each.key] }
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
