# The compute module applied against the shared mocked AWS provider (tests/mocks): after
# the apply each service is read back, and a service that does not run the task definition
# the apply registered (its deployment was rolled back) fails the apply. A separate file
# from compute.tftest.hcl, whose provider fixes values at plan time.

mock_provider "aws" {
  source = "../../tests/mocks"
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

run "a_deployment_that_reached_steady_state_passes" {
  command = apply

  assert {
    condition     = alltrue([for k, d in data.aws_ecs_service.deployed : d.task_definition == aws_ecs_task_definition.this[k].arn]) && length(data.aws_ecs_service.deployed) == 3
    error_message = "each service is read back after the apply"
  }
}

# ... unless its deployment was rolled back: then the service is steady on the previous
# revision and the apply must fail, not report success. (Run on the state the apply above
# left, so nothing changes and the service is read at once: the plan fails the same way
# the apply does when the deployment is in it.)
run "a_rolled_back_deployment_fails_the_apply" {
  command = plan

  override_data {
    target = data.aws_ecs_service.deployed["worker"]
    values = { task_definition = "arn:aws:ecs:eu-west-1:123456789012:task-definition/qf:6" }
  }

  expect_failures = [data.aws_ecs_service.deployed]
}
