# Application Auto Scaling for the three services.
#
# Two speeds. The pods' scaling signal (service/scaling_signal.py: queue backlog, drain rate
# and capacity, CPU, as CloudWatch embedded-metric-format lines on stdout, high-resolution)
# reaches CloudWatch within seconds; step policies on 10-second alarms over it add tasks
# while a burst is still young. Target tracking over the same signal and over SQS's own
# one-minute metrics holds the fleets in steady state and is the only way back in (its
# alarms want 15 minutes below 90 % of the target), so the fast path can overshoot without
# flapping. Application Auto Scaling takes the largest capacity any policy asks for.
#
# Why not target tracking alone: its alarms want 3 datapoints of 1 minute above the target
# (Application Auto Scaling does not offer high-resolution periods for target tracking:
# its TargetTrackingMetricStat has no period), and SQS publishes one datapoint per minute,
# a minute or more late — 3 to 5 minutes from a burst to a decision. A CloudWatch alarm on
# a high-resolution metric may have a 10 s period ("High-resolution alarms", CloudWatch
# User Guide; PutMetricAlarm: "Valid values are 10, 20, 30, and any multiple of 60") and
# Auto Scaling actions repeat while it stays in ALARM ("Alarm actions").
#
# worker: demand as a share of the workers' capacity — (drain rate + backlog ÷ the
# acceptable latency) ÷ the workers' capacity (their slots ÷ the measured service time):
# the capacity needed to keep up and clear the queue within worker_acceptable_latency_s.
# Proportional to 1 / tasks, as target tracking needs; unlike backlog per task it does not
# read a busy fleet as idle (a fleet that keeps up has almost nothing visible, and its
# in-flight messages are bounded by its slots, whatever the demand behind them).
# Backlog per task over SQS's metrics stays as a second target tracking policy: it keeps
# the workers scaling if the pods' signal goes missing.
#
# writer: target tracking on backlog per task (SQS); to and from zero by step policies.
#
# api: CPU — target tracking on ECS's one-minute service average, and steps on the pods'
# own CPU at 10 s. The api's CPU per request differs fourfold between a cache hit and a
# queued request (bench/figures/throughput.json), so request count per target is a poor
# proxy for its load; api_requests_per_target can still add that policy.
#
# scaling_events: scheduled raises of the minimum for known events (a sale, a TV show).

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
  # rounded down (ECS's rounding of maximumPercent). Their slots together may exceed the
  # backend's bound: the workers share one limit (QF_BACKEND_MAX_CONCURRENCY, a lease in
  # Redis per call, set to backend_max_concurrency by the compute module), so the calls
  # in flight are the smaller of the two whatever the task count.
  worker_peak_tasks         = floor(var.worker_max_tasks * var.worker_deployment_maximum_percent / 100)
  worker_peak_backend_calls = min(local.worker_peak_tasks * var.worker_concurrency, var.backend_max_concurrency)

  # With a minimum healthy percent of 100 a deploy must be able to start one new task before
  # it stops an old one, at the smallest count too (maximumPercent is rounded down).
  worker_deploy_headroom_at_min = floor(var.worker_min_tasks * var.worker_deployment_maximum_percent / 100) - var.worker_min_tasks

  worker_resource_id = "service/${var.cluster_name}/${var.worker_service_name}"
  writer_resource_id = "service/${var.cluster_name}/${var.writer_service_name}"
  api_resource_id    = "service/${var.cluster_name}/${var.api_service_name}"

  # The pods' scaling signal: one query per metric the fast alarms read, with the
  # dimensions the api writes (the stack's, never a task's).
  signal = var.scaling_signal
  signal_dimensions = [
    for k in sort(keys(local.signal.dimensions)) : { name = k, value = local.signal.dimensions[k] }
  ]

  # The workers' demand as a percentage of their capacity (see the notes at the top).
  worker_demand_expression = "100 * (rate + backlog / ${var.worker_acceptable_latency_s}) / capacity"
  worker_demand_queries = {
    rate     = local.signal.metrics.drain_rate
    backlog  = local.signal.metrics.backlog
    capacity = local.signal.metrics.drain_capacity
  }
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
  count = var.api_requests_per_target == null ? 0 : 1

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

# The pods' own CPU at 10 s: tasks added while a burst is young, in proportion to how far
# above the target the api runs (a saturated api cannot say how far: the last step doubles).
resource "aws_appautoscaling_policy" "api_fast" {
  name               = "${var.name}-api-fast-cpu"
  policy_type        = "StepScaling"
  service_namespace  = aws_appautoscaling_target.api.service_namespace
  scalable_dimension = aws_appautoscaling_target.api.scalable_dimension
  resource_id        = aws_appautoscaling_target.api.resource_id

  step_scaling_policy_configuration {
    adjustment_type          = "PercentChangeInCapacity"
    min_adjustment_magnitude = 1
    cooldown                 = var.scale_out_cooldown_s
    metric_aggregation_type  = "Average"

    # breach = CPU - api_cpu_target_percent (percentage points)
    step_adjustment {
      metric_interval_lower_bound = 0
      metric_interval_upper_bound = 20
      scaling_adjustment          = 25
    }

    step_adjustment {
      metric_interval_lower_bound = 20
      metric_interval_upper_bound = 35
      scaling_adjustment          = 50
    }

    step_adjustment {
      metric_interval_lower_bound = 35
      scaling_adjustment          = 100
    }
  }
}

resource "aws_cloudwatch_metric_alarm" "api_fast" {
  alarm_name          = "${var.name}-api-cpu-fast"
  alarm_description   = "The api pods' own CPU (their scaling signal, ${var.signal_period_s} s) is above the target: add api tasks now. Runbook: ${var.runbook_base_url}/scaling.md"
  namespace           = local.signal.namespace
  metric_name         = local.signal.metrics.cpu
  dimensions          = local.signal.dimensions
  statistic           = "Average"
  period              = var.signal_period_s
  evaluation_periods  = var.signal_datapoints
  datapoints_to_alarm = var.signal_datapoints
  comparison_operator = "GreaterThanThreshold"
  threshold           = var.api_cpu_target_percent
  treat_missing_data  = "notBreaching"
  alarm_actions       = [aws_appautoscaling_policy.api_fast.arn]
  tags                = var.tags
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

# The workers' demand (the pods' signal, one-minute datapoints): the steady state and the
# way back in.
resource "aws_appautoscaling_policy" "worker_demand" {
  name               = "${var.name}-worker-demand"
  policy_type        = "TargetTrackingScaling"
  service_namespace  = aws_appautoscaling_target.worker.service_namespace
  scalable_dimension = aws_appautoscaling_target.worker.scalable_dimension
  resource_id        = aws_appautoscaling_target.worker.resource_id

  target_tracking_scaling_policy_configuration {
    target_value       = var.worker_target_utilization_percent
    scale_in_cooldown  = var.scale_in_cooldown_s
    scale_out_cooldown = var.scale_out_cooldown_s

    customized_metric_specification {
      dynamic "metrics" {
        for_each = local.worker_demand_queries
        content {
          id          = metrics.key
          return_data = false

          metric_stat {
            stat = "Average"

            metric {
              namespace   = local.signal.namespace
              metric_name = metrics.value

              dynamic "dimensions" {
                for_each = local.signal_dimensions
                content {
                  name  = dimensions.value.name
                  value = dimensions.value.value
                }
              }
            }
          }
        }
      }

      metrics {
        id          = "demand"
        label       = "worker demand, % of capacity"
        expression  = local.worker_demand_expression
        return_data = true
      }
    }
  }
}

# The same demand at 10 s: workers added within seconds of a burst. Past 100 % the queue
# grows faster than the workers drain it: go to the backend's share at once (a worker task
# costs cents an hour; the alternative is refusing requests).
resource "aws_appautoscaling_policy" "worker_fast" {
  name               = "${var.name}-worker-fast-demand"
  policy_type        = "StepScaling"
  service_namespace  = aws_appautoscaling_target.worker.service_namespace
  scalable_dimension = aws_appautoscaling_target.worker.scalable_dimension
  resource_id        = aws_appautoscaling_target.worker.resource_id

  step_scaling_policy_configuration {
    adjustment_type          = "PercentChangeInCapacity"
    min_adjustment_magnitude = 1
    cooldown                 = var.scale_out_cooldown_s
    metric_aggregation_type  = "Average"

    # breach = demand - worker_target_utilization_percent (percentage points)
    step_adjustment {
      metric_interval_lower_bound = 0
      metric_interval_upper_bound = 100 - var.worker_target_utilization_percent
      scaling_adjustment          = 50
    }

    step_adjustment {
      metric_interval_lower_bound = 100 - var.worker_target_utilization_percent
      scaling_adjustment          = 300
    }
  }
}

resource "aws_cloudwatch_metric_alarm" "worker_fast" {
  alarm_name          = "${var.name}-worker-demand-fast"
  alarm_description   = "The workers' demand (the pods' scaling signal, ${var.signal_period_s} s) is above ${var.worker_target_utilization_percent} % of their capacity: add workers now. Runbook: ${var.runbook_base_url}/scaling.md"
  comparison_operator = "GreaterThanThreshold"
  threshold           = var.worker_target_utilization_percent
  evaluation_periods  = var.signal_datapoints
  datapoints_to_alarm = var.signal_datapoints
  treat_missing_data  = "notBreaching"
  alarm_actions       = [aws_appautoscaling_policy.worker_fast.arn]
  tags                = var.tags

  dynamic "metric_query" {
    for_each = local.worker_demand_queries
    content {
      id          = metric_query.key
      return_data = false

      metric {
        namespace   = local.signal.namespace
        metric_name = metric_query.value
        dimensions  = local.signal.dimensions
        stat        = "Average"
        period      = var.signal_period_s
      }
    }
  }

  metric_query {
    id          = "demand"
    label       = "worker demand, % of capacity"
    expression  = local.worker_demand_expression
    return_data = true
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

  # A writer that runs holds messages: none in flight for the whole minute is what says no
  # writer consumes. Read from the same SQS datapoint as `visible`, so it is never late
  # where `visible` is on time.
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

  # FILL(desired, 0): Container Insights may publish nothing for a service without tasks,
  # so a missing desired count is read as zero — and a late datapoint then looks like a
  # writer at zero. `in_flight == 0` keeps that from setting a busy writer to one task.
  metric_query {
    id          = "start_writer"
    label       = "ingest waiting, nothing in flight, writer desired count 0"
    expression  = "IF(visible > 0 AND in_flight == 0 AND FILL(desired, 0) == 0, 1, 0)"
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

# --- known events ------------------------------------------------------------------------------
# A scheduled action raises a service's minimum at an event's start and restores it at its
# end (Application Auto Scaling, "Scheduled scaling"): the tasks run before the first
# request of the burst, where any reactive policy is at least a task start behind it.
# Dynamic scaling stays on meanwhile and may go higher; the end action leaves the count
# where it is, and target tracking brings it down as the load allows.

locals {
  scalable = {
    api    = { id = aws_appautoscaling_target.api.resource_id, min = var.api_min_tasks, max = var.api_max_tasks }
    worker = { id = aws_appautoscaling_target.worker.resource_id, min = var.worker_min_tasks, max = var.worker_max_tasks }
    writer = { id = aws_appautoscaling_target.writer.resource_id, min = var.writer_min_tasks, max = var.writer_max_tasks }
  }

  # one action at each event's start and one at its end, per service it names
  event_list = flatten([
    for event, e in var.scaling_events : [
      for service, tasks in e.min_tasks : [
        {
          key      = "${event}-${service}-start"
          service  = service
          schedule = "at(${e.start})"
          timezone = e.timezone
          min      = max(tasks, local.scalable[service].min)
        },
        {
          key      = "${event}-${service}-end"
          service  = service
          schedule = "at(${e.end})"
          timezone = e.timezone
          min      = local.scalable[service].min
        },
      ]
    ]
  ])
  event_actions = { for a in local.event_list : a.key => a }
}

resource "aws_appautoscaling_scheduled_action" "event" {
  for_each = local.event_actions

  name               = "${var.name}-${each.key}"
  service_namespace  = "ecs"
  scalable_dimension = "ecs:service:DesiredCount"
  resource_id        = local.scalable[each.value.service].id
  schedule           = each.value.schedule
  timezone           = each.value.timezone

  scalable_target_action {
    min_capacity = each.value.min
    max_capacity = local.scalable[each.value.service].max
  }

  lifecycle {
    # Application Auto Scaling refuses a minimum above the maximum, at apply time; the
    # maximum is a bound (the workers': the backend's slots with a deploy's overlap), so
    # an event cannot raise it
    precondition {
      condition     = each.value.min <= local.scalable[each.value.service].max
      error_message = "scaling_events: ${each.key} asks for ${each.value.min} ${each.value.service} tasks, above ${each.value.service}_max_tasks (${local.scalable[each.value.service].max}): ask for at most the maximum."
    }
  }

  # Application Auto Scaling refuses concurrent changes to one scalable target
  # (ConcurrentUpdateException): the actions come after the policies.
  depends_on = [
    aws_appautoscaling_policy.api_cpu,
    aws_appautoscaling_policy.api_fast,
    aws_appautoscaling_policy.worker_backlog,
    aws_appautoscaling_policy.worker_demand,
    aws_appautoscaling_policy.worker_fast,
    aws_appautoscaling_policy.writer_backlog,
    aws_appautoscaling_policy.writer_from_zero,
    aws_appautoscaling_policy.writer_to_zero,
  ]
}
