# Application Auto Scaling for the three services.
#
# worker and writer: target tracking on *backlog per task*, the metric AWS recommends for
# queue consumers: (ApproximateNumberOfMessagesVisible + ApproximateNumberOfMessagesNotVisible)
# summed over the service's queues, divided by the service's RunningTaskCount (Container
# Insights), computed with metric math. The target is acceptable latency / processing time
# per message per task: the backlog one task clears within the latency you accept.
#
# writer to and from zero: target tracking cannot leave zero tasks (backlog / 0 tasks has no
# value), so two step policies on alarms do it: "messages waiting and the desired count is
# zero" sets exactly one task; "queue empty for writer_idle_minutes" sets the count to zero.
# Keyed on the desired count, not the running one: a crash-looping writer has a desired
# count of 1 and a running count of 0, and must not be ratcheted up to its maximum.
#
# worker on admission rejections: the api's 503s mean the high queue is backed up past
# QF_ADMISSION_THRESHOLD; a step policy adds workers while they last, on top of target
# tracking (which sees the backlog a little later).
#
# api: target tracking on CPU and on ALB requests per target.

locals {
  worker_backlog_target = max(1, floor(var.worker_acceptable_latency_s / var.worker_processing_time_s))
  writer_backlog_target = max(1, floor(var.writer_acceptable_latency_s / var.writer_processing_time_s))

  backlog_metrics = ["ApproximateNumberOfMessagesVisible", "ApproximateNumberOfMessagesNotVisible"]

  # One metric query per (queue, metric): ids q0v, q0n, q1v, ...
  worker_queue_queries = flatten([
    for i, q in var.worker_queue_names : [
      for j, m in local.backlog_metrics : { id = "q${i}${j == 0 ? "v" : "n"}", queue = q, metric = m }
    ]
  ])
  writer_queue_queries = [
    for j, m in local.backlog_metrics : { id = "q0${j == 0 ? "v" : "n"}", queue = var.writer_queue_name, metric = m }
  ]

  # During a deploy at full scale ECS runs up to max_tasks x maximum percent / 100 tasks,
  # rounded down (ECS's rounding of maximumPercent).
  worker_peak_tasks         = floor(var.worker_max_tasks * var.worker_deployment_maximum_percent / 100)
  worker_peak_backend_calls = local.worker_peak_tasks * var.worker_concurrency

  # With a minimum healthy percent of 100 a deploy must be able to start one new task before
  # it stops an old one, at the smallest count too (maximumPercent is rounded down).
  worker_deploy_headroom_at_min = floor(var.worker_min_tasks * var.worker_deployment_maximum_percent / 100) - var.worker_min_tasks

  worker_resource_id = "service/${var.cluster_name}/${var.worker_service_name}"
  writer_resource_id = "service/${var.cluster_name}/${var.writer_service_name}"
  api_resource_id    = "service/${var.cluster_name}/${var.api_service_name}"
}

# --- api -------------------------------------------------------------------------------------

resource "aws_appautoscaling_target" "api" {
  service_namespace  = "ecs"
  scalable_dimension = "ecs:service:DesiredCount"
  resource_id        = local.api_resource_id
  min_capacity       = var.api_min_tasks
  max_capacity       = var.api_max_tasks
}

resource "aws_appautoscaling_policy" "api_cpu" {
  name               = "${var.name}-api-cpu"
  policy_type        = "TargetTrackingScaling"
  service_namespace  = aws_appautoscaling_target.api.service_namespace
  scalable_dimension = aws_appautoscaling_target.api.scalable_dimension
  resource_id        = aws_appautoscaling_target.api.resource_id

  target_tracking_scaling_policy_configuration {
    target_value       = var.api_cpu_target_percent
    scale_in_cooldown  = var.scale_in_cooldown_s
    scale_out_cooldown = var.scale_out_cooldown_s

    predefined_metric_specification {
      predefined_metric_type = "ECSServiceAverageCPUUtilization"
    }
  }
}

resource "aws_appautoscaling_policy" "api_requests" {
  name               = "${var.name}-api-requests-per-target"
  policy_type        = "TargetTrackingScaling"
  service_namespace  = aws_appautoscaling_target.api.service_namespace
  scalable_dimension = aws_appautoscaling_target.api.scalable_dimension
  resource_id        = aws_appautoscaling_target.api.resource_id

  target_tracking_scaling_policy_configuration {
    target_value       = var.api_requests_per_target
    scale_in_cooldown  = var.scale_in_cooldown_s
    scale_out_cooldown = var.scale_out_cooldown_s

    predefined_metric_specification {
      predefined_metric_type = "ALBRequestCountPerTarget"
      resource_label         = var.alb_resource_label
    }
  }
}

# --- worker ------------------------------------------------------------------------------------

resource "aws_appautoscaling_target" "worker" {
  service_namespace  = "ecs"
  scalable_dimension = "ecs:service:DesiredCount"
  resource_id        = local.worker_resource_id
  min_capacity       = var.worker_min_tasks
  max_capacity       = var.worker_max_tasks

  lifecycle {
    precondition {
      condition     = local.worker_peak_backend_calls <= var.backend_max_concurrency
      error_message = "worker_max_tasks x worker_deployment_maximum_percent / 100 x worker_concurrency exceeds backend_max_concurrency: at full scale, during a deploy, the workers would overload the legacy backend."
    }

    precondition {
      condition     = var.worker_min_tasks <= var.worker_max_tasks
      error_message = "worker_min_tasks must not exceed worker_max_tasks."
    }

    precondition {
      condition     = var.worker_deployment_minimum_healthy_percent < 100 || local.worker_deploy_headroom_at_min >= 1
      error_message = "With worker_deployment_minimum_healthy_percent = 100, worker_min_tasks x worker_deployment_maximum_percent / 100 (rounded down) must exceed worker_min_tasks, or a deploy at the minimum count can never start a new task."
    }
  }
}

resource "aws_appautoscaling_policy" "worker_backlog" {
  name               = "${var.name}-worker-backlog-per-task"
  policy_type        = "TargetTrackingScaling"
  service_namespace  = aws_appautoscaling_target.worker.service_namespace
  scalable_dimension = aws_appautoscaling_target.worker.scalable_dimension
  resource_id        = aws_appautoscaling_target.worker.resource_id

  target_tracking_scaling_policy_configuration {
    target_value       = local.worker_backlog_target
    scale_in_cooldown  = var.scale_in_cooldown_s
    scale_out_cooldown = var.scale_out_cooldown_s

    customized_metric_specification {
      dynamic "metrics" {
        for_each = local.worker_queue_queries
        content {
          id          = metrics.value.id
          return_data = false

          metric_stat {
            stat = "Sum"

            metric {
              namespace   = "AWS/SQS"
              metric_name = metrics.value.metric

              dimensions {
                name  = "QueueName"
                value = metrics.value.queue
              }
            }
          }
        }
      }

      metrics {
        id          = "tasks"
        return_data = false

        metric_stat {
          stat = "Average"

          metric {
            namespace   = "ECS/ContainerInsights"
            metric_name = "RunningTaskCount"

            dimensions {
              name  = "ClusterName"
              value = var.cluster_name
            }

            dimensions {
              name  = "ServiceName"
              value = var.worker_service_name
            }
          }
        }
      }

      metrics {
        id          = "backlog_per_task"
        label       = "worker backlog per task"
        expression  = "(${join(" + ", [for q in local.worker_queue_queries : q.id])}) / tasks"
        return_data = true
      }
    }
  }
}

# --- writer ------------------------------------------------------------------------------------

resource "aws_appautoscaling_target" "writer" {
  service_namespace  = "ecs"
  scalable_dimension = "ecs:service:DesiredCount"
  resource_id        = local.writer_resource_id
  min_capacity       = var.writer_min_tasks
  max_capacity       = var.writer_max_tasks

  lifecycle {
    precondition {
      condition     = var.writer_min_tasks <= var.writer_max_tasks
      error_message = "writer_min_tasks must not exceed writer_max_tasks."
    }
  }
}

resource "aws_appautoscaling_policy" "writer_backlog" {
  name               = "${var.name}-writer-backlog-per-task"
  policy_type        = "TargetTrackingScaling"
  service_namespace  = aws_appautoscaling_target.writer.service_namespace
  scalable_dimension = aws_appautoscaling_target.writer.scalable_dimension
  resource_id        = aws_appautoscaling_target.writer.resource_id

  target_tracking_scaling_policy_configuration {
    target_value       = local.writer_backlog_target
    scale_in_cooldown  = var.scale_in_cooldown_s
    scale_out_cooldown = var.scale_out_cooldown_s

    customized_metric_specification {
      dynamic "metrics" {
        for_each = local.writer_queue_queries
        content {
          id          = metrics.value.id
          return_data = false

          metric_stat {
            stat = "Sum"

            metric {
              namespace   = "AWS/SQS"
              metric_name = metrics.value.metric

              dimensions {
                name  = "QueueName"
                value = metrics.value.queue
              }
            }
          }
        }
      }

      metrics {
        id          = "tasks"
        return_data = false

        metric_stat {
          stat = "Average"

          metric {
            namespace   = "ECS/ContainerInsights"
            metric_name = "RunningTaskCount"

            dimensions {
              name  = "ClusterName"
              value = var.cluster_name
            }

            dimensions {
              name  = "ServiceName"
              value = var.writer_service_name
            }
          }
        }
      }

      metrics {
        id          = "backlog_per_task"
        label       = "writer backlog per task"
        expression  = "(${join(" + ", [for q in local.writer_queue_queries : q.id])}) / tasks"
        return_data = true
      }
    }
  }
}

# 0 -> 1: messages are waiting and the writer's desired count is zero.
resource "aws_appautoscaling_policy" "writer_from_zero" {
  name               = "${var.name}-writer-from-zero"
  policy_type        = "StepScaling"
  service_namespace  = aws_appautoscaling_target.writer.service_namespace
  scalable_dimension = aws_appautoscaling_target.writer.scalable_dimension
  resource_id        = aws_appautoscaling_target.writer.resource_id

  step_scaling_policy_configuration {
    # exactly one task, whatever the alarm's repeats: never a ratchet
    adjustment_type         = "ExactCapacity"
    cooldown                = 180
    metric_aggregation_type = "Maximum"

    step_adjustment {
      metric_interval_lower_bound = 0
      scaling_adjustment          = max(1, var.writer_min_tasks)
    }
  }
}

resource "aws_cloudwatch_metric_alarm" "writer_from_zero" {
  alarm_name          = "${var.name}-writer-messages-waiting-no-task"
  alarm_description   = "Ingest messages are waiting and the writer's desired count is 0: set it to 1 (target tracking takes over from one task). Runbook: ${var.runbook_base_url}/writer-scaling.md"
  comparison_operator = "GreaterThanOrEqualToThreshold"
  threshold           = 1
  evaluation_periods  = 1
  treat_missing_data  = "notBreaching"
  alarm_actions       = [aws_appautoscaling_policy.writer_from_zero.arn]
  tags                = var.tags

  metric_query {
    id          = "visible"
    return_data = false

    metric {
      namespace   = "AWS/SQS"
      metric_name = "ApproximateNumberOfMessagesVisible"
      dimensions  = { QueueName = var.writer_queue_name }
      stat        = "Maximum"
      period      = 60
    }
  }

  metric_query {
    id          = "desired"
    return_data = false

    metric {
      namespace   = "ECS/ContainerInsights"
      metric_name = "DesiredTaskCount"
      dimensions  = { ClusterName = var.cluster_name, ServiceName = var.writer_service_name }
      stat        = "Maximum"
      period      = 60
    }
  }

  metric_query {
    id          = "start_writer"
    label       = "ingest waiting, writer desired count 0"
    expression  = "IF(visible > 0 AND FILL(desired, 0) == 0, 1, 0)"
    return_data = true
  }
}

# n -> 0: nothing visible and nothing in flight for writer_idle_minutes.
resource "aws_appautoscaling_policy" "writer_to_zero" {
  name               = "${var.name}-writer-to-zero"
  policy_type        = "StepScaling"
  service_namespace  = aws_appautoscaling_target.writer.service_namespace
  scalable_dimension = aws_appautoscaling_target.writer.scalable_dimension
  resource_id        = aws_appautoscaling_target.writer.resource_id

  step_scaling_policy_configuration {
    adjustment_type         = "ExactCapacity"
    cooldown                = var.scale_in_cooldown_s
    metric_aggregation_type = "Maximum"

    step_adjustment {
      metric_interval_upper_bound = 0
      scaling_adjustment          = var.writer_min_tasks
    }
  }
}

resource "aws_cloudwatch_metric_alarm" "writer_to_zero" {
  alarm_name          = "${var.name}-writer-ingest-idle"
  alarm_description   = "The ingest queue was empty (nothing visible, nothing in flight) for ${var.writer_idle_minutes} minutes: scale the writer to ${var.writer_min_tasks}. Runbook: ${var.runbook_base_url}/writer-scaling.md"
  comparison_operator = "LessThanOrEqualToThreshold"
  threshold           = 0
  evaluation_periods  = var.writer_idle_minutes
  treat_missing_data  = "missing"
  alarm_actions       = [aws_appautoscaling_policy.writer_to_zero.arn]
  tags                = var.tags

  metric_query {
    id          = "visible"
    return_data = false

    metric {
      namespace   = "AWS/SQS"
      metric_name = "ApproximateNumberOfMessagesVisible"
      dimensions  = { QueueName = var.writer_queue_name }
      stat        = "Maximum"
      period      = 60
    }
  }

  metric_query {
    id          = "in_flight"
    return_data = false

    metric {
      namespace   = "AWS/SQS"
      metric_name = "ApproximateNumberOfMessagesNotVisible"
      dimensions  = { QueueName = var.writer_queue_name }
      stat        = "Maximum"
      period      = 60
    }
  }

  metric_query {
    id          = "ingest_backlog"
    label       = "ingest visible + in flight"
    expression  = "visible + in_flight"
    return_data = true
  }
}

# --- worker on admission rejections ------------------------------------------------------------

resource "aws_appautoscaling_policy" "worker_admission" {
  name               = "${var.name}-worker-admission-rejections"
  policy_type        = "StepScaling"
  service_namespace  = aws_appautoscaling_target.worker.service_namespace
  scalable_dimension = aws_appautoscaling_target.worker.scalable_dimension
  resource_id        = aws_appautoscaling_target.worker.resource_id

  step_scaling_policy_configuration {
    adjustment_type          = "PercentChangeInCapacity"
    min_adjustment_magnitude = 1
    cooldown                 = var.scale_out_cooldown_s
    metric_aggregation_type  = "Maximum"

    # up to 5x the threshold: +25%; beyond: +50% (bounded by worker_max_tasks)
    step_adjustment {
      metric_interval_lower_bound = 0
      metric_interval_upper_bound = 4 * var.admission_rejections_per_minute
      scaling_adjustment          = 25
    }

    step_adjustment {
      metric_interval_lower_bound = 4 * var.admission_rejections_per_minute
      scaling_adjustment          = 50
    }
  }
}

resource "aws_cloudwatch_metric_alarm" "worker_admission" {
  alarm_name          = "${var.name}-worker-scale-out-on-admission-rejections"
  alarm_description   = "The api refuses normal requests (503) because the high queue is backed up: add workers. Runbook: ${var.runbook_base_url}/admission-rejections.md"
  namespace           = var.admission_metrics_namespace
  metric_name         = "queuefront_admission_rejections_total"
  dimensions          = { process = "api" }
  statistic           = "Sum"
  period              = 60
  evaluation_periods  = 2
  datapoints_to_alarm = 2
  comparison_operator = "GreaterThanOrEqualToThreshold"
  threshold           = var.admission_rejections_per_minute
  treat_missing_data  = "notBreaching"
  alarm_actions       = [aws_appautoscaling_policy.worker_admission.arn]
  tags                = var.tags
}
