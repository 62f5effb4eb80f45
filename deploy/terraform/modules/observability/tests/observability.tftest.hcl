# The observability module, planned with a mocked AWS provider: the whole-path alarms (what
# they watch, at what threshold, whom they tell, which runbook), failed deployments to the
# alarm topic, and the SLA dashboard.

mock_provider "aws" {
  override_during = plan
  source          = "../../tests/mocks"
}

variables {
  name                    = "qf"
  kms_key_arn             = "arn:aws:kms:eu-west-1:123456789012:key/1111"
  cluster_name            = "qf"
  service_names           = { api = "qf-api", worker = "qf-worker", writer = "qf-writer" }
  alb_arn_suffix          = "app/qf-api/1"
  target_group_arn_suffix = "targetgroup/qf-api/2"
  api_name                = "qf"
  api_stage               = "live"
  api_web_acl_name        = "qf-api"
  queue_names             = { high = "qf-high", normal = "qf-normal", ingest = "qf-ingest" }
  dlq_names               = { high = "qf-high-dlq", normal = "qf-normal-dlq", ingest = "qf-ingest-dlq" }
  runbook_base_url        = "https://example.com/runbooks"
}

run "alarms_watch_the_sla" {
  command = plan

  assert {
    condition = (
      aws_cloudwatch_metric_alarm.reply_timeout_rate.threshold == 1 &&
      { for q in aws_cloudwatch_metric_alarm.reply_timeout_rate.metric_query : q.id => q.expression if q.return_data } == { rate = "IF(requests > 0, 100 * FILL(timeouts, 0) / requests, 0)" } &&
      [for q in aws_cloudwatch_metric_alarm.reply_timeout_rate.metric_query : one(q.metric).dimensions if q.id == "timeouts"] == [tomap({ process = "api", status = "504" })]
    )
    error_message = "504s over 1% of the api's answers alarm"
  }

  assert {
    condition = (
      aws_cloudwatch_metric_alarm.admission_rejections.threshold == 5 &&
      [for q in aws_cloudwatch_metric_alarm.admission_rejections.metric_query : one(q.metric).metric_name if q.id == "rejected"] == ["queuefront_admission_rejections_total"]
    )
    error_message = "admission 503s over 5% of requests alarm"
  }

  assert {
    condition     = aws_cloudwatch_metric_alarm.ingest_lag.metric_name == "queuefront_ingest_lag_seconds" && aws_cloudwatch_metric_alarm.ingest_lag.threshold == 60 && aws_cloudwatch_metric_alarm.ingest_lag.statistic == "Average"
    error_message = "ingest lag over 60 s on average alarms"
  }

  assert {
    condition = aws_cloudwatch_metric_alarm.api_5xx_rate.threshold == 5 && toset([
      for q in aws_cloudwatch_metric_alarm.api_5xx_rate.metric_query : "${one(q.metric).metric_name} ${jsonencode(one(q.metric).dimensions)}" if q.expression == null
    ]) == toset(["5XXError {\"ApiName\":\"qf\",\"Stage\":\"live\"}", "Count {\"ApiName\":\"qf\",\"Stage\":\"live\"}"])
    error_message = "the REST API's 5XXError over 5% of its Count alarms (REST metric names and dimensions)"
  }

  assert {
    condition     = aws_cloudwatch_metric_alarm.api_unhealthy_hosts.threshold == 1 && aws_cloudwatch_metric_alarm.api_unhealthy_hosts.comparison_operator == "LessThanThreshold" && aws_cloudwatch_metric_alarm.api_unhealthy_hosts.treat_missing_data == "breaching"
    error_message = "no healthy api task alarms (missing data counts: no targets report nothing)"
  }
}

run "every_alarm_pages_and_links_its_runbook" {
  command = plan

  assert {
    condition = alltrue([
      for a in [
        aws_cloudwatch_metric_alarm.api_5xx_rate, aws_cloudwatch_metric_alarm.reply_timeout_rate,
        aws_cloudwatch_metric_alarm.admission_rejections, aws_cloudwatch_metric_alarm.ingest_lag,
        aws_cloudwatch_metric_alarm.api_unhealthy_hosts, aws_cloudwatch_metric_alarm.worker_not_running,
        aws_cloudwatch_metric_alarm.metrics_missing["api"], aws_cloudwatch_metric_alarm.metrics_missing["worker"],
        aws_cloudwatch_metric_alarm.writer_metrics_missing, aws_cloudwatch_metric_alarm.clock_offset["api"],
        aws_cloudwatch_metric_alarm.clock_offset["worker"], aws_cloudwatch_metric_alarm.clock_offset["writer"],
        aws_cloudwatch_metric_alarm.direct_calls,
      ] : a.alarm_actions == toset([aws_sns_topic.alarms.arn])
    ])
    error_message = "every alarm notifies the alarm topic"
  }

  assert {
    condition = {
      for k, a in {
        api-5xx-rate         = aws_cloudwatch_metric_alarm.api_5xx_rate
        reply-timeout-rate   = aws_cloudwatch_metric_alarm.reply_timeout_rate
        admission-rejections = aws_cloudwatch_metric_alarm.admission_rejections
        ingest-lag           = aws_cloudwatch_metric_alarm.ingest_lag
        no-healthy-task      = aws_cloudwatch_metric_alarm.api_unhealthy_hosts
      } : k => strcontains(a.alarm_description, "https://example.com/runbooks/${k}.md")
      } == {
      api-5xx-rate = true, reply-timeout-rate = true, admission-rejections = true, ingest-lag = true, no-healthy-task = true
    }
    error_message = "each alarm's description links its runbook"
  }
}

run "failed_deployments_reach_the_alarm_topic" {
  command = plan

  assert {
    condition = jsondecode(aws_cloudwatch_event_rule.deployment_failed.event_pattern) == {
      source        = ["aws.ecs"]
      "detail-type" = ["ECS Deployment State Change"]
      resources     = [{ prefix = "arn:aws:ecs:eu-west-1:123456789012:service/qf/" }]
      detail        = { eventName = ["SERVICE_DEPLOYMENT_FAILED"] }
    }
    error_message = "the rule matches failed deployments of this cluster's services"
  }

  assert {
    condition     = aws_cloudwatch_event_target.deployment_failed.arn == aws_sns_topic.alarms.arn && strcontains(one(aws_cloudwatch_event_target.deployment_failed.input_transformer).input_template, "https://example.com/runbooks/deployment-failed.md")
    error_message = "failed deployments go to the alarm topic with their runbook"
  }

  assert {
    condition = anytrue([
      for st in jsondecode(aws_sns_topic_policy.alarms.policy).Statement :
      st.Principal == { Service = "events.amazonaws.com" } && st.Action == "sns:Publish"
    ])
    error_message = "EventBridge may publish to the topic"
  }
}

run "the_dashboard_shows_the_sla" {
  command = plan

  assert {
    condition = toset([for w in jsondecode(aws_cloudwatch_dashboard.sla.dashboard_body).widgets : w.properties.title]) == toset([
      "Requests by outcome (API Gateway)",
      "Answers by status (api)",
      "Reply latency percentiles (API Gateway, seconds to the viewer's answer)",
      "Replies awaited by the api (ok, timeout, late)",
      "Backlog (visible + in flight)",
      "Age of the oldest message (seconds)",
      "Admission rejections (503) and reply timeouts (504) per minute",
      "Dead-letter queues and ingest lag",
      "Running tasks",
    ])
    error_message = "the dashboard has the seed's SLA view"
  }

  assert {
    condition = [
      for w in jsondecode(aws_cloudwatch_dashboard.sla.dashboard_body).widgets : [for m in w.properties.metrics : m[length(m) - 1].stat]
      if w.properties.title == "Reply latency percentiles (API Gateway, seconds to the viewer's answer)"
    ] == [["p50", "p90", "p99"]]
    error_message = "latency percentiles p50, p90, p99"
  }

  assert {
    condition = toset(flatten([
      for w in jsondecode(aws_cloudwatch_dashboard.sla.dashboard_body).widgets : [for m in w.properties.metrics : m[3]]
      if w.properties.title == "Age of the oldest message (seconds)"
    ])) == toset(["qf-high", "qf-normal", "qf-ingest"])
    error_message = "the age of the oldest message of every queue"
  }
}

run "paging_is_more_than_email" {
  command = plan

  variables {
    alarm_emails        = ["oncall@example.com"]
    alarm_subscriptions = { pager = { protocol = "https", endpoint = "https://events.pagerduty.example/integration/abc/enqueue" } }
  }

  assert {
    condition = toset([for s in aws_sns_topic_subscription.alarms : "${s.protocol} ${s.endpoint}"]) == toset([
      "email oncall@example.com", "https https://events.pagerduty.example/integration/abc/enqueue",
    ]) && alltrue([for s in aws_sns_topic_subscription.alarms : s.topic_arn == aws_sns_topic.alarms.arn])
    error_message = "the alarm topic pages every subscriber given, e-mail or not"
  }
}

run "a_silent_collector_pages" {
  command = plan

  assert {
    condition = alltrue([
      for k, a in aws_cloudwatch_metric_alarm.metrics_missing :
      a.treat_missing_data == "breaching" && a.namespace == "queuefront" && a.dimensions["process"] == k && a.comparison_operator == "LessThanThreshold" && a.threshold == 1
    ]) && toset(keys(aws_cloudwatch_metric_alarm.metrics_missing)) == toset(["api", "worker"])
    error_message = "no heartbeat from the api or the worker pages (missing data breaches)"
  }

  assert {
    condition     = { for q in aws_cloudwatch_metric_alarm.writer_metrics_missing.metric_query : q.id => q.expression if q.return_data } == { silent = "IF(FILL(running, 0) > 0 AND FILL(heartbeat, 0) == 0, 1, 0)" }
    error_message = "a running writer without metrics pages; a writer scaled to zero does not"
  }

  assert {
    condition     = strcontains(aws_cloudwatch_metric_alarm.metrics_missing["api"].alarm_description, "https://example.com/runbooks/metrics-missing.md")
    error_message = "the heartbeat alarm links its runbook"
  }
}

run "a_clock_off_by_more_than_a_second_pages" {
  command = plan

  assert {
    condition = alltrue([
      for k, a in aws_cloudwatch_metric_alarm.clock_offset :
      a.threshold == 1 && a.comparison_operator == "GreaterThanThreshold" &&
      { for q in a.metric_query : q.id => q.expression if q.return_data } == { offset = "MAX([ABS(ahead), ABS(behind)])" } &&
      toset([for q in a.metric_query : "${one(q.metric).metric_name} ${one(q.metric).stat} ${one(q.metric).dimensions["process"]}" if !q.return_data]) == toset([
        "queuefront_clock_offset_seconds Maximum ${k}", "queuefront_clock_offset_seconds Minimum ${k}",
      ])
    ]) && length(aws_cloudwatch_metric_alarm.clock_offset) == 3
    error_message = "every process's clock offset beyond 1 s, ahead or behind, pages"
  }
}

run "direct_calls_are_seen" {
  command = plan

  assert {
    condition     = aws_cloudwatch_metric_alarm.direct_calls.namespace == "AWS/WAFV2" && aws_cloudwatch_metric_alarm.direct_calls.metric_name == "BlockedRequests" && aws_cloudwatch_metric_alarm.direct_calls.dimensions == tomap({ WebACL = "qf-api", Region = "eu-west-1", Rule = "ALL" })
    error_message = "requests the API's WAF refused (they skipped CloudFront) are counted and alarm"
  }
}
