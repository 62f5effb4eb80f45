# ECS on Fargate: one cluster (Container Insights on: the autoscaling metric math reads its
# RunningTaskCount), one image, a task definition per process (api, worker, writer and the
# one-off migrate), services for the first three, least-privilege task roles, secrets
# injected from Secrets Manager, and an optional ADOT collector sidecar for /metrics.

data "aws_region" "current" {}
data "aws_caller_identity" "current" {}
data "aws_partition" "current" {}

locals {
  region     = data.aws_region.current.name
  account_id = data.aws_caller_identity.current.account_id
  partition  = data.aws_partition.current.partition

  # The image's ENTRYPOINT is ["queuefront"]: the command is the role alone
  # (pyproject.toml's queuefront.roles; tests/terraform/test_entrypoints.py checks both). The admin
  # task's command is replaced at run-task (admin_run_task_commands); its default only
  # prints the usage.
  processes = {
    api     = { command = ["api"], size = "api" }
    worker  = { command = ["worker"], size = "worker" }
    writer  = { command = ["writer"], size = "writer" }
    migrate = { command = ["migrate"], size = "migrate" }
    admin   = { command = ["admin", "--help"], size = "migrate" }
  }

  # Long-running processes get an ECS service; migrate and admin are run with
  # `aws ecs run-task` (the migrate_run_task_command and admin_run_task_commands outputs).
  services = { for k, v in local.processes : k => v if !contains(["migrate", "admin"], k) }

  # Deployment overlap: the worker's maximum percent bounds the calls the legacy backend
  # gets during a deploy (the autoscaling module's precondition uses the same number).
  deployment = {
    api    = { minimum_healthy_percent = 100, maximum_percent = 200 }
    worker = { minimum_healthy_percent = var.worker_deployment_minimum_healthy_percent, maximum_percent = var.worker_deployment_maximum_percent }
    writer = { minimum_healthy_percent = 100, maximum_percent = 200 }
  }

  # The user of the image (Dockerfile: USER 10001): said again so that no task can run as
  # root whatever the image's metadata.
  container_user = "10001:10001"

  # --- QF_* settings per process -------------------------------------------------------------
  # Every name here is a field of queuefront.settings.Settings (tests/terraform checks it).
  # Values are strings: ECS passes environment variables as strings.
  common_environment = {
    QF_AWS_REGION       = local.region
    QF_SQS_ENDPOINT_URL = "" # empty: real AWS
    QF_DLQ_SUFFIX       = var.dlq_suffix
    QF_ROUTES_FILE      = var.settings.routes_file
    QF_LOG_LEVEL        = var.settings.log_level
    QF_LOG_FORMAT       = "json"
  }

  # What the long-running processes share: the probe port (/healthz, /readyz, /metrics; the
  # collector scrapes it), the Redis pool and the SQS message limit the queues are made with.
  service_environment = merge(local.common_environment, {
    QF_METRICS_PORT          = tostring(var.settings.metrics_port)
    QF_REDIS_MAX_CONNECTIONS = tostring(var.settings.redis_max_connections)
    QF_MAX_MESSAGE_BYTES     = tostring(var.settings.max_message_bytes)
  })

  environment = {
    api = merge(local.service_environment, {
      QF_QUEUE_HIGH                = var.queue_names["high"]
      QF_QUEUE_NORMAL              = var.queue_names["normal"]
      QF_QUEUE_INGEST              = var.queue_names["ingest"]
      QF_HTTP_PORT                 = tostring(var.settings.http_port)
      QF_ADMISSION_THRESHOLD       = tostring(var.settings.admission_threshold)
      QF_ADMISSION_WAIT_S          = tostring(var.settings.admission_wait_s)
      QF_BACKLOG_POLL_S            = tostring(var.settings.backlog_poll_s)
      QF_REPLY_TTL_S               = tostring(var.settings.reply_ttl_s)
      QF_RATE_LIMIT_RPS            = tostring(var.settings.rate_limit_rps)
      QF_RATE_LIMIT_BURST          = tostring(var.settings.rate_limit_burst)
      QF_AUTH_JWT_AUDIENCE         = var.settings.auth_jwt_audience
      QF_AUTH_JWT_INVALIDATE_SCOPE = var.settings.auth_jwt_invalidate_scope
      QF_AUTH_DISABLED             = tostring(var.auth_disabled)
      # set by CloudFront (a function replaces any client value); only CloudFront reaches
      # the origin, so it is the one address the api may trust
      QF_CLIENT_IP_HEADER = var.client_ip_header
      # one api process per vCPU of the task (a fractional task: one). Said here rather
      # than counted inside: Fargate may show a task more CPUs than its size.
      QF_API_PROCESSES = tostring(max(1, floor(var.services["api"].cpu / 1024)))
      # the pods' scaling signal: EMF lines on stdout, which the awslogs driver below
      # ships to CloudWatch Logs and CloudWatch turns into the metrics the fast scaling
      # alarms read (service/scaling_signal.py, modules/autoscaling)
      QF_SCALING_SIGNAL_INTERVAL_S = tostring(var.scaling_signal.interval_s)
      QF_SCALING_SIGNAL_NAMESPACE  = var.scaling_signal.namespace
      QF_SCALING_SIGNAL_DIMENSIONS = join(",", [for k in sort(keys(var.scaling_signal.dimensions)) : "${k}=${var.scaling_signal.dimensions[k]}"])
    })
    worker = merge(local.service_environment, {
      QF_QUEUE_HIGH           = var.queue_names["high"]
      QF_QUEUE_NORMAL         = var.queue_names["normal"]
      QF_MAX_RECEIVE_COUNT    = tostring(var.max_receive_count)
      QF_VISIBILITY_TIMEOUT_S = tostring(var.visibility_timeout_s.worker)
      QF_BACKEND_URL          = var.backend_url
      QF_WORKER_CONCURRENCY   = tostring(var.settings.worker_concurrency)
      # one limit for the whole fleet, deploys' overlap included: a task's slots wait for
      # a lease in Redis, so the backend never gets more than it can take
      QF_BACKEND_MAX_CONCURRENCY = tostring(var.backend_max_concurrency)
      QF_REPLY_TTL_S             = tostring(var.settings.reply_ttl_s)
      QF_SHUTDOWN_TIMEOUT_S      = tostring(var.settings.shutdown_timeout_s)
    })
    writer = merge(local.service_environment, {
      QF_QUEUE_INGEST         = var.queue_names["ingest"]
      QF_MAX_RECEIVE_COUNT    = tostring(var.max_receive_count)
      QF_VISIBILITY_TIMEOUT_S = tostring(var.visibility_timeout_s.writer)
      QF_BATCH_SIZE           = tostring(var.settings.batch_size)
      QF_BATCH_MAX_WAIT_S     = tostring(var.settings.batch_max_wait_s)
      QF_SHUTDOWN_TIMEOUT_S   = tostring(var.settings.shutdown_timeout_s)
    })
    migrate = local.common_environment
    # redrive (any queue back from its DLQ) and reconcile (tallies from Postgres)
    admin = merge(local.common_environment, {
      QF_QUEUE_HIGH        = var.queue_names["high"]
      QF_QUEUE_NORMAL      = var.queue_names["normal"]
      QF_QUEUE_INGEST      = var.queue_names["ingest"]
      QF_MAX_MESSAGE_BYTES = tostring(var.settings.max_message_bytes)
    })
  }

  # Secrets Manager ARNs injected by ECS (`secrets` in the container definition); a null
  # ARN leaves the variable out.
  secrets = {
    api = {
      QF_REDIS_URL            = var.redis_url_secret_arn
      QF_AUTH_API_KEYS        = var.auth_api_keys_secret_arn
      QF_AUTH_JWT_SECRET      = var.auth_jwt_secret_arn
      QF_AUTH_INVALIDATE_KEYS = var.auth_invalidate_keys_secret_arn
    }
    worker = {
      QF_REDIS_URL = var.redis_url_secret_arn
    }
    writer = {
      QF_REDIS_URL    = var.redis_url_secret_arn
      QF_DATABASE_URL = var.database_url_secret_arn
      PGPASSWORD      = local.database_password
    }
    migrate = {
      QF_DATABASE_URL = var.database_url_secret_arn
      PGPASSWORD      = local.database_password
    }
    admin = {
      QF_REDIS_URL    = var.redis_url_secret_arn
      QF_DATABASE_URL = var.database_url_secret_arn
      PGPASSWORD      = local.database_password
    }
  }

  # The RDS-managed master secret is JSON {username, password}: ECS injects its password key
  # (<arn>:<json key>:<stage>:<version>) as PGPASSWORD, which asyncpg reads when
  # QF_DATABASE_URL carries no password. Read at task start: after a rotation the writer
  # exits on a refused connection and its next task reads the new value.
  database_password = "${var.database_password_secret_arn}:password::"

  # IAM names the secrets themselves (a JSON key's reference is not a resource).
  secret_arns = distinct(compact([
    for ref in flatten([for p in values(local.secrets) : values(p)]) :
    ref == null ? null : trimsuffix(ref, ":password::")
  ]))

  security_groups = {
    api     = [var.tasks_security_group_id, aws_security_group.api.id]
    worker  = [var.tasks_security_group_id, aws_security_group.worker.id]
    writer  = [var.tasks_security_group_id, var.db_clients_security_group_id]
    migrate = [var.tasks_security_group_id, var.db_clients_security_group_id]
    admin   = [var.tasks_security_group_id, var.db_clients_security_group_id]
  }

  # Liveness of every long-running process: `queuefront healthcheck` asks /healthz on the
  # api's public port or the probe port (queuefront.ports.probe_ports), with the image's own
  # Python, so the check is the same as the image's HEALTHCHECK.
  health_check_command = ["CMD", "queuefront", "healthcheck"]

  metrics_log_group = "/ecs/${var.name}/metrics"

  # The queuefront metrics that dashboards and alarms read, and the dimensions each is
  # published with. `process` is a scrape label (api, worker, writer) that every series
  # carries; rolling the other labels up (route, queue, table) keeps one CloudWatch series
  # per process and outcome, whatever the number of routes or tasks.
  metric_declarations = [
    { dimensions = [["process"], ["process", "status"]], metric_name_selectors = ["^queuefront_http_requests_total$"] },
    { dimensions = [["process", "outcome"]], metric_name_selectors = ["^queuefront_replies_total$"] },
    # heartbeat of the api (the metrics-missing alarm) and every process's clock offset
    { dimensions = [["process"]], metric_name_selectors = ["^queuefront_pending_replies$", "^queuefront_clock_offset_seconds$"] },
    { dimensions = [["process"]], metric_name_selectors = ["^queuefront_admission_rejections_total$", "^queuefront_rate_limited_total$", "^queuefront_http_request_duration_seconds$", "^queuefront_ingest_lag_seconds$", "^queuefront_ingest_accepted_total$", "^queuefront_ingest_rows_inserted_total$", "^queuefront_expired_messages_total$", "^queuefront_writer_db_retries_total$"] },
    { dimensions = [["process", "queue"]], metric_name_selectors = ["^queuefront_dlq_messages$", "^queuefront_message_age_seconds$"] },
    { dimensions = [["process", "outcome"]], metric_name_selectors = ["^queuefront_worker_messages_total$"] },
  ]

  # ADOT collector: scrape the process's probe port on localhost every 30 s, keep
  # queuefront_* series only (bounded CloudWatch cost), write them as embedded-metric-format
  # logs with the dimensions above (counters arrive as per-interval deltas).
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
              static_configs  = [{ targets = ["127.0.0.1:${var.settings.metrics_port}"], labels = { process = k } }]
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
          metric_declarations              = local.metric_declarations
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

# --- IAM --------------------------------------------------------------------------------------
# The documents are rendered with jsonencode, not aws_iam_policy_document: what a role may do
# is then a planned value that `terraform test` sees (a mocked data source would hide it).

locals {
  ecs_tasks_assume_policy = jsonencode({
    Version = "2012-10-17"
    Statement = [{
      Effect    = "Allow"
      Action    = "sts:AssumeRole"
      Principal = { Service = "ecs-tasks.amazonaws.com" }
      Condition = { StringEquals = { "aws:SourceAccount" = local.account_id } }
    }]
  })

  execution_policy = jsonencode({
    Version = "2012-10-17"
    Statement = concat(
      [
        for statement in [
          {
            Sid      = "EcrToken"
            Effect   = "Allow"
            Action   = ["ecr:GetAuthorizationToken"]
            Resource = ["*"] # the action has no resource-level permissions
          },
          {
            Sid      = "PullImage"
            Effect   = "Allow"
            Action   = ["ecr:BatchCheckLayerAvailability", "ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer"]
            Resource = [var.ecr_repository_arn]
          },
        ] : statement if var.ecr_repository_arn != null
      ],
      [
        {
          Sid      = "WriteTaskLogs"
          Effect   = "Allow"
          Action   = ["logs:CreateLogStream", "logs:PutLogEvents"]
          Resource = [for g in aws_cloudwatch_log_group.process : "${g.arn}:*"]
        },
        {
          Sid      = "ReadInjectedSecrets"
          Effect   = "Allow"
          Action   = ["secretsmanager:GetSecretValue"]
          Resource = local.secret_arns
        },
        {
          Sid      = "DecryptSecrets"
          Effect   = "Allow"
          Action   = ["kms:Decrypt"]
          Resource = [var.kms_key_arn]
        },
      ],
    )
  })

  # --- what each process does with SQS ----------------------------------------------------
  # The queues each process opens (tests/terraform/test_queue_access.py runs the code's
  # start-up against a recording client and compares): the api sends to its three queues
  # and reads their backlog (admission); the worker and the writer consume theirs and read
  # their DLQs' depth (queuefront_dlq_messages); admin redrives any DLQ back to its queue;
  # migrate talks to Postgres only.
  sqs_actions = {
    send     = ["sqs:SendMessage", "sqs:GetQueueAttributes", "sqs:GetQueueUrl"]
    consume  = ["sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:ChangeMessageVisibility", "sqs:GetQueueAttributes", "sqs:GetQueueUrl"]
    depth    = ["sqs:GetQueueAttributes", "sqs:GetQueueUrl"]
    redrive  = ["sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:ChangeMessageVisibility", "sqs:GetQueueAttributes", "sqs:GetQueueUrl"]
    send_url = ["sqs:SendMessage", "sqs:GetQueueUrl"]
    # the writer's depth reading plus refusing a message (API Gateway's direct votes that
    # do not fit their sink) to its DLQ with the reason (workers/writer/direct.py)
    depth_refuse = ["sqs:GetQueueAttributes", "sqs:GetQueueUrl", "sqs:SendMessage"]
  }

  queue_access = {
    api     = { queues = { send = ["high", "normal", "ingest"] }, dlqs = {} }
    worker  = { queues = { consume = ["high", "normal"] }, dlqs = { depth = ["high", "normal"] } }
    writer  = { queues = { consume = ["ingest"] }, dlqs = { depth_refuse = ["ingest"] } }
    migrate = { queues = {}, dlqs = {} }
    admin   = { queues = { send_url = ["high", "normal", "ingest"] }, dlqs = { redrive = ["high", "normal", "ingest"] } }
  }

  # SSE-KMS queues: a sender needs a data key, a receiver decrypts.
  queue_kms_actions = {
    api     = ["kms:GenerateDataKey", "kms:Decrypt"]
    worker  = ["kms:Decrypt"]
    writer  = ["kms:GenerateDataKey", "kms:Decrypt"]
    migrate = []
    admin   = ["kms:GenerateDataKey", "kms:Decrypt"]
  }

  task_policy_statements = {
    for p, access in local.queue_access : p => concat(
      [for use, keys in access.queues : {
        Sid      = "Queues${title(replace(use, "_", ""))}"
        Effect   = "Allow"
        Action   = local.sqs_actions[use]
        Resource = [for k in keys : var.queue_arns[k]]
      }],
      [for use, keys in access.dlqs : {
        Sid      = "DeadLetterQueues${title(replace(use, "_", ""))}"
        Effect   = "Allow"
        Action   = local.sqs_actions[use]
        Resource = [for k in keys : var.dlq_arns[k]]
      }],
      [
        for statement in [{
          Sid      = "QueueEncryption"
          Effect   = "Allow"
          Action   = local.queue_kms_actions[p]
          Resource = [var.kms_key_arn]
        }] : statement if length(local.queue_kms_actions[p]) > 0
      ],
      [
        for statement in [{
          Sid      = "CollectorWritesMetrics"
          Effect   = "Allow"
          Action   = ["logs:CreateLogStream", "logs:PutLogEvents", "logs:DescribeLogStreams"]
          Resource = ["${aws_cloudwatch_log_group.metrics.arn}:*"]
        }] : statement if var.enable_metrics_collector && contains(keys(local.services), p)
      ],
    )
  }

  # Rendered per process; a process with nothing to do on AWS (migrate) gets no policy.
  task_policies = {
    for p, statements in local.task_policy_statements : p => jsonencode({
      Version   = "2012-10-17"
      Statement = statements
    }) if length(statements) > 0
  }
}

resource "aws_iam_role" "execution" {
  name               = "${var.name}-ecs-execution"
  assume_role_policy = local.ecs_tasks_assume_policy
  tags               = var.tags
}

resource "aws_iam_role_policy" "execution" {
  name   = "pull-log-secrets"
  role   = aws_iam_role.execution.id
  policy = local.execution_policy
}

resource "aws_iam_role" "task" {
  for_each = local.processes

  name               = "${var.name}-${each.key}-task"
  assume_role_policy = local.ecs_tasks_assume_policy
  tags               = var.tags
}

resource "aws_iam_role_policy" "task" {
  for_each = local.task_policies

  name   = "${each.key}-least-privilege"
  role   = aws_iam_role.task[each.key].id
  policy = each.value
}

# --- task definitions ------------------------------------------------------------------------

resource "aws_ecs_task_definition" "this" {
  for_each = local.processes

  family                   = "${var.name}-${each.key}"
  requires_compatibilities = ["FARGATE"]
  network_mode             = "awsvpc"
  cpu                      = tostring(var.services[each.value.size].cpu)
  memory                   = tostring(var.services[each.value.size].memory)
  execution_role_arn       = aws_iam_role.execution.arn
  task_role_arn            = aws_iam_role.task[each.key].arn

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
      user                   = local.container_user
      essential              = true
      readonlyRootFilesystem = true
      stopTimeout            = var.stop_timeout_s
      linuxParameters        = { initProcessEnabled = true }
      mountPoints            = [{ sourceVolume = "tmp", containerPath = "/tmp", readOnly = false }]
      # Only the api's public port is mapped (the ALB's target); the probe port is reached
      # from inside the task (health check, collector) and nothing admits it from outside.
      portMappings = each.key == "api" ? [{ containerPort = var.settings.http_port, protocol = "tcp" }] : []

      environment = [
        for k in sort(keys(local.environment[each.key])) : { name = k, value = local.environment[each.key][k] }
      ]
      secrets = [
        for k in sort(keys(local.secrets[each.key])) : { name = k, valueFrom = local.secrets[each.key][k] }
        if local.secrets[each.key][k] != null
      ]

      healthCheck = contains(keys(local.services), each.key) ? {
        command     = local.health_check_command
        interval    = 15
        timeout     = 5
        retries     = 3
        startPeriod = 30
      } : null

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
    var.enable_metrics_collector && contains(keys(local.services), each.key) ? [{
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

# --- security groups ---------------------------------------------------------------------------

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

# ... and its health check, the probe port (/healthz).
resource "aws_vpc_security_group_ingress_rule" "api_probe_from_alb" {
  security_group_id            = aws_security_group.api.id
  description                  = "health checks from the internal ALB"
  ip_protocol                  = "tcp"
  from_port                    = var.settings.metrics_port
  to_port                      = var.settings.metrics_port
  referenced_security_group_id = var.alb_security_group_id
}

# The ALB may reach the api tasks' public port and probe port, and nothing else.
resource "aws_vpc_security_group_egress_rule" "alb_to_api_probe" {
  security_group_id            = var.alb_security_group_id
  description                  = "to the api tasks' probe port (health checks)"
  ip_protocol                  = "tcp"
  from_port                    = var.settings.metrics_port
  to_port                      = var.settings.metrics_port
  referenced_security_group_id = aws_security_group.api.id
}

resource "aws_vpc_security_group_egress_rule" "alb_to_api" {
  security_group_id            = var.alb_security_group_id
  description                  = "to the api tasks' public port"
  ip_protocol                  = "tcp"
  from_port                    = var.settings.http_port
  to_port                      = var.settings.http_port
  referenced_security_group_id = aws_security_group.api.id
}

resource "aws_security_group" "worker" {
  name = "${var.name}-worker"
  #checkov:skip=CKV2_AWS_5:attached to the worker service through local.security_groups
  description = "worker tasks: to the legacy backend"
  vpc_id      = var.vpc_id
  tags        = var.tags
}

# Only the worker calls the legacy backend (QF_BACKEND_URL), on its port.
resource "aws_vpc_security_group_egress_rule" "worker_to_backend" {
  for_each = toset(var.backend_cidr_blocks)

  security_group_id = aws_security_group.worker.id
  description       = "to the legacy backend"
  ip_protocol       = "tcp"
  from_port         = local.backend_port
  to_port           = local.backend_port
  cidr_ipv4         = each.value
}

locals {
  # https://host[:port]/... -> port (443 / 80 by default)
  backend_url_parts = regex("^(https?)://[^/:]+(?::([0-9]+))?", var.backend_url)
  backend_port      = local.backend_url_parts[1] != null ? tonumber(local.backend_url_parts[1]) : (local.backend_url_parts[0] == "https" ? 443 : 80)
}

# --- services --------------------------------------------------------------------------------

# What the services' first tasks need and other modules make: the listener and its forward
# rule (ECS refuses a target group no listener rule uses), the private routes and VPC
# endpoints (image pull, secrets, logs), the data stores' security group rules. The secret
# *values* come in through the secret ARN variables, which the cache and database modules
# take from the secret versions. A first apply that started services earlier would launch
# tasks that cannot start; three failures trip the circuit breaker and the apply fails
# (tests/terraform/test_graph.py checks the order on `terraform graph`).
resource "terraform_data" "prerequisites" {
  input = merge(var.service_prerequisites, { listener = [var.api_listener_arn] })
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

  deployment_minimum_healthy_percent = local.deployment[each.key].minimum_healthy_percent
  deployment_maximum_percent         = local.deployment[each.key].maximum_percent

  # A deployment whose tasks do not become healthy is rolled back, and (wait_for_steady_state)
  # `terraform apply` waits for the tasks to run and fails instead of reporting success over
  # a crash loop. The observability module also alarms on failed deployments.
  deployment_circuit_breaker {
    enable   = true
    rollback = true
  }
  wait_for_steady_state = var.wait_for_steady_state

  # An image that starts but serves errors passes the circuit breaker (its tasks run);
  # these alarms roll it back (api: 5xx rate, unhealthy targets; worker, writer: their
  # DLQs growing). ECS watches them during the deployment and its bake time.
  alarms {
    alarm_names = [for k in local.deployment_alarm_keys[each.key] : aws_cloudwatch_metric_alarm.deployment[k].alarm_name]
    enable      = true
    rollback    = true
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

  # ... and what this module makes that the task definitions do not reference: the roles'
  # policies (pull, logs, secrets; queues), the collector's log group, the security group
  # rules that let the ALB reach the api and the worker reach the backend.
  depends_on = [
    aws_ecs_cluster_capacity_providers.this,
    terraform_data.prerequisites,
    aws_iam_role_policy.execution,
    aws_iam_role_policy.task,
    aws_cloudwatch_log_group.metrics,
    aws_vpc_security_group_ingress_rule.api_from_alb,
    aws_vpc_security_group_ingress_rule.api_probe_from_alb,
    aws_vpc_security_group_egress_rule.alb_to_api,
    aws_vpc_security_group_egress_rule.alb_to_api_probe,
    aws_vpc_security_group_egress_rule.worker_to_backend,
  ]
}

# --- a rolled-back deployment fails the apply ---------------------------------------------------
# wait_for_steady_state waits for *a* steady state: after the circuit breaker (or a
# deployment alarm) rolled the deployment back, the service is steady on the previous task
# definition and the AWS provider reports success (hashicorp/terraform-provider-aws#19519,
# #20858). Read back after the apply, a service that does not run the task definition this
# apply registered fails it.

data "aws_ecs_service" "deployed" {
  for_each = var.wait_for_steady_state ? local.services : {}

  cluster_arn  = aws_ecs_cluster.this.arn
  service_name = aws_ecs_service.this[each.key].name

  depends_on = [aws_ecs_service.this]

  lifecycle {
    postcondition {
      condition = contains([
        aws_ecs_task_definition.this[each.key].arn,
        "${aws_ecs_task_definition.this[each.key].family}:${aws_ecs_task_definition.this[each.key].revision}",
      ], self.task_definition)
      error_message = "The ${each.key} service runs ${self.task_definition}, not the task definition this apply registered: its deployment was rolled back (circuit breaker or deployment alarm). See the service's events and docs/runbooks/deployment-failed.md."
    }
  }
}

# --- deployment alarms --------------------------------------------------------------------------

locals {
  deployment_alarm_keys = {
    api    = ["api-errors", "api-unhealthy"]
    worker = ["worker-dlq"]
    writer = ["writer-dlq"]
  }

  alb_dimensions = { LoadBalancer = var.alb_arn_suffix, TargetGroup = var.target_group_arn_suffix }

  # Each alarm: metric queries (id => metric) and the expression that is compared.
  deployment_alarms = {
    # errors the api is never meant to answer: its own 500s (a bug: dependencies that are
    # slow or down give 503/504 by design, which must not roll a deploy back during an
    # overload) and the ALB's own 5xx (502: a task that resets connections)
    api-errors = {
      description = "More than ${var.deployment_error_threshold_percent}% of the api's answers are 500s or ALB 5xx (a bad image)"
      threshold   = var.deployment_error_threshold_percent
      expression  = "IF(FILL(requests, 0) > 0, 100 * (FILL(app500, 0) + FILL(elb5xx, 0)) / requests, 0)"
      metrics = {
        app500   = { namespace = var.metrics_namespace, name = "queuefront_http_requests_total", dimensions = { process = "api", status = "500" }, stat = "Sum" }
        elb5xx   = { namespace = "AWS/ApplicationELB", name = "HTTPCode_ELB_5XX_Count", dimensions = local.alb_dimensions, stat = "Sum" }
        requests = { namespace = "AWS/ApplicationELB", name = "RequestCount", dimensions = local.alb_dimensions, stat = "Sum" }
      }
    }
    api-unhealthy = {
      description = "api targets fail the ALB's liveness check (/healthz)"
      threshold   = 0
      expression  = "FILL(unhealthy, 0)"
      metrics = {
        unhealthy = { namespace = "AWS/ApplicationELB", name = "UnHealthyHostCount", dimensions = local.alb_dimensions, stat = "Maximum" }
      }
    }
    worker-dlq = {
      description = "Messages are reaching the high or normal DLQ"
      threshold   = 0
      expression  = "FILL(DIFF(high), 0) + FILL(DIFF(normal), 0)"
      metrics = {
        high   = { namespace = "AWS/SQS", name = "ApproximateNumberOfMessagesVisible", dimensions = { QueueName = var.dlq_names["high"] }, stat = "Maximum" }
        normal = { namespace = "AWS/SQS", name = "ApproximateNumberOfMessagesVisible", dimensions = { QueueName = var.dlq_names["normal"] }, stat = "Maximum" }
      }
    }
    writer-dlq = {
      description = "Messages are reaching the ingest DLQ"
      threshold   = 0
      expression  = "FILL(DIFF(ingest), 0)"
      metrics = {
        ingest = { namespace = "AWS/SQS", name = "ApproximateNumberOfMessagesVisible", dimensions = { QueueName = var.dlq_names["ingest"] }, stat = "Maximum" }
      }
    }
  }
}

resource "aws_cloudwatch_metric_alarm" "deployment" {
  for_each = local.deployment_alarms

  alarm_name          = "${var.name}-deploy-${each.key}"
  alarm_description   = "${each.value.description}: a deployment in progress is rolled back. Runbook: ${var.runbook_base_url}/deployment-failed.md"
  comparison_operator = "GreaterThanThreshold"
  threshold           = each.value.threshold
  evaluation_periods  = 3
  datapoints_to_alarm = 2
  treat_missing_data  = "notBreaching"
  tags                = var.tags

  dynamic "metric_query" {
    for_each = each.value.metrics
    content {
      id          = metric_query.key
      return_data = false

      metric {
        namespace   = metric_query.value.namespace
        metric_name = metric_query.value.name
        dimensions  = metric_query.value.dimensions
        stat        = metric_query.value.stat
        period      = 60
      }
    }
  }

  metric_query {
    id          = "signal"
    label       = each.key
    expression  = each.value.expression
    return_data = true
  }
}
