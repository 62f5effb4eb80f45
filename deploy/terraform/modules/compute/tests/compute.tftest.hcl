# The compute module, planned with a mocked AWS provider: what the tasks would run (command,
# user, ports, environment, secrets, health check) and what each task role may do, read from
# the planned container definitions and the rendered IAM documents.

mock_provider "aws" {
  override_during = plan

  mock_data "aws_region" {
    defaults = { name = "eu-west-1" }
  }
  mock_data "aws_caller_identity" {
    defaults = { account_id = "123456789012" }
  }
  mock_data "aws_partition" {
    defaults = { partition = "aws" }
  }
  mock_resource "aws_cloudwatch_log_group" {
    defaults = { arn = "arn:aws:logs:eu-west-1:123456789012:log-group:mocked" }
  }
}

override_resource {
  target          = aws_security_group.api
  override_during = plan
  values          = { id = "sg-api" }
}

override_resource {
  target          = aws_security_group.worker
  override_during = plan
  values          = { id = "sg-worker" }
}

override_resource {
  target          = aws_ecs_task_definition.this["admin"]
  override_during = plan
  values          = { family = "qf-admin" }
}

override_resource {
  target          = aws_ecs_cluster.this
  override_during = plan
  values          = { name = "qf" }
}

variables {
  name                         = "qf"
  image                        = "123456789012.dkr.ecr.eu-west-1.amazonaws.com/queuefront:1.0.0"
  ecr_repository_arn           = "arn:aws:ecr:eu-west-1:123456789012:repository/queuefront"
  vpc_id                       = "vpc-1"
  subnet_ids                   = ["subnet-a", "subnet-b"]
  tasks_security_group_id      = "sg-tasks"
  db_clients_security_group_id = "sg-db-clients"
  alb_security_group_id        = "sg-alb"
  api_target_group_arn         = "arn:aws:elasticloadbalancing:eu-west-1:123456789012:targetgroup/qf-api/1"
  api_listener_arn             = "arn:aws:elasticloadbalancing:eu-west-1:123456789012:listener/app/qf-api/1/2"
  queue_names                  = { high = "qf-high", normal = "qf-normal", ingest = "qf-ingest" }
  queue_arns = {
    high   = "arn:aws:sqs:eu-west-1:123456789012:qf-high"
    normal = "arn:aws:sqs:eu-west-1:123456789012:qf-normal"
    ingest = "arn:aws:sqs:eu-west-1:123456789012:qf-ingest"
  }
  dlq_arns = {
    high   = "arn:aws:sqs:eu-west-1:123456789012:qf-high-dlq"
    normal = "arn:aws:sqs:eu-west-1:123456789012:qf-normal-dlq"
    ingest = "arn:aws:sqs:eu-west-1:123456789012:qf-ingest-dlq"
  }
  dlq_suffix              = "-dlq"
  dlq_names               = { high = "qf-high-dlq", normal = "qf-normal-dlq", ingest = "qf-ingest-dlq" }
  alb_arn_suffix          = "app/qf-api/1"
  target_group_arn_suffix = "targetgroup/qf-api/2"
  runbook_base_url        = "https://example.com/runbooks"
  # the root's values for worker_min_tasks = 4 (the smallest overlap that starts one task)
  worker_deployment_maximum_percent         = 125
  worker_deployment_minimum_healthy_percent = 100
  max_receive_count                         = 3
  visibility_timeout_s                      = { worker = 60, writer = 120 }
  redis_url_secret_arn                      = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:qf/redis/url-AAAAAA"
  database_url_secret_arn                   = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:qf/postgres/url-BBBBBB"
  # RDS-managed secrets are named rds!db-<uuid>
  database_password_secret_arn = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:rds!db-0000-CCCCCC"
  backend_url                  = "https://legacy.example.com:8443/base"
  backend_max_concurrency      = 400
  kms_key_arn                  = "arn:aws:kms:eu-west-1:123456789012:key/1111"
  settings = {
    http_port                 = 8080
    metrics_port              = 9100
    routes_file               = "/app/config/routes.toml"
    log_level                 = "INFO"
    redis_max_connections     = 64
    worker_concurrency        = 32
    batch_size                = 300
    batch_max_wait_s          = 1
    admission_threshold       = 100
    admission_wait_s          = 5
    backlog_poll_s            = 1
    reply_ttl_s               = 120
    shutdown_timeout_s        = 20
    rate_limit_rps            = 0
    rate_limit_burst          = 20
    auth_jwt_audience         = ""
    auth_jwt_invalidate_scope = "cache:invalidate"
    max_message_bytes         = 1048576
  }
  services = {
    api     = { cpu = 1024, memory = 2048, desired_count = 2 }
    worker  = { cpu = 1024, memory = 2048, desired_count = 2 }
    writer  = { cpu = 1024, memory = 2048, desired_count = 0 }
    migrate = { cpu = 512, memory = 1024, desired_count = 0 }
  }
}

run "containers_run_the_roles_of_the_image" {
  command = plan

  # ENTRYPOINT ["queuefront"] + command = `queuefront <role>` (pyproject.toml's queuefront.roles)
  assert {
    condition = alltrue([
      for p, cmd in { api = ["api"], worker = ["worker"], writer = ["writer"], migrate = ["migrate"] } :
      jsondecode(aws_ecs_task_definition.this[p].container_definitions)[0].command == cmd
    ])
    error_message = "each task's command must be its role alone (the image's ENTRYPOINT is queuefront)"
  }

  assert {
    condition     = jsondecode(aws_ecs_task_definition.this["admin"].container_definitions)[0].command[0] == "admin"
    error_message = "the admin task runs the admin role"
  }

  assert {
    condition     = alltrue([for p, td in aws_ecs_task_definition.this : jsondecode(td.container_definitions)[0].user == "10001:10001"])
    error_message = "every container runs as the image's non-root user 10001"
  }

  assert {
    condition     = alltrue([for p, td in aws_ecs_task_definition.this : jsondecode(td.container_definitions)[0].readonlyRootFilesystem])
    error_message = "root filesystems are read-only"
  }

  assert {
    condition = alltrue([
      for p in ["api", "worker", "writer"] :
      jsondecode(aws_ecs_task_definition.this[p].container_definitions)[0].healthCheck.command == ["CMD", "queuefront", "healthcheck"]
    ])
    error_message = "the services' health check is the image's `queuefront healthcheck`"
  }
}

run "only_the_api_publishes_a_port" {
  command = plan

  assert {
    condition     = jsondecode(aws_ecs_task_definition.this["api"].container_definitions)[0].portMappings == [{ containerPort = 8080, protocol = "tcp" }]
    error_message = "the api maps QF_HTTP_PORT and nothing else (the probe port stays inside the task)"
  }

  assert {
    condition     = alltrue([for p in ["worker", "writer", "migrate", "admin"] : length(jsondecode(aws_ecs_task_definition.this[p].container_definitions)[0].portMappings) == 0])
    error_message = "only the api maps a port"
  }

  assert {
    condition     = one(aws_ecs_service.this["api"].load_balancer).container_port == 8080 && one(aws_ecs_service.this["api"].load_balancer).container_name == "api"
    error_message = "the api service registers QF_HTTP_PORT of the api container"
  }
}

run "environment_and_secrets" {
  command = plan

  assert {
    condition = alltrue([
      for p in ["api", "worker", "writer"] :
      { for e in jsondecode(aws_ecs_task_definition.this[p].container_definitions)[0].environment : e.name => e.value }["QF_MAX_MESSAGE_BYTES"] == "1048576"
    ])
    error_message = "every service gets QF_MAX_MESSAGE_BYTES, the queues' MaximumMessageSize"
  }

  assert {
    condition = alltrue([
      for p in ["api", "worker", "writer"] :
      { for e in jsondecode(aws_ecs_task_definition.this[p].container_definitions)[0].environment : e.name => e.value }["QF_METRICS_PORT"] == "9100"
    ])
    error_message = "every service gets its probe port (the collector scrapes it)"
  }

  assert {
    condition     = { for e in jsondecode(aws_ecs_task_definition.this["api"].container_definitions)[0].environment : e.name => e.value }["QF_HTTP_PORT"] == "8080"
    error_message = "the api listens on QF_HTTP_PORT"
  }

  assert {
    condition     = { for e in jsondecode(aws_ecs_task_definition.this["api"].container_definitions)[0].environment : e.name => e.value }["QF_API_PROCESSES"] == "1"
    error_message = "a 1-vCPU api task runs one api process"
  }

  assert {
    condition = alltrue([
      for p, td in aws_ecs_task_definition.this :
      { for e in jsondecode(td.container_definitions)[0].environment : e.name => e.value }["QF_ROUTES_FILE"] == "/app/config/routes.toml"
    ])
    error_message = "every process reads the production route table the image ships"
  }

  assert {
    condition = alltrue([
      for p, td in aws_ecs_task_definition.this : length(setintersection(
        toset([for e in jsondecode(td.container_definitions)[0].environment : e.name]),
        toset(["QF_REDIS_URL", "QF_DATABASE_URL", "QF_AUTH_API_KEYS", "QF_AUTH_JWT_SECRET"]),
      )) == 0
    ])
    error_message = "credentials never appear in plain environment"
  }

  assert {
    condition     = [for s in jsondecode(aws_ecs_task_definition.this["writer"].container_definitions)[0].secrets : s.name] == ["PGPASSWORD", "QF_DATABASE_URL", "QF_REDIS_URL"]
    error_message = "the writer gets the database and Redis URLs and the database password from Secrets Manager"
  }

  assert {
    condition = alltrue([
      for p in ["writer", "migrate", "admin"] :
      { for s in jsondecode(aws_ecs_task_definition.this[p].container_definitions)[0].secrets : s.name => s.valueFrom }["PGPASSWORD"] == "${var.database_password_secret_arn}:password::"
    ])
    error_message = "every database client gets PGPASSWORD from the password key of the RDS-managed secret"
  }

  assert {
    condition     = [for s in jsondecode(aws_ecs_task_definition.this["worker"].container_definitions)[0].secrets : s.valueFrom] == [var.redis_url_secret_arn]
    error_message = "the worker gets the Redis URL only"
  }

  assert {
    condition     = { for e in jsondecode(aws_ecs_task_definition.this["worker"].container_definitions)[0].environment : e.name => e.value }["QF_BACKEND_URL"] == var.backend_url
    error_message = "the worker calls backend_url"
  }

  assert {
    condition     = { for e in jsondecode(aws_ecs_task_definition.this["worker"].container_definitions)[0].environment : e.name => e.value }["QF_BACKEND_MAX_CONCURRENCY"] == "400"
    error_message = "every worker shares the backend's bound (backend_max_concurrency)"
  }
}

run "api_runs_one_process_per_vcpu" {
  command = plan

  variables {
    services = {
      api     = { cpu = 4096, memory = 8192, desired_count = 2 }
      worker  = { cpu = 512, memory = 1024, desired_count = 2 }
      writer  = { cpu = 1024, memory = 2048, desired_count = 0 }
      migrate = { cpu = 512, memory = 1024, desired_count = 0 }
    }
  }

  assert {
    condition     = { for e in jsondecode(aws_ecs_task_definition.this["api"].container_definitions)[0].environment : e.name => e.value }["QF_API_PROCESSES"] == "4"
    error_message = "a 4-vCPU api task runs 4 api processes"
  }

  assert {
    condition = alltrue([
      for p in ["worker", "writer", "migrate", "admin"] :
      !contains([for e in jsondecode(aws_ecs_task_definition.this[p].container_definitions)[0].environment : e.name], "QF_API_PROCESSES")
    ])
    error_message = "only the api task is told its process count"
  }
}

run "a_fractional_api_task_runs_one_process" {
  command = plan

  variables {
    services = {
      api     = { cpu = 512, memory = 1024, desired_count = 2 }
      worker  = { cpu = 512, memory = 1024, desired_count = 2 }
      writer  = { cpu = 1024, memory = 2048, desired_count = 0 }
      migrate = { cpu = 512, memory = 1024, desired_count = 0 }
    }
  }

  assert {
    condition     = { for e in jsondecode(aws_ecs_task_definition.this["api"].container_definitions)[0].environment : e.name => e.value }["QF_API_PROCESSES"] == "1"
    error_message = "an api task below one vCPU runs one process"
  }
}

run "each_role_touches_exactly_its_own_queues" {
  command = plan

  # SQS resources of every statement, per process, from the rendered documents
  assert {
    condition = toset(flatten([
      for st in jsondecode(aws_iam_role_policy.task["api"].policy).Statement : st.Resource if startswith(st.Action[0], "sqs:")
    ])) == toset([var.queue_arns.high, var.queue_arns.normal, var.queue_arns.ingest])
    error_message = "api: its three queues, no DLQ"
  }

  assert {
    condition = toset(flatten([
      for st in jsondecode(aws_iam_role_policy.task["worker"].policy).Statement : st.Resource if startswith(st.Action[0], "sqs:")
    ])) == toset([var.queue_arns.high, var.queue_arns.normal, var.dlq_arns.high, var.dlq_arns.normal])
    error_message = "worker: high, normal and their DLQs (it reads their depth at start), nothing else"
  }

  assert {
    condition = toset(flatten([
      for st in jsondecode(aws_iam_role_policy.task["writer"].policy).Statement : st.Resource if startswith(st.Action[0], "sqs:")
    ])) == toset([var.queue_arns.ingest, var.dlq_arns.ingest])
    error_message = "writer: ingest and its DLQ, nothing else"
  }

  assert {
    condition = toset(flatten([
      for st in jsondecode(aws_iam_role_policy.task["admin"].policy).Statement : st.Resource if startswith(st.Action[0], "sqs:")
    ])) == toset(concat(values(var.queue_arns), values(var.dlq_arns)))
    error_message = "admin: every queue (send back) and every DLQ (receive, delete)"
  }

  assert {
    condition     = !contains(keys(aws_iam_role_policy.task), "migrate")
    error_message = "migrate talks to Postgres only: no policy"
  }
}

run "consumers_may_not_consume_their_dead_letters" {
  command = plan

  # the worker receives from high and normal, and only reads the attributes of their DLQs
  assert {
    condition = alltrue(flatten([
      for st in jsondecode(aws_iam_role_policy.task["worker"].policy).Statement : [
        for r in st.Resource : contains(st.Action, "sqs:ReceiveMessage") == contains([var.queue_arns.high, var.queue_arns.normal], r)
      ] if startswith(st.Action[0], "sqs:")
    ]))
    error_message = "worker: ReceiveMessage on high and normal only"
  }

  assert {
    condition = alltrue([
      for st in jsondecode(aws_iam_role_policy.task["worker"].policy).Statement :
      contains(st.Action, "sqs:GetQueueAttributes") && contains(st.Action, "sqs:GetQueueUrl") if startswith(st.Action[0], "sqs:")
    ])
    error_message = "worker: GetQueueUrl and GetQueueAttributes on every queue it opens (QueueOps.open, visibility and depth)"
  }

  assert {
    condition     = anytrue([for st in jsondecode(aws_iam_role_policy.task["api"].policy).Statement : contains(st.Action, "kms:GenerateDataKey")])
    error_message = "the api sends to SSE-KMS queues: it needs a data key"
  }

  # the writer refuses bad direct votes to its DLQ itself: it may send there, never receive
  assert {
    condition = alltrue(flatten([
      for st in jsondecode(aws_iam_role_policy.task["writer"].policy).Statement : [
        for r in st.Resource : (
          r == var.dlq_arns.ingest ?
          contains(st.Action, "sqs:SendMessage") && !contains(st.Action, "sqs:ReceiveMessage") && !contains(st.Action, "sqs:DeleteMessage") :
          contains(st.Action, "sqs:ReceiveMessage") && !contains(st.Action, "sqs:SendMessage")
        )
      ] if startswith(st.Action[0], "sqs:")
    ])) && anytrue([for st in jsondecode(aws_iam_role_policy.task["writer"].policy).Statement : contains(st.Action, "kms:GenerateDataKey")])
    error_message = "writer: receives from ingest only, sends (refusals) to the ingest DLQ only, with a data key for it"
  }
}

run "execution_role_reads_exactly_the_injected_secrets" {
  command = plan

  assert {
    condition = toset(flatten([
      for st in jsondecode(aws_iam_role_policy.execution.policy).Statement : st.Resource if st.Sid == "ReadInjectedSecrets"
    ])) == toset([var.redis_url_secret_arn, var.database_url_secret_arn, var.database_password_secret_arn])
    error_message = "the execution role reads the Redis and database URL secrets and the RDS-managed password secret (the secret, not a JSON key's reference), nothing else"
  }

  assert {
    condition     = jsondecode(aws_iam_role.execution.assume_role_policy).Statement[0].Principal.Service == "ecs-tasks.amazonaws.com"
    error_message = "only ECS tasks assume the roles"
  }
}

run "services_start_after_the_listener_and_wait_for_steady_state" {
  command = plan

  assert {
    condition     = terraform_data.prerequisites.input["listener"] == [var.api_listener_arn]
    error_message = "the services wait for the ALB listener"
  }

  assert {
    condition     = alltrue([for s in aws_ecs_service.this : s.wait_for_steady_state])
    error_message = "apply waits for the services' tasks to run"
  }

  assert {
    condition     = alltrue([for s in aws_ecs_service.this : one(s.deployment_circuit_breaker).enable && one(s.deployment_circuit_breaker).rollback])
    error_message = "a failing deployment is rolled back"
  }

  assert {
    condition     = aws_ecs_service.this["worker"].deployment_maximum_percent == var.worker_deployment_maximum_percent && aws_ecs_service.this["worker"].deployment_minimum_healthy_percent == 100
    error_message = "worker deploys keep every worker running and overlap by what the root allows (the backend bound is the autoscaling module's precondition)"
  }

  assert {
    condition     = aws_ecs_service.this["api"].deployment_minimum_healthy_percent == 100 && aws_ecs_service.this["writer"].deployment_minimum_healthy_percent == 100
    error_message = "api and writer deploys never drop below their count"
  }

  assert {
    condition     = alltrue([for s in aws_ecs_service.this : one(s.network_configuration).assign_public_ip == false])
    error_message = "no task gets a public IP (private subnets; NAT and VPC endpoints for AWS APIs)"
  }

  assert {
    condition     = [for st in aws_ecs_cluster.this.setting : st.value if st.name == "containerInsights"] == ["enabled"]
    error_message = "Container Insights is on: the backlog-per-task scaling and the worker alarm read its RunningTaskCount"
  }

  assert {
    condition     = keys(aws_ecs_service.this) == ["api", "worker", "writer"]
    error_message = "api, worker and writer are services; migrate and admin are run-task only"
  }
}

run "worker_egress_to_the_backend_port" {
  command = plan

  assert {
    condition     = aws_vpc_security_group_egress_rule.worker_to_backend["0.0.0.0/0"].from_port == 8443 && aws_vpc_security_group_egress_rule.worker_to_backend["0.0.0.0/0"].security_group_id == aws_security_group.worker.id
    error_message = "the worker's group (only) reaches the backend's port, taken from backend_url"
  }

  assert {
    condition     = aws_vpc_security_group_egress_rule.alb_to_api.referenced_security_group_id == aws_security_group.api.id && aws_vpc_security_group_egress_rule.alb_to_api.from_port == 8080
    error_message = "the ALB reaches the api tasks' public port"
  }

  assert {
    condition     = aws_vpc_security_group_egress_rule.alb_to_api_probe.from_port == 9100 && aws_vpc_security_group_ingress_rule.api_probe_from_alb.from_port == 9100 && aws_vpc_security_group_ingress_rule.api_probe_from_alb.referenced_security_group_id == var.alb_security_group_id
    error_message = "the ALB health-checks the api tasks on their probe port (QF_METRICS_PORT)"
  }
}

run "admin_commands_redrive_and_reconcile" {
  command = plan

  assert {
    condition     = strcontains(output.admin_run_task_commands["redrive_ingest"], jsonencode(["admin", "redrive", "qf-ingest"]))
    error_message = "the redrive command runs `queuefront admin redrive <queue>`"
  }

  assert {
    condition     = strcontains(output.admin_run_task_commands["reconcile"], jsonencode(["admin", "reconcile"]))
    error_message = "the reconcile command runs `queuefront admin reconcile`"
  }
}

run "stop_timeout_must_outlast_the_drain" {
  command = plan

  variables {
    stop_timeout_s = 15
  }

  expect_failures = [aws_ecs_task_definition.this]
}

run "a_bad_image_is_rolled_back_by_alarms" {
  command = plan

  assert {
    condition = alltrue([for s in aws_ecs_service.this : one(s.alarms).enable && one(s.alarms).rollback]) && {
      for k, s in aws_ecs_service.this : k => one(s.alarms).alarm_names
      } == {
      api    = toset(["qf-deploy-api-errors", "qf-deploy-api-unhealthy"])
      worker = toset(["qf-deploy-worker-dlq"])
      writer = toset(["qf-deploy-writer-dlq"])
    }
    error_message = "each service's deployment is watched by its alarms and rolled back when one fires"
  }

  assert {
    condition = (
      { for q in aws_cloudwatch_metric_alarm.deployment["api-errors"].metric_query : q.id => q.expression if q.return_data } == { signal = "IF(FILL(requests, 0) > 0, 100 * (FILL(app500, 0) + FILL(elb5xx, 0)) / requests, 0)" } &&
      [for q in aws_cloudwatch_metric_alarm.deployment["api-errors"].metric_query : one(q.metric).dimensions if q.id == "app500"] == [tomap({ process = "api", status = "500" })] &&
      aws_cloudwatch_metric_alarm.deployment["api-errors"].threshold == 5
    )
    error_message = "the api rolls back on its own 500s and the ALB's 5xx over 5% (not on the 503/504 an overload answers by design)"
  }

  assert {
    condition     = [for q in aws_cloudwatch_metric_alarm.deployment["api-unhealthy"].metric_query : one(q.metric).metric_name if q.id == "unhealthy"] == ["UnHealthyHostCount"] && aws_cloudwatch_metric_alarm.deployment["api-unhealthy"].threshold == 0
    error_message = "an api target failing liveness rolls the deploy back"
  }

  assert {
    condition = (
      toset([for q in aws_cloudwatch_metric_alarm.deployment["worker-dlq"].metric_query : one(q.metric).dimensions["QueueName"] if !q.return_data]) == toset(["qf-high-dlq", "qf-normal-dlq"]) &&
      toset([for q in aws_cloudwatch_metric_alarm.deployment["writer-dlq"].metric_query : one(q.metric).dimensions["QueueName"] if !q.return_data]) == toset(["qf-ingest-dlq"]) &&
      aws_cloudwatch_metric_alarm.deployment["worker-dlq"].comparison_operator == "GreaterThanThreshold" && aws_cloudwatch_metric_alarm.deployment["worker-dlq"].threshold == 0
    )
    error_message = "a worker or writer whose DLQs grow during its deploy is rolled back"
  }

  assert {
    condition     = alltrue([for a in aws_cloudwatch_metric_alarm.deployment : strcontains(a.alarm_description, "https://example.com/runbooks/deployment-failed.md")])
    error_message = "each deployment alarm links its runbook"
  }
}
