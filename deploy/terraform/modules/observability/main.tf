# CloudWatch is the observability backend (README: why not Amazon Managed Prometheus):
# the alarm topic every module's alarms go to, and the alarms that concern the whole path
# (edge errors, api health, no worker). The queue, cache and database alarms live next to
# what they watch. queuefront_* application metrics arrive through the ADOT sidecars in the
# compute module, as CloudWatch metrics in the queuefront namespace.

resource "aws_sns_topic" "alarms" {
  name              = "${var.name}-alarms"
  kms_master_key_id = var.kms_key_arn
  tags              = var.tags
}

resource "aws_sns_topic_subscription" "email" {
  for_each = toset(var.alarm_emails)

  topic_arn = aws_sns_topic.alarms.arn
  protocol  = "email"
  endpoint  = each.value
}

resource "aws_cloudwatch_metric_alarm" "api_5xx_rate" {
  alarm_name          = "${var.name}-api-5xx-rate"
  alarm_description   = "Over ${var.api_5xx_threshold_percent}% of API Gateway responses are 5xx (timeouts, overload or the api failing)."
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
      metric_name = "5xx"
      dimensions  = { ApiId = var.api_id, Stage = "$default" }
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
      dimensions  = { ApiId = var.api_id, Stage = "$default" }
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

resource "aws_cloudwatch_metric_alarm" "api_unhealthy_hosts" {
  alarm_name          = "${var.name}-api-no-healthy-task"
  alarm_description   = "The internal ALB has no healthy api task."
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
  alarm_description   = "No worker task runs: proxied requests will all time out."
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
