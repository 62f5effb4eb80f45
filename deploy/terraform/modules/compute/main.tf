# ECS on Fargate: one cluster (Container Insights on: the autoscaling metric math reads its
# RunningTaskCount), one image, a task definition per process (api, worker, writer and the
# one-off migrate), services for the first three, least-privilege task roles, secrets
# injected from Secrets Manager, and an optional ADOT collector sidecar for /metrics.

data "aws_region" "current" {}
data "aws_caller_identity" "current" {}
data "aws_partition" "current" {}

locals {
  region = data.aws_region.current.name

  # The command picks the process; the image is the same.
  processes = {
    api     = { command = ["python", "-m", "service"], metrics_port = var.settings.http_port }
    worker  = { command = ["python", "-m", "workers.priority"], metrics_port = var.settings.metrics_port }
    writer  = { command = ["python", "-m", "workers.ingest"], metrics_port = var.settings.metrics_port }
    migrate = { command = ["python", "-m", "queuefront.migrate"], metrics_port = null }
  }

  # Long-running processes get an ECS service; migrate is run with `aws ecs run-task`.
  services = { for k, v in local.processes : k => v if k != "migrate" }

  # --- QF_* settings per process -------------------------------------------------------------
  # Every name here is a field of queuefront.settings.Settings (tests/terraform checks it).
  # Values are strings: ECS passes environment variables as strings.
  environment = {
    api = {
      QF_AWS_REGION            = local.region
      QF_SQS_ENDPOINT_URL      = ""
      QF_QUEUE_HIGH            = var.queue_names["high"]
      QF_QUEUE_NORMAL          = var.queue_names["normal"]
      QF_QUEUE_INGEST          = var.queue_names["ingest"]
      QF_DLQ_SUFFIX            = var.dlq_suffix
      QF_HTTP_PORT             = tostring(var.settings.http_port)
      QF_ROUTES_FILE           = var.settings.routes_file
      QF_REDIS_MAX_CONNECTIONS = tostring(var.settings.redis_max_connections)
      QF_ADMISSION_THRESHOLD   = tostring(var.settings.admission_threshold)
      QF_ADMISSION_WAIT_S      = tostring(var.settings.admission_wait_s)
      QF_BACKLOG_POLL_S        = tostring(var.settings.backlog_poll_s)
      QF_REPLY_TTL_S           = tostring(var.settings.reply_ttl_s)
      QF_RATE_LIMIT_RPS        = tostring(var.settings.rate_limit_rps)
      QF_RATE_LIMIT_BURST      = tostring(var.settings.rate_limit_burst)
      QF_AUTH_JWT_AUDIENCE     = var.settings.auth_jwt_audience
      QF_LOG_LEVEL             = var.settings.log_level
      QF_LOG_FORMAT            = "json"
    }
    worker = {
      QF_AWS_REGION            = local.region
      QF_SQS_ENDPOINT_URL      = ""
      QF_QUEUE_HIGH            = var.queue_names["high"]
      QF_QUEUE_NORMAL          = var.queue_names["normal"]
      QF_DLQ_SUFFIX            = var.dlq_suffix
      QF_MAX_RECEIVE_COUNT     = tostring(var.max_receive_count)
      QF_VISIBILITY_TIMEOUT_S  = tostring(var.visibility_timeout_s.worker)
      QF_BACKEND_URL           = var.backend_url
      QF_ROUTES_FILE           = var.settings.routes_file
      QF_REDIS_MAX_CONNECTIONS = tostring(var.settings.redis_max_connections)
      QF_WORKER_CONCURRENCY    = tostring(var.settings.worker_concurrency)
      QF_REPLY_TTL_S           = tostring(var.settings.reply_ttl_s)
      QF_SHUTDOWN_TIMEOUT_S    = tostring(var.settings.shutdown_timeout_s)
      QF_METRICS_PORT          = tostring(var.settings.metrics_port)
      QF_LOG_LEVEL             = var.settings.log_level
      QF_LOG_FORMAT            = "json"
    }
    writer = {
      QF_AWS_REGION            = local.region
      QF_SQS_ENDPOINT_URL      = ""
      QF_QUEUE_INGEST          = var.queue_names["ingest"]
      QF_DLQ_SUFFIX            = var.dlq_suffix
      QF_MAX_RECEIVE_COUNT     = tostring(var.max_receive_count)
      QF_VISIBILITY_TIMEOUT_S  = tostring(var.visibility_timeout_s.writer)
      QF_ROUTES_FILE           = var.settings.routes_file
      QF_REDIS_MAX_CONNECTIONS = tostring(var.settings.redis_max_connections)
      QF_BATCH_SIZE            = tostring(var.settings.batch_size)
      QF_BATCH_MAX_WAIT_S      = tostring(var.settings.batch_max_wait_s)
      QF_SHUTDOWN_TIMEOUT_S    = tostring(var.settings.shutdown_timeout_s)
      QF_METRICS_PORT          = tostring(var.settings.metrics_port)
      QF_LOG_LEVEL             = var.settings.log_level
      QF_LOG_FORMAT            = "json"
    }
    migrate = {
      QF_ROUTES_FILE = var.settings.routes_file
      QF_LOG_LEVEL   = var.settings.log_level
      QF_LOG_FORMAT  = "json"
    }
  }

  # Secrets Manager ARNs injected by ECS (`secrets` in the container definition); a null
  # ARN leaves the variable out.
  secrets = {
    api = {
      QF_REDIS_URL       = var.redis_url_secret_arn
      QF_AUTH_API_KEYS   = var.auth_api_keys_secret_arn
      QF_AUTH_JWT_SECRET = var.auth_jwt_secret_arn
    }
    worker = {
      QF_REDIS_URL = var.redis_url_secret_arn
    }
    writer = {
      QF_REDIS_URL    = var.redis_url_secret_arn
      QF_DATABASE_URL = var.database_url_secret_arn
    }
    migrate = {
      QF_DATABASE_URL = var.database_url_secret_arn
    }
  }

  secret_arns = distinct(compact(flatten([for p in values(local.secrets) : values(p)])))

  security_groups = {
    api     = [var.tasks_security_group_id, aws_security_group.api.id]
    worker  = [var.tasks_security_group_id]
    writer  = [var.tasks_security_group_id, var.db_clients_security_group_id]
    migrate = [var.tasks_security_group_id, var.db_clients_security_group_id]
  }

  # Liveness: /healthz on the api, /metrics on the workers' metrics port.
  health_urls = {
    api     = "http://127.0.0.1:${var.settings.http_port}/healthz"
    worker  = "http://127.0.0.1:${var.settings.metrics_port}/metrics"
    writer  = "http://127.0.0.1:${var.settings.metrics_port}/metrics"
    migrate = null
  }

  metrics_log_group = "/ecs/${var.name}/metrics"

  # ADOT collector: scrape the process's /metrics on localhost every 30 s, keep queuefront_*
  # series only (bounded CloudWatch cost), write them as embedded-metric-format logs.
  collector_config = {
    for k, p in local.services : k => yamlencode({
      extensions = { health_check = {} }
      receivers = {
        prometheus = {
          config = {
            scrape_configs = [{
              job_name        = k
              scrape_interval = "30s"
              metrics_path    = "/metrics"
              static_configs  = [{ targets = ["127.0.0.1:${p.metrics_port}"] }]
            }]
          }
        }
      }
      processors = {
        "filter/queuefront" = {
          metrics = { include = { match_type = "regexp", metric_names = ["queuefront_.*"] } }
        }
        batch = { timeout = "60s" }
      }
      exporters = {
        awsemf = {
          namespace                        = var.metrics_namespace
          log_group_name                   = local.metrics_log_group
          log_stream_name                  = "${k}/{TaskId}"
          region                           = local.region
          dimension_rollup_option          = "NoDimensionRollup"
          resource_to_telemetry_conversion = { enabled = false }
        }
      }
      service = {
        extensions = ["health_check"]
        pipelines = {
          metrics = {
            receivers  = ["prometheus"]
            processors = ["filter/queuefront", "batch"]
            exporters  = ["awsemf"]
          }
        }
      }
    })
  }
}

# --- cluster ---------------------------------------------------------------------------------

resource "aws_cloudwatch_log_group" "exec" {
  name              = "/ecs/${var.name}/exec"
  retention_in_days = var.log_retention_days
  kms_key_id        = var.kms_key_arn
  tags              = var.tags
}

resource "aws_ecs_cluster" "this" {
  name = var.name

  setting {
    name  = "containerInsights"
    value = "enabled"
  }

  configuration {
    execute_command_configuration {
      kms_key_id = var.kms_key_arn
      logging    = "OVERRIDE"

      log_configuration {
        cloud_watch_encryption_enabled = true
        cloud_watch_log_group_name     = aws_cloudwatch_log_group.exec.name
      }
    }
  }

  tags = var.tags
}

resource "aws_ecs_cluster_capacity_providers" "this" {
  cluster_name       = aws_ecs_cluster.this.name
  capacity_providers = ["FARGATE", "FARGATE_SPOT"]

  default_capacity_provider_strategy {
    capacity_provider = "FARGATE"
    weight            = 1
  }
}

# --- logs ------------------------------------------------------------------------------------

resource "aws_cloudwatch_log_group" "process" {
  for_each = local.processes

  name              = "/ecs/${var.name}/${each.key}"
  retention_in_days = var.log_retention_days
  kms_key_id        = var.kms_key_arn
  tags              = var.tags
}

resource "aws_cloudwatch_log_group" "metrics" {
  name              = local.metrics_log_group
  retention_in_days = var.log_retention_days
  kms_key_id        = var.kms_key_arn
  tags              = var.tags
}

# --- IAM: execution role (pull the image, write logs, read the secrets) -----------------

data "aws_iam_policy_document" "ecs_tasks_assume" {
  statement {
    actions = ["sts:AssumeRole"]

    principals {
      type        = "Service"
      identifiers = ["ecs-tasks.amazonaws.com"]
    }

    condition {
      test     = "StringEquals"
      variable = "aws:SourceAccount"
      values   = [data.aws_caller_identity.current.account_id]
    }
  }
}

resource "aws_iam_role" "execution" {
  name               = "${var.name}-ecs-execution"
  assume_role_policy = data.aws_iam_policy_document.ecs_tasks_assume.json
  tags               = var.tags
}

data "aws_iam_policy_document" "execution" {
  dynamic "statement" {
    for_each = var.ecr_repository_arn == null ? [] : [1]
    content {
      sid       = "EcrToken"
      actions   = ["ecr:GetAuthorizationToken"]
      resources = ["*"] # the action has no resource-level permissions
    }
  }

  dynamic "statement" {
    for_each = var.ecr_repository_arn == null ? [] : [var.ecr_repository_arn]
    content {
      sid       = "PullImage"
      actions   = ["ecr:BatchCheckLayerAvailability", "ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer"]
      resources = [statement.value]
    }
  }

  statement {
    sid       = "WriteTaskLogs"
    actions   = ["logs:CreateLogStream", "logs:PutLogEvents"]
    resources = [for g in aws_cloudwatch_log_group.process : "${g.arn}:*"]
  }

  statement {
    sid       = "ReadInjectedSecrets"
    actions   = ["secretsmanager:GetSecretValue"]
    resources = local.secret_arns
  }

  statement {
    sid       = "DecryptSecrets"
    actions   = ["kms:Decrypt"]
    resources = [var.kms_key_arn]
  }
}

resource "aws_iam_role_policy" "execution" {
  name   = "pull-log-secrets"
  role   = aws_iam_role.execution.id
  policy = data.aws_iam_policy_document.execution.json
}

# --- IAM: task roles (what the process itself may do) --------------------------------------
# api: send to its queues and read their backlog (admission); worker: consume high and
# normal; writer: consume ingest; migrate: no AWS API at all (it only talks to Postgres).

locals {
  consume_actions = [
    "sqs:ReceiveMessage",
    "sqs:DeleteMessage",
    "sqs:ChangeMessageVisibility",
    "sqs:GetQueueAttributes",
    "sqs:GetQueueUrl",
  ]

  queue_permissions = {
    api = {
      actions = ["sqs:SendMessage", "sqs:GetQueueAttributes", "sqs:GetQueueUrl"]
      queues  = ["high", "normal", "ingest"]
      kms     = ["kms:GenerateDataKey", "kms:Decrypt"]
    }
    worker = {
      actions = local.consume_actions
      queues  = ["high", "normal"]
      kms     = ["kms:Decrypt"]
    }
    writer = {
      actions = local.consume_actions
      queues  = ["ingest"]
      kms     = ["kms:Decrypt"]
    }
  }
}

resource "aws_iam_role" "task" {
  for_each = local.services

  name               = "${var.name}-${each.key}-task"
  assume_role_policy = data.aws_iam_policy_document.ecs_tasks_assume.json
  tags               = var.tags
}

data "aws_iam_policy_document" "task" {
  for_each = local.services

  statement {
    sid       = "Queues"
    actions   = local.queue_permissions[each.key].actions
    resources = [for q in local.queue_permissions[each.key].queues : var.queue_arns[q]]
  }

  statement {
    sid       = "QueueEncryption"
    actions   = local.queue_permissions[each.key].kms
    resources = [var.kms_key_arn]
  }

  dynamic "statement" {
    for_each = var.enable_metrics_collector ? [1] : []
    content {
      sid       = "CollectorWritesMetrics"
      actions   = ["logs:CreateLogStream", "logs:PutLogEvents", "logs:DescribeLogStreams"]
      resources = ["${aws_cloudwatch_log_group.metrics.arn}:*"]
    }
  }
}

resource "aws_iam_role_policy" "task" {
  for_each = local.services

  name   = "${each.key}-least-privilege"
  role   = aws_iam_role.task[each.key].id
  policy = data.aws_iam_policy_document.task[each.key].json
}

resource "aws_iam_role" "migrate" {
  name               = "${var.name}-migrate-task"
  assume_role_policy = data.aws_iam_policy_document.ecs_tasks_assume.json
  tags               = var.tags
}

# --- task definitions ------------------------------------------------------------------------

resource "aws_ecs_task_definition" "this" {
  for_each = local.processes

  family                   = "${var.name}-${each.key}"
  requires_compatibilities = ["FARGATE"]
  network_mode             = "awsvpc"
  cpu                      = tostring(var.services[each.key].cpu)
  memory                   = tostring(var.services[each.key].memory)
  execution_role_arn       = aws_iam_role.execution.arn
  task_role_arn            = each.key == "migrate" ? aws_iam_role.migrate.arn : aws_iam_role.task[each.key].arn

  runtime_platform {
    operating_system_family = "LINUX"
    cpu_architecture        = var.cpu_architecture
  }

  # The root filesystem is read-only; /tmp is task storage.
  volume {
    name = "tmp"
  }

  container_definitions = jsonencode(concat(
    [{
      name                   = each.key
      image                  = var.image
      command                = each.value.command
      essential              = true
      readonlyRootFilesystem = true
      stopTimeout            = var.stop_timeout_s
      linuxParameters        = { initProcessEnabled = true }
      mountPoints            = [{ sourceVolume = "tmp", containerPath = "/tmp", readOnly = false }]
      portMappings           = each.key == "api" ? [{ containerPort = var.settings.http_port, protocol = "tcp" }] : []

      environment = [
        for k in sort(keys(local.environment[each.key])) : { name = k, value = local.environment[each.key][k] }
      ]
      secrets = [
        for k in sort(keys(local.secrets[each.key])) : { name = k, valueFrom = local.secrets[each.key][k] }
        if local.secrets[each.key][k] != null
      ]

      healthCheck = local.health_urls[each.key] == null ? null : {
        command = [
          "CMD", "python", "-c",
          "import sys, urllib.request; sys.exit(urllib.request.urlopen('${local.health_urls[each.key]}', timeout=3).status != 200)",
        ]
        interval    = 15
        timeout     = 5
        retries     = 3
        startPeriod = 30
      }

      logConfiguration = {
        logDriver = "awslogs"
        options = {
          awslogs-group         = aws_cloudwatch_log_group.process[each.key].name
          awslogs-region        = local.region
          awslogs-stream-prefix = each.key
          mode                  = "non-blocking"
          max-buffer-size       = "4m"
        }
      }
    }],
    var.enable_metrics_collector && each.key != "migrate" ? [{
      name                   = "otel-collector"
      image                  = var.collector_image
      essential              = false
      readonlyRootFilesystem = true
      environment            = [{ name = "AOT_CONFIG_CONTENT", value = local.collector_config[each.key] }]
      logConfiguration = {
        logDriver = "awslogs"
        options = {
          awslogs-group         = aws_cloudwatch_log_group.process[each.key].name
          awslogs-region        = local.region
          awslogs-stream-prefix = "otel"
          mode                  = "non-blocking"
        }
      }
    }] : []
  ))

  tags = var.tags

  lifecycle {
    precondition {
      condition     = var.stop_timeout_s > var.settings.shutdown_timeout_s
      error_message = "stop_timeout_s must exceed settings.shutdown_timeout_s, or ECS kills a worker before it has drained."
    }
  }
}

# --- services --------------------------------------------------------------------------------

resource "aws_security_group" "api" {
  name = "${var.name}-api"
  #checkov:skip=CKV2_AWS_5:attached to the api service through local.security_groups
  description = "api tasks: HTTP from the internal ALB only"
  vpc_id      = var.vpc_id
  tags        = var.tags
}

resource "aws_vpc_security_group_ingress_rule" "api_from_alb" {
  security_group_id            = aws_security_group.api.id
  description                  = "HTTP from the internal ALB"
  ip_protocol                  = "tcp"
  from_port                    = var.settings.http_port
  to_port                      = var.settings.http_port
  referenced_security_group_id = var.alb_security_group_id
}

resource "aws_ecs_service" "this" {
  for_each = local.services

  name                    = "${var.name}-${each.key}"
  cluster                 = aws_ecs_cluster.this.id
  task_definition         = aws_ecs_task_definition.this[each.key].arn
  desired_count           = var.services[each.key].desired_count
  platform_version        = "LATEST"
  propagate_tags          = "SERVICE"
  enable_ecs_managed_tags = true

  deployment_minimum_healthy_percent = 100
  deployment_maximum_percent         = 200

  deployment_circuit_breaker {
    enable   = true
    rollback = true
  }

  # api: always regular Fargate. worker and writer: on_demand_base tasks on Fargate, the
  # rest on Fargate Spot (a reclaimed task gets SIGTERM and drains like a scale-in).
  dynamic "capacity_provider_strategy" {
    for_each = each.key != "api" && var.use_fargate_spot ? {
      FARGATE      = { base = var.on_demand_base, weight = 1 }
      FARGATE_SPOT = { base = 0, weight = 3 }
    } : { FARGATE = { base = 0, weight = 1 } }
    content {
      capacity_provider = capacity_provider_strategy.key
      base              = capacity_provider_strategy.value.base
      weight            = capacity_provider_strategy.value.weight
    }
  }

  network_configuration {
    subnets          = var.subnet_ids
    security_groups  = local.security_groups[each.key]
    assign_public_ip = false
  }

  dynamic "load_balancer" {
    for_each = each.key == "api" ? [1] : []
    content {
      target_group_arn = var.api_target_group_arn
      container_name   = "api"
      container_port   = var.settings.http_port
    }
  }

  health_check_grace_period_seconds = each.key == "api" ? 60 : null

  tags = var.tags

  # Autoscaling owns the task count after creation.
  lifecycle {
    ignore_changes = [desired_count]
  }

  depends_on = [aws_ecs_cluster_capacity_providers.this]
}
