# CloudWatch is the observability backend (README: why not Amazon Managed Prometheus):
# the alarm topic every module's alarms go to, the alarms that concern the whole path (edge
# errors, reply timeouts, admission rejections, ingest lag, no healthy task, failed
# deployments) and the SLA dashboard. The queue, cache and database alarms live next to what
# they watch. queuefront_* application metrics arrive through the ADOT sidecars of the
# compute module, in the metrics_namespace namespace, with a `process` dimension.
#
# Every alarm's description links its runbook: <runbook_base_url>/<name>.md, the files in
# docs/runbooks (tests/terraform checks that each link has its file).

data "aws_region" "current" {}
data "aws_caller_identity" "current" {}
data "aws_partition" "current" {}

locals {
  region     = data.aws_region.current.name
  account_id = data.aws_caller_identity.current.account_id
  partition  = data.aws_partition.current.partition
  runbook    = "${var.runbook_base_url}/%s.md"

  api_gateway_dimensions = { ApiName = var.api_name, Stage = var.api_stage }
  service_arn_prefix     = "arn:${local.partition}:ecs:${local.region}:${local.account_id}:service/${var.cluster_name}/"
}

# --- the alarm topic -------------------------------------------------------------------------

resource "aws_sns_topic" "alarms" {
  name              = "${var.name}-alarms"
  kms_master_key_id = var.kms_key_arn
  tags              = var.tags
}

# Who may publish: the account (as SNS's default policy), CloudWatch alarms of this
# account, and the deployment-failure rule (EventBridge) below.
resource "aws_sns_topic_policy" "alarms" {
  arn = aws_sns_topic.alarms.arn
  policy = jsonencode({
    Version = "2012-10-17"
    Statement = [
      {
        Sid       = "AccountOwner"
        Effect    = "Allow"
        Principal = { AWS = "arn:${local.partition}:iam::${local.account_id}:root" }
        Action    = ["sns:GetTopicAttributes", "sns:SetTopicAttributes", "sns:Subscribe", "sns:ListSubscriptionsByTopic", "sns:Publish"]
        Resource  = aws_sns_topic.alarms.arn
      },
      {
        Sid       = "CloudWatchAlarms"
        Effect    = "Allow"
        Principal = { Service = "cloudwatch.amazonaws.com" }
        Action    = "sns:Publish"
        Resource  = aws_sns_topic.alarms.arn
        Condition = { ArnLike = { "aws:SourceArn" = "arn:${local.partition}:cloudwatch:${local.region}:${local.account_id}:alarm:*" } }
      },
      {
        Sid       = "EcsDeploymentFailures"
        Effect    = "Allow"
        Principal = { Service = "events.amazonaws.com" }
        Action    = "sns:Publish"
        Resource  = aws_sns_topic.alarms.arn
        Condition = { ArnEquals = { "aws:SourceArn" = aws_cloudwatch_event_rule.deployment_failed.arn } }
      },
    ]
  })
}

# The paging topic's subscribers: e-mail, and whatever pages a person (an HTTPS endpoint of
# a paging service, SMS, a chat integration's Lambda or SQS queue): alarm_subscriptions.
locals {
  subscriptions = merge(
    { for e in var.alarm_emails : "email:${e}" => { protocol = "email", endpoint = e } },
    var.alarm_subscriptions,
  )
}

resource "aws_sns_topic_subscription" "alarms" {
  for_each = local.subscriptions

  topic_arn = aws_sns_topic.alarms.arn
  protocol  = each.value.protocol
  endpoint  = each.value.endpoint
}

# --- failed deployments ----------------------------------------------------------------------
# The services' circuit breaker rolls a failed deployment back; ECS says so on EventBridge.

resource "aws_cloudwatch_event_rule" "deployment_failed" {
  name        = "${var.name}-ecs-deployment-failed"
  description = "A deployment of a ${var.name} service failed and was rolled back. Runbook: ${format(local.runbook, "deployment-failed")}"
  event_pattern = jsonencode({
    source        = ["aws.ecs"]
    "detail-type" = ["ECS Deployment State Change"]
    resources     = [{ prefix = local.service_arn_prefix }]
    detail        = { eventName = ["SERVICE_DEPLOYMENT_FAILED"] }
  })
  tags = var.tags
}

resource "aws_cloudwatch_event_target" "deployment_failed" {
  rule = aws_cloudwatch_event_rule.deployment_failed.name
  arn  = aws_sns_topic.alarms.arn

  input_transformer {
    input_paths = {
      service = "$.resources[0]"
      reason  = "$.detail.reason"
      time    = "$.time"
    }
    input_template = "\"${var.name}: deployment of <service> failed at <time> and was rolled back: <reason>. Runbook: ${format(local.runbook, "deployment-failed")}\""
  }
}

# --- edge and api ----------------------------------------------------------------------------

resource "aws_cloudwatch_metric_alarm" "api_5xx_rate" {
  alarm_name          = "${var.name}-api-5xx-rate"
  alarm_description   = "Over ${var.api_5xx_threshold_percent}% of API Gateway responses are 5xx (timeouts, overload or the api failing). Runbook: ${format(local.runbook, "api-5xx-rate")}"
  comparison_operator = "GreaterThanThreshold"
  threshold           = var.api_5xx_threshold_percent
  evaluation_periods  = 5
  datapoints_to_alarm = 3
  treat_missing_data  = "notBreaching"
  alarm_actions       = [aws_sns_topic.alarms.arn]
  ok_actions          = [aws_sns_topic.alarms.arn]
  tags                = var.tags

  metric_query {
    id          = "errors"
    return_data = false

    metric {
      namespace   = "AWS/ApiGateway"
      metric_name = "5XXError"
      dimensions  = local.api_gateway_dimensions
      stat        = "Sum"
      period      = 60
    }
  }

  metric_query {
    id          = "requests"
    return_data = false

    metric {
      namespace   = "AWS/ApiGateway"
      metric_name = "Count"
      dimensions  = local.api_gateway_dimensions
      stat        = "Sum"
      period      = 60
    }
  }

  metric_query {
    id          = "rate"
    label       = "5xx percent"
    expression  = "IF(requests > 0, 100 * errors / requests, 0)"
    return_data = true
  }
}

# 504 {"error":"timeout"}: the reply did not come within the route's window.
resource "aws_cloudwatch_metric_alarm" "reply_timeout_rate" {
  alarm_name          = "${var.name}-reply-timeout-rate"
  alarm_description   = "Over ${var.reply_timeout_threshold_percent}% of the api's answers are 504 (no reply within the route's window). Runbook: ${format(local.runbook, "reply-timeout-rate")}"
  comparison_operator = "GreaterThanThreshold"
  threshold           = var.reply_timeout_threshold_percent
  evaluation_periods  = 5
  datapoints_to_alarm = 3
  treat_missing_data  = "notBreaching"
  alarm_actions       = [aws_sns_topic.alarms.arn]
  ok_actions          = [aws_sns_topic.alarms.arn]
  tags                = var.tags

  metric_query {
    id          = "timeouts"
    return_data = false

    metric {
      namespace   = var.metrics_namespace
      metric_name = "queuefront_http_requests_total"
      dimensions  = { process = "api", status = "504" }
      stat        = "Sum"
      period      = 60
    }
  }

  metric_query {
    id          = "requests"
    return_data = false

    metric {
      namespace   = var.metrics_namespace
      metric_name = "queuefront_http_requests_total"
      dimensions  = { process = "api" }
      stat        = "Sum"
      period      = 60
    }
  }

  metric_query {
    id          = "rate"
    label       = "504 percent"
    expression  = "IF(requests > 0, 100 * FILL(timeouts, 0) / requests, 0)"
    return_data = true
  }
}

# 503 from admission: normal work shed because the high queue is backed up. Scaling reacts
# first (the autoscaling module adds workers); this pages when it lasts.
resource "aws_cloudwatch_metric_alarm" "admission_rejections" {
  alarm_name          = "${var.name}-admission-rejections"
  alarm_description   = "Over ${var.admission_rejection_threshold_percent}% of the api's requests are refused with 503 by admission for 10 minutes, although workers were added. Runbook: ${format(local.runbook, "admission-rejections")}"
  comparison_operator = "GreaterThanThreshold"
  threshold           = var.admission_rejection_threshold_percent
  evaluation_periods  = 10
  datapoints_to_alarm = 8
  treat_missing_data  = "notBreaching"
  alarm_actions       = [aws_sns_topic.alarms.arn]
  ok_actions          = [aws_sns_topic.alarms.arn]
  tags                = var.tags

  metric_query {
    id          = "rejected"
    return_data = false

    metric {
      namespace   = var.metrics_namespace
      metric_name = "queuefront_admission_rejections_total"
      dimensions  = { process = "api" }
      stat        = "Sum"
      period      = 60
    }
  }

  metric_query {
    id          = "requests"
    return_data = false

    metric {
      namespace   = var.metrics_namespace
      metric_name = "queuefront_http_requests_total"
      dimensions  = { process = "api" }
      stat        = "Sum"
      period      = 60
    }
  }

  metric_query {
    id          = "rate"
    label       = "admission 503 percent"
    expression  = "IF(requests > 0, 100 * FILL(rejected, 0) / requests, 0)"
    return_data = true
  }
}

# From the api accepting an item to the commit that stored it (queuefront_ingest_lag_seconds).
resource "aws_cloudwatch_metric_alarm" "ingest_lag" {
  alarm_name          = "${var.name}-ingest-lag"
  alarm_description   = "Ingested items take over ${var.ingest_lag_threshold_s}s on average to reach Postgres (and the tallies). Runbook: ${format(local.runbook, "ingest-lag")}"
  namespace           = var.metrics_namespace
  metric_name         = "queuefront_ingest_lag_seconds"
  dimensions          = { process = "writer" }
  statistic           = "Average"
  period              = 60
  evaluation_periods  = 5
  datapoints_to_alarm = 3
  comparison_operator = "GreaterThanThreshold"
  threshold           = var.ingest_lag_threshold_s
  treat_missing_data  = "notBreaching"
  alarm_actions       = [aws_sns_topic.alarms.arn]
  ok_actions          = [aws_sns_topic.alarms.arn]
  tags                = var.tags
}

resource "aws_cloudwatch_metric_alarm" "api_unhealthy_hosts" {
  alarm_name          = "${var.name}-api-no-healthy-task"
  alarm_description   = "The internal ALB has no healthy api task: every request fails. Runbook: ${format(local.runbook, "no-healthy-task")}"
  namespace           = "AWS/ApplicationELB"
  metric_name         = "HealthyHostCount"
  dimensions          = { LoadBalancer = var.alb_arn_suffix, TargetGroup = var.target_group_arn_suffix }
  statistic           = "Minimum"
  period              = 60
  evaluation_periods  = 2
  comparison_operator = "LessThanThreshold"
  threshold           = 1
  treat_missing_data  = "breaching"
  alarm_actions       = [aws_sns_topic.alarms.arn]
  ok_actions          = [aws_sns_topic.alarms.arn]
  tags                = var.tags
}

resource "aws_cloudwatch_metric_alarm" "worker_not_running" {
  alarm_name          = "${var.name}-worker-not-running"
  alarm_description   = "No worker task runs: proxied requests will all time out. Runbook: ${format(local.runbook, "no-healthy-task")}"
  namespace           = "ECS/ContainerInsights"
  metric_name         = "RunningTaskCount"
  dimensions          = { ClusterName = var.cluster_name, ServiceName = var.service_names["worker"] }
  statistic           = "Maximum"
  period              = 60
  evaluation_periods  = 3
  comparison_operator = "LessThanThreshold"
  threshold           = 1
  treat_missing_data  = "breaching"
  alarm_actions       = [aws_sns_topic.alarms.arn]
  ok_actions          = [aws_sns_topic.alarms.arn]
  tags                = var.tags
}

# --- the metrics pipeline itself ---------------------------------------------------------------
# The alarms above that read queuefront_* metrics go quiet, not red, when the ADOT sidecars
# stop shipping (collector crashed, IAM or log group broken): an absent rate is no breach.
# One gauge per process that is written at every scrape whatever the traffic is the
# heartbeat; its absence pages. The writer may run no task at all (it scales to zero), so
# its heartbeat counts only while ECS says a writer runs.

locals {
  heartbeats = {
    api    = { metric = "queuefront_pending_replies", dimensions = { process = "api" } }
    worker = { metric = "queuefront_dlq_messages", dimensions = { process = "worker", queue = var.dlq_names["high"] } }
  }
}

resource "aws_cloudwatch_metric_alarm" "metrics_missing" {
  for_each = local.heartbeats

  alarm_name          = "${var.name}-${each.key}-metrics-missing"
  alarm_description   = "No queuefront metrics from the ${each.key} for 5 minutes: the collector sidecars are not shipping, and every alarm on the application's metrics is blind. Runbook: ${format(local.runbook, "metrics-missing")}"
  namespace           = var.metrics_namespace
  metric_name         = each.value.metric
  dimensions          = each.value.dimensions
  statistic           = "SampleCount"
  period              = 60
  evaluation_periods  = 5
  comparison_operator = "LessThanThreshold"
  threshold           = 1
  treat_missing_data  = "breaching"
  alarm_actions       = [aws_sns_topic.alarms.arn]
  ok_actions          = [aws_sns_topic.alarms.arn]
  tags                = var.tags
}

resource "aws_cloudwatch_metric_alarm" "writer_metrics_missing" {
  alarm_name          = "${var.name}-writer-metrics-missing"
  alarm_description   = "A writer task runs but no queuefront metrics came from the writer for 5 minutes: the collector sidecars are not shipping, and the ingest alarms are blind. Runbook: ${format(local.runbook, "metrics-missing")}"
  comparison_operator = "GreaterThanOrEqualToThreshold"
  threshold           = 1
  evaluation_periods  = 5
  treat_missing_data  = "notBreaching"
  alarm_actions       = [aws_sns_topic.alarms.arn]
  ok_actions          = [aws_sns_topic.alarms.arn]
  tags                = var.tags

  metric_query {
    id          = "running"
    return_data = false

    metric {
      namespace   = "ECS/ContainerInsights"
      metric_name = "RunningTaskCount"
      dimensions  = { ClusterName = var.cluster_name, ServiceName = var.service_names["writer"] }
      stat        = "Minimum"
      period      = 60
    }
  }

  metric_query {
    id          = "heartbeat"
    return_data = false

    metric {
      namespace   = var.metrics_namespace
      metric_name = "queuefront_dlq_messages"
      dimensions  = { process = "writer", queue = var.dlq_names["ingest"] }
      stat        = "SampleCount"
      period      = 60
    }
  }

  metric_query {
    id          = "silent"
    label       = "writer running without metrics"
    expression  = "IF(FILL(running, 0) > 0 AND FILL(heartbeat, 0) == 0, 1, 0)"
    return_data = true
  }
}

# --- clocks ------------------------------------------------------------------------------------
# queuefront_clock_offset_seconds: how far a process's wall clock is from the shared
# reference (Redis TIME). Cross-process times (deadlines in envelopes, ingest lag) assume
# the clocks agree; SigV4 refuses requests 5 minutes off. Any process more than
# clock_offset_threshold_s off, ahead or behind, pages.

resource "aws_cloudwatch_metric_alarm" "clock_offset" {
  for_each = toset(["api", "worker", "writer"])

  alarm_name          = "${var.name}-${each.key}-clock-offset"
  alarm_description   = "A ${each.key} process's clock is more than ${var.clock_offset_threshold_s}s from the reference (Redis TIME): deadlines and lags computed across processes are off by as much. Runbook: ${format(local.runbook, "clock-offset")}"
  comparison_operator = "GreaterThanThreshold"
  threshold           = var.clock_offset_threshold_s
  evaluation_periods  = 3
  datapoints_to_alarm = 2
  treat_missing_data  = "notBreaching"
  alarm_actions       = [aws_sns_topic.alarms.arn]
  ok_actions          = [aws_sns_topic.alarms.arn]
  tags                = var.tags

  metric_query {
    id          = "ahead"
    return_data = false

    metric {
      namespace   = var.metrics_namespace
      metric_name = "queuefront_clock_offset_seconds"
      dimensions  = { process = each.key }
      stat        = "Maximum"
      period      = 60
    }
  }

  metric_query {
    id          = "behind"
    return_data = false

    metric {
      namespace   = var.metrics_namespace
      metric_name = "queuefront_clock_offset_seconds"
      dimensions  = { process = each.key }
      stat        = "Minimum"
      period      = 60
    }
  }

  metric_query {
    id          = "offset"
    label       = "largest clock offset (s)"
    expression  = "MAX([ABS(ahead), ABS(behind)])"
    return_data = true
  }
}

# --- direct calls to the API --------------------------------------------------------------------
# The API's own WAF refuses whatever did not come through CloudFront (edge module). Refusals
# cost nothing downstream, but a steady stream means someone knows the API's address and
# is probing it: worth knowing, and a sign the origin secret may have leaked if the
# refusals stop while the traffic goes on.

resource "aws_cloudwatch_metric_alarm" "direct_calls" {
  alarm_name          = "${var.name}-api-direct-calls"
  alarm_description   = "Over ${var.direct_calls_threshold} requests in 5 minutes reached the API's execute-api endpoint without coming through CloudFront (refused by its WAF). Runbook: ${format(local.runbook, "direct-calls")}"
  namespace           = "AWS/WAFV2"
  metric_name         = "BlockedRequests"
  dimensions          = { WebACL = var.api_web_acl_name, Region = local.region, Rule = "ALL" }
  statistic           = "Sum"
  period              = 300
  evaluation_periods  = 1
  comparison_operator = "GreaterThanThreshold"
  threshold           = var.direct_calls_threshold
  treat_missing_data  = "notBreaching"
  alarm_actions       = [aws_sns_topic.alarms.arn]
  ok_actions          = [aws_sns_topic.alarms.arn]
  tags                = var.tags
}

# --- the SLA dashboard -----------------------------------------------------------------------
# The kiosk seed's view: requests by outcome, reply latency percentiles, backlog and the age
# of the oldest message, then the queuefront metrics that explain them.

locals {
  queue_keys = sort(keys(var.queue_names))

  widgets = [
    {
      title = "Requests by outcome (API Gateway)"
      metrics = [
        ["AWS/ApiGateway", "Count", "ApiName", var.api_name, "Stage", var.api_stage, { stat = "Sum", label = "requests" }],
        ["AWS/ApiGateway", "4XXError", "ApiName", var.api_name, "Stage", var.api_stage, { stat = "Sum", label = "4xx" }],
        ["AWS/ApiGateway", "5XXError", "ApiName", var.api_name, "Stage", var.api_stage, { stat = "Sum", label = "5xx" }],
      ]
    },
    {
      title = "Answers by status (api)"
      metrics = [[{
        expression = "SEARCH('{${var.metrics_namespace},process,status} MetricName=\"queuefront_http_requests_total\" process=\"api\"', 'Sum', 60)"
        label      = ""
        id         = "status"
      }]]
    },
    {
      title = "Reply latency percentiles (API Gateway, seconds to the viewer's answer)"
      metrics = [
        for p in ["p50", "p90", "p99"] :
        ["AWS/ApiGateway", "Latency", "ApiName", var.api_name, "Stage", var.api_stage, { stat = p, label = p }]
      ]
    },
    {
      title = "Replies awaited by the api (ok, timeout, late)"
      metrics = [
        for o in ["ok", "timeout", "late"] :
        [var.metrics_namespace, "queuefront_replies_total", "process", "api", "outcome", o, { stat = "Sum", label = o }]
      ]
    },
    {
      title = "Backlog (visible + in flight)"
      metrics = flatten([
        for k in local.queue_keys : [
          ["AWS/SQS", "ApproximateNumberOfMessagesVisible", "QueueName", var.queue_names[k], { stat = "Maximum", label = "${k} visible" }],
          ["AWS/SQS", "ApproximateNumberOfMessagesNotVisible", "QueueName", var.queue_names[k], { stat = "Maximum", label = "${k} in flight" }],
        ]
      ])
    },
    {
      title = "Age of the oldest message (seconds)"
      metrics = [
        for k in local.queue_keys :
        ["AWS/SQS", "ApproximateAgeOfOldestMessage", "QueueName", var.queue_names[k], { stat = "Maximum", label = k }]
      ]
    },
    {
      title = "Admission rejections (503) and reply timeouts (504) per minute"
      metrics = [
        [var.metrics_namespace, "queuefront_admission_rejections_total", "process", "api", { stat = "Sum", label = "admission 503" }],
        [var.metrics_namespace, "queuefront_http_requests_total", "process", "api", "status", "504", { stat = "Sum", label = "504" }],
      ]
    },
    {
      title = "Dead-letter queues and ingest lag"
      metrics = concat(
        [for k in local.queue_keys : ["AWS/SQS", "ApproximateNumberOfMessagesVisible", "QueueName", var.dlq_names[k], { stat = "Maximum", label = "${k} DLQ" }]],
        [[var.metrics_namespace, "queuefront_ingest_lag_seconds", "process", "writer", { stat = "Average", label = "ingest lag (s)", yAxis = "right" }]],
      )
    },
    {
      title = "Running tasks"
      metrics = [
        for p in sort(keys(var.service_names)) :
        ["ECS/ContainerInsights", "RunningTaskCount", "ClusterName", var.cluster_name, "ServiceName", var.service_names[p], { stat = "Maximum", label = p }]
      ]
    },
  ]
}

resource "aws_cloudwatch_dashboard" "sla" {
  dashboard_name = "${var.name}-sla"
  dashboard_body = jsonencode({
    widgets = [
      for i, w in local.widgets : {
        type   = "metric"
        x      = (i % 2) * 12
        y      = floor(i / 2) * 6
        width  = 12
        height = 6
        properties = {
          title   = w.title
          metrics = w.metrics
          region  = local.region
          period  = 60
          view    = "timeSeries"
          stacked = false
        }
      }
    ]
  })
}
