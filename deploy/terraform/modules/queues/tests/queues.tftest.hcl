# The queues module, planned with a mocked AWS provider: the queues' attributes as Cloud
# Control would create them, their dead-letter wiring, and the alarms' thresholds.

mock_provider "aws" {
  override_during = plan
  source          = "../../tests/mocks"
}

variables {
  queues = {
    high   = { name = "qf-high", visibility_timeout_s = 60, message_retention_s = 3600, oldest_age_alarm_s = 15 }
    normal = { name = "qf-normal", visibility_timeout_s = 60, message_retention_s = 3600, oldest_age_alarm_s = 15 }
    ingest = { name = "qf-ingest", visibility_timeout_s = 120, message_retention_s = 345600, oldest_age_alarm_s = 300 }
  }
  dlq_suffix        = "-dlq"
  max_receive_count = 3
  kms_key_arn       = "arn:aws:kms:eu-west-1:123456789012:key/1111"
  alarm_topic_arn   = "arn:aws:sns:eu-west-1:123456789012:qf-alarms"
  runbook_base_url  = "https://example.com/runbooks"
  tags              = { project = "queuefront" }
}

run "queues_take_1_mib_messages" {
  command = plan

  assert {
    condition     = alltrue([for q in aws_cloudcontrolapi_resource.main : jsondecode(q.desired_state).MaximumMessageSize == 1048576])
    error_message = "every queue takes messages up to 1 MiB (QF_MAX_MESSAGE_BYTES' default)"
  }

  assert {
    condition     = alltrue([for q in aws_cloudcontrolapi_resource.dlq : jsondecode(q.desired_state).MaximumMessageSize == 1048576])
    error_message = "a DLQ takes what its queue took"
  }

  assert {
    condition     = alltrue([for q in concat(values(aws_cloudcontrolapi_resource.main), values(aws_cloudcontrolapi_resource.dlq)) : q.type_name == "AWS::SQS::Queue"])
    error_message = "SQS queues"
  }

  assert {
    condition     = output.max_message_bytes == 1048576
    error_message = "the limit is passed on to the processes"
  }
}

run "a_smaller_limit_is_a_setting" {
  command = plan

  variables {
    max_message_bytes = 262144
  }

  assert {
    condition     = alltrue([for q in aws_cloudcontrolapi_resource.main : jsondecode(q.desired_state).MaximumMessageSize == 262144])
    error_message = "max_message_bytes sets the queues' limit"
  }
}

run "each_queue_dead_letters_into_its_own_dlq" {
  command = plan

  assert {
    condition = alltrue([
      for k, q in aws_cloudcontrolapi_resource.main :
      jsondecode(q.desired_state).RedrivePolicy == { deadLetterTargetArn = "arn:aws:sqs:eu-west-1:123456789012:qf-${k}-dlq", maxReceiveCount = 3 }
    ])
    error_message = "queue <q> sends what failed 3 times to <q>-dlq"
  }

  assert {
    condition     = { for k, q in aws_cloudcontrolapi_resource.dlq : k => jsondecode(q.desired_state).QueueName } == { high = "qf-high-dlq", normal = "qf-normal-dlq", ingest = "qf-ingest-dlq" }
    error_message = "DLQs are named <queue><dlq_suffix>, as Settings.dlq_name() derives them"
  }

  assert {
    condition     = alltrue([for k, p in aws_sqs_queue_redrive_allow_policy.dlq : jsondecode(p.redrive_allow_policy).sourceQueueArns == ["arn:aws:sqs:eu-west-1:123456789012:qf-${k}"]])
    error_message = "only its own queue may move messages into a DLQ"
  }

  assert {
    condition     = output.dlq_arns.ingest == "arn:aws:sqs:eu-west-1:123456789012:qf-ingest-dlq"
    error_message = "DLQ ARNs are exported for the task roles"
  }

  assert {
    condition     = alltrue([for q in aws_cloudcontrolapi_resource.main : jsondecode(q.desired_state).KmsMasterKeyId == var.kms_key_arn])
    error_message = "queues are encrypted with the stack's key"
  }

  assert {
    condition     = jsondecode(aws_cloudcontrolapi_resource.main["ingest"].desired_state).VisibilityTimeout == 120
    error_message = "visibility timeouts come from the queues variable"
  }
}

run "alarms_fire_on_the_first_dead_letter_and_before_the_window_closes" {
  command = plan

  assert {
    condition = alltrue([
      for a in aws_cloudwatch_metric_alarm.dlq_not_empty :
      a.threshold == 0 && a.comparison_operator == "GreaterThanThreshold" && a.evaluation_periods == 1 && a.metric_name == "ApproximateNumberOfMessagesVisible"
    ])
    error_message = "one message in a DLQ is enough to alarm"
  }

  assert {
    condition     = { for k, a in aws_cloudwatch_metric_alarm.dlq_not_empty : k => a.dimensions.QueueName } == { high = "qf-high-dlq", normal = "qf-normal-dlq", ingest = "qf-ingest-dlq" }
    error_message = "the DLQ alarms watch the DLQs"
  }

  assert {
    condition     = { for k, a in aws_cloudwatch_metric_alarm.oldest_message_age : k => a.threshold } == { high = 15, normal = 15, ingest = 300 }
    error_message = "the age alarms fire at oldest_age_alarm_s"
  }

  assert {
    condition = alltrue([
      for a in concat(values(aws_cloudwatch_metric_alarm.dlq_not_empty), values(aws_cloudwatch_metric_alarm.oldest_message_age)) :
      a.alarm_actions == toset([var.alarm_topic_arn])
    ])
    error_message = "the queue alarms notify the alarm topic"
  }

  assert {
    condition = alltrue([for a in aws_cloudwatch_metric_alarm.dlq_not_empty : strcontains(a.alarm_description, "https://example.com/runbooks/dlq-not-empty.md")]) && alltrue([
      for a in aws_cloudwatch_metric_alarm.oldest_message_age : strcontains(a.alarm_description, "https://example.com/runbooks/oldest-message-age.md")
    ])
    error_message = "each alarm links its runbook"
  }
}
