# The autoscaling module, planned with a mocked AWS provider: the numbers the services
# scale on, the fast alarms on the pods' scaling signal, the alarms that move the writer
# to and from zero, and the scheduled actions of known events.

mock_provider "aws" {
  override_during = plan
  source          = "../../tests/mocks"
}

override_resource {
  target          = aws_appautoscaling_policy.writer_from_zero
  override_during = plan
  values          = { arn = "arn:aws:autoscaling:eu-west-1:123456789012:scalingPolicy:1:resource/ecs/service/qf/qf-writer:policyName/qf-writer-from-zero" }
}

override_resource {
  target          = aws_appautoscaling_policy.worker_fast
  override_during = plan
  values          = { arn = "arn:aws:autoscaling:eu-west-1:123456789012:scalingPolicy:2:resource/ecs/service/qf/qf-worker:policyName/qf-worker-fast-demand" }
}

override_resource {
  target          = aws_appautoscaling_policy.api_fast
  override_during = plan
  values          = { arn = "arn:aws:autoscaling:eu-west-1:123456789012:scalingPolicy:3:resource/ecs/service/qf/qf-api:policyName/qf-api-fast-cpu" }
}

variables {
  name                = "qf"
  cluster_name        = "qf"
  api_service_name    = "qf-api"
  worker_service_name = "qf-worker"
  writer_service_name = "qf-writer"
  worker_queue_names  = ["qf-high", "qf-normal"]
  writer_queue_name   = "qf-ingest"
  alb_resource_label  = "app/qf-api/1/targetgroup/qf-api/2"

  worker_min_tasks   = 4
  worker_max_tasks   = 10
  worker_concurrency = 32

  worker_deployment_maximum_percent         = 125
  worker_deployment_minimum_healthy_percent = 100
  backend_max_concurrency                   = 400
  worker_acceptable_latency_s               = 5
  worker_processing_time_s                  = 0.05

  writer_min_tasks            = 0
  writer_max_tasks            = 4
  writer_acceptable_latency_s = 30
  writer_processing_time_s    = 0.0175
  runbook_base_url            = "https://example.com/runbooks"

  scaling_signal = {
    namespace  = "qf/scaling"
    dimensions = { Stack = "qf" }
    metrics = {
      backlog        = "QueueBacklog"
      drain_rate     = "DrainRate"
      drain_capacity = "DrainCapacity"
      cpu            = "CpuUtilization"
    }
  }
}

run "backlog_targets_are_messages_per_task" {
  command = plan

  assert {
    condition     = one(aws_appautoscaling_policy.worker_backlog.target_tracking_scaling_policy_configuration).target_value == 100
    error_message = "worker: 5 s acceptable wait / 0.05 s per message per task = 100 messages per task"
  }

  assert {
    condition     = one(aws_appautoscaling_policy.writer_backlog.target_tracking_scaling_policy_configuration).target_value == 1714
    error_message = "writer: 30 s / 0.0175 s per message = 1,714 messages per task"
  }

  assert {
    condition     = aws_appautoscaling_target.worker.min_capacity == 4 && aws_appautoscaling_target.worker.max_capacity == 10
    error_message = "worker: between worker_min_tasks and worker_max_tasks"
  }

  assert {
    condition     = aws_appautoscaling_target.worker.resource_id == "service/qf/qf-worker" && aws_appautoscaling_target.writer.resource_id == "service/qf/qf-writer"
    error_message = "the scalable targets are the worker and writer services"
  }
}

run "backlog_is_visible_plus_in_flight_over_running_tasks" {
  command = plan

  assert {
    condition = toset([
      for m in [
        for x in one(one(aws_appautoscaling_policy.worker_backlog.target_tracking_scaling_policy_configuration).customized_metric_specification).metrics : x
        if length(x.metric_stat) > 0
      ] :
      "${one(one(m.metric_stat).metric).metric_name}:${one(one(one(m.metric_stat).metric).dimensions).value}" if one(one(m.metric_stat).metric).namespace == "AWS/SQS"
      ]) == toset([
      "ApproximateNumberOfMessagesVisible:qf-high", "ApproximateNumberOfMessagesNotVisible:qf-high",
      "ApproximateNumberOfMessagesVisible:qf-normal", "ApproximateNumberOfMessagesNotVisible:qf-normal",
    ])
    error_message = "the worker's backlog is high + normal, visible and in flight"
  }

  assert {
    condition = [
      for m in one(one(aws_appautoscaling_policy.worker_backlog.target_tracking_scaling_policy_configuration).customized_metric_specification).metrics :
      m.expression if m.return_data
    ] == ["(q0v + q0n + q1v + q1n) / tasks"]
    error_message = "the worker's metric is the sum of its queues' backlog divided by its running tasks"
  }

  assert {
    condition = [
      for m in one(one(aws_appautoscaling_policy.writer_backlog.target_tracking_scaling_policy_configuration).customized_metric_specification).metrics :
      m.expression if m.return_data
    ] == ["(q0v + q0n) / tasks"]
    error_message = "the writer's metric is the ingest backlog divided by its running tasks"
  }
}

run "writer_starts_from_zero_once" {
  command = plan

  assert {
    condition     = one(aws_appautoscaling_policy.writer_from_zero.step_scaling_policy_configuration).adjustment_type == "ExactCapacity" && one(one(aws_appautoscaling_policy.writer_from_zero.step_scaling_policy_configuration).step_adjustment).scaling_adjustment == 1
    error_message = "from zero: exactly one task (a repeated alarm cannot ratchet a crash-looping writer up)"
  }

  assert {
    condition     = aws_cloudwatch_metric_alarm.writer_from_zero.alarm_actions == toset([aws_appautoscaling_policy.writer_from_zero.arn])
    error_message = "the alarm triggers the from-zero policy"
  }

  assert {
    condition     = aws_cloudwatch_metric_alarm.writer_from_zero.threshold == 1 && aws_cloudwatch_metric_alarm.writer_from_zero.comparison_operator == "GreaterThanOrEqualToThreshold"
    error_message = "the alarm fires when its expression is 1"
  }

  assert {
    condition = { for q in aws_cloudwatch_metric_alarm.writer_from_zero.metric_query : q.id => q.expression if q.return_data } == {
      start_writer = "IF(visible > 0 AND in_flight == 0 AND FILL(desired, 0) == 0, 1, 0)"
    }
    error_message = "the alarm's value is 1 exactly when ingest messages wait, none is in flight (no writer holds any) and the desired count is 0: a late desired count (FILL) never sets a busy writer to one task"
  }

  assert {
    condition = { for q in aws_cloudwatch_metric_alarm.writer_from_zero.metric_query : q.id => "${one(q.metric).namespace}/${one(q.metric).metric_name}" if !q.return_data } == {
      visible   = "AWS/SQS/ApproximateNumberOfMessagesVisible"
      in_flight = "AWS/SQS/ApproximateNumberOfMessagesNotVisible"
      desired   = "ECS/ContainerInsights/DesiredTaskCount"
    }
    error_message = "keyed on the ingest queue (visible and in flight, one datapoint) and the writer's desired count, not its lagging running count"
  }

  assert {
    condition     = [for q in aws_cloudwatch_metric_alarm.writer_from_zero.metric_query : one(q.metric).dimensions if q.id == "in_flight"] == [tomap({ QueueName = "qf-ingest" })]
    error_message = "the in-flight count of the ingest queue"
  }

  assert {
    condition     = [for q in aws_cloudwatch_metric_alarm.writer_from_zero.metric_query : one(q.metric).dimensions if q.id == "desired"] == [tomap({ ClusterName = "qf", ServiceName = "qf-writer" })]
    error_message = "the writer's service"
  }
}

run "writer_returns_to_zero_when_idle" {
  command = plan

  assert {
    condition     = one(aws_appautoscaling_policy.writer_to_zero.step_scaling_policy_configuration).adjustment_type == "ExactCapacity" && one(one(aws_appautoscaling_policy.writer_to_zero.step_scaling_policy_configuration).step_adjustment).scaling_adjustment == 0
    error_message = "to zero: exactly writer_min_tasks (0)"
  }

  assert {
    condition     = aws_cloudwatch_metric_alarm.writer_to_zero.evaluation_periods == 15 && aws_cloudwatch_metric_alarm.writer_to_zero.threshold == 0
    error_message = "after writer_idle_minutes of nothing visible or in flight"
  }
}

run "the_pods_signal_adds_workers_within_seconds" {
  command = plan

  assert {
    condition     = aws_cloudwatch_metric_alarm.worker_fast.alarm_actions == toset([aws_appautoscaling_policy.worker_fast.arn]) && aws_appautoscaling_policy.worker_fast.resource_id == "service/qf/qf-worker"
    error_message = "the fast alarm triggers the worker's step policy"
  }

  assert {
    condition     = alltrue([for q in aws_cloudwatch_metric_alarm.worker_fast.metric_query : one(q.metric).period == 10 if !q.return_data]) && aws_cloudwatch_metric_alarm.worker_fast.evaluation_periods == 2 && aws_cloudwatch_metric_alarm.worker_fast.datapoints_to_alarm == 2
    error_message = "a high-resolution alarm: 10 s periods, two in a row"
  }

  assert {
    condition = { for q in aws_cloudwatch_metric_alarm.worker_fast.metric_query : q.id => "${one(q.metric).namespace}/${one(q.metric).metric_name}" if !q.return_data } == {
      rate     = "qf/scaling/DrainRate"
      backlog  = "qf/scaling/QueueBacklog"
      capacity = "qf/scaling/DrainCapacity"
    }
    error_message = "the pods' signal, by the names scaling_signal gives"
  }

  assert {
    condition     = alltrue([for q in aws_cloudwatch_metric_alarm.worker_fast.metric_query : one(q.metric).dimensions == tomap({ Stack = "qf" }) if !q.return_data])
    error_message = "the stack's series (one per stack, never per task)"
  }

  assert {
    condition     = [for q in aws_cloudwatch_metric_alarm.worker_fast.metric_query : q.expression if q.return_data] == ["100 * (rate + backlog / 5) / capacity"] && aws_cloudwatch_metric_alarm.worker_fast.threshold == 70
    error_message = "demand: the drain rate plus the backlog cleared within worker_acceptable_latency_s, as a share of the workers' capacity, above 70 %"
  }

  assert {
    condition = toset([
      for s in one(aws_appautoscaling_policy.worker_fast.step_scaling_policy_configuration).step_adjustment :
      "${s.metric_interval_lower_bound}..${s.metric_interval_upper_bound == null || s.metric_interval_upper_bound == "" ? "inf" : s.metric_interval_upper_bound}:${s.scaling_adjustment}"
    ]) == toset(["0..30:50", "30..inf:300"])
    error_message = "+50 % above the target; from 100 % (the queue grows), +300 %: the backend's share at once"
  }

  assert {
    condition     = one(aws_appautoscaling_policy.worker_demand.target_tracking_scaling_policy_configuration).target_value == 70 && [for m in one(one(aws_appautoscaling_policy.worker_demand.target_tracking_scaling_policy_configuration).customized_metric_specification).metrics : m.expression if m.return_data] == ["100 * (rate + backlog / 5) / capacity"]
    error_message = "target tracking holds the same demand at 70 % (and brings the workers back in)"
  }
}

run "the_pods_cpu_adds_api_tasks_within_seconds" {
  command = plan

  assert {
    condition     = aws_cloudwatch_metric_alarm.api_fast.namespace == "qf/scaling" && aws_cloudwatch_metric_alarm.api_fast.metric_name == "CpuUtilization" && aws_cloudwatch_metric_alarm.api_fast.statistic == "Average" && aws_cloudwatch_metric_alarm.api_fast.period == 10
    error_message = "the api pods' own CPU, averaged, at 10 s"
  }

  assert {
    condition     = aws_cloudwatch_metric_alarm.api_fast.threshold == 60 && aws_cloudwatch_metric_alarm.api_fast.alarm_actions == toset([aws_appautoscaling_policy.api_fast.arn])
    error_message = "above the CPU target, the api's step policy"
  }

  assert {
    condition     = alltrue([for s in one(aws_appautoscaling_policy.api_fast.step_scaling_policy_configuration).step_adjustment : s.scaling_adjustment > 0]) && aws_appautoscaling_policy.api_fast.resource_id == "service/qf/qf-api"
    error_message = "the policy adds api tasks"
  }

  assert {
    condition     = length(aws_appautoscaling_policy.api_requests) == 0
    error_message = "no request-count policy unless api_requests_per_target is given"
  }
}

run "request_count_policy_on_request" {
  command = plan

  variables {
    api_requests_per_target = 6000
  }

  assert {
    condition     = one(aws_appautoscaling_policy.api_requests[0].target_tracking_scaling_policy_configuration).target_value == 6000
    error_message = "api_requests_per_target adds the ALB request-count policy"
  }
}

run "known_events_raise_the_floor_and_restore_it" {
  command = plan

  variables {
    scaling_events = {
      final = {
        start     = "2026-12-24T20:05:00"
        end       = "2026-12-24T20:40:00"
        timezone  = "Europe/Paris"
        min_tasks = { worker = 8, api = 1 }
      }
    }
  }

  assert {
    condition = { for k, a in aws_appautoscaling_scheduled_action.event : k => [a.schedule, a.timezone, a.resource_id, one(a.scalable_target_action).min_capacity, one(a.scalable_target_action).max_capacity] } == {
      "final-worker-start" = ["at(2026-12-24T20:05:00)", "Europe/Paris", "service/qf/qf-worker", "8", "10"]
      "final-worker-end"   = ["at(2026-12-24T20:40:00)", "Europe/Paris", "service/qf/qf-worker", "4", "10"]
      "final-api-start"    = ["at(2026-12-24T20:05:00)", "Europe/Paris", "service/qf/qf-api", "2", "20"]
      "final-api-end"      = ["at(2026-12-24T20:40:00)", "Europe/Paris", "service/qf/qf-api", "2", "20"]
    }
    error_message = "at the start the minimum is the event's (never below the service's own), at the end the service's own; the maximum stays"
  }
}

run "an_event_above_the_maximum_is_refused" {
  command = plan

  variables {
    scaling_events = {
      launch = { start = "2026-12-24T20:00:00", end = "2026-12-24T21:00:00", min_tasks = { worker = 12 } }
    }
  }

  # worker_max_tasks is 10: 12 cannot be a minimum
  expect_failures = [aws_appautoscaling_scheduled_action.event]
}

run "an_event_that_ends_before_it_starts_is_refused" {
  command = plan

  variables {
    scaling_events = {
      bad = { start = "2026-12-24T21:00:00", end = "2026-12-24T20:00:00", min_tasks = { worker = 8 } }
    }
  }

  expect_failures = [var.scaling_events]
}

run "an_event_for_an_unknown_service_is_refused" {
  command = plan

  variables {
    scaling_events = {
      bad = { start = "2026-12-24T20:00:00", end = "2026-12-24T21:00:00", min_tasks = { backend = 8 } }
    }
  }

  expect_failures = [var.scaling_events]
}

run "a_signal_period_alarms_cannot_have_is_refused" {
  command = plan

  variables {
    signal_period_s = 15
  }

  expect_failures = [var.signal_period_s]
}

run "peak_backend_calls" {
  command = plan

  assert {
    condition     = output.worker_peak_backend_calls == 384
    error_message = "10 tasks + 25% deploy overlap, rounded down as ECS does: 12 x 32 slots"
  }

  assert {
    condition     = output.worker_deploy_headroom_at_min == 1
    error_message = "a deploy at the minimum count (4) can start one task before stopping one"
  }
}

run "a_deploy_that_cannot_start_a_task_is_refused" {
  command = plan

  variables {
    worker_deployment_maximum_percent = 120
  }

  # floor(4 x 1.2) = 4: with 100% kept healthy, ECS could never start the first new task
  expect_failures = [aws_appautoscaling_target.worker]
}

run "a_deploy_may_drop_capacity_if_asked" {
  command = plan

  variables {
    worker_deployment_maximum_percent         = 100
    worker_deployment_minimum_healthy_percent = 50
    worker_max_tasks                          = 12
  }

  assert {
    condition     = output.worker_peak_backend_calls == 384
    error_message = "without overlap 12 tasks fit the backend"
  }
}

run "a_deploy_overlap_past_the_backend_stays_within_its_bound" {
  command = plan

  variables {
    worker_deployment_maximum_percent = 200
    worker_max_tasks                  = 20
  }

  # 40 tasks x 32 slots during a deploy: the shared limit keeps the calls at the backend's
  assert {
    condition     = output.worker_peak_backend_calls == 400
    error_message = "the workers' calls are bounded by backend_max_concurrency, whatever their slots"
  }
}

run "a_per_row_writer_time_is_refused" {
  command = plan

  variables {
    writer_processing_time_s = 0.0001
  }

  expect_failures = [var.writer_processing_time_s]
}
