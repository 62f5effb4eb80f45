# The whole stack as examples/production.tfvars describes it (`terraform test
# -var-file=examples/production.tfvars`), planned with a mocked AWS provider: the numbers
# that decide whether it runs and scales, read from the planned values.

mock_provider "aws" {
  source = "./tests/mocks"
}

mock_provider "aws" {
  alias  = "us_east_1"
  source = "./tests/mocks"
}

# mocked value, so the documents that embed ARNs can be read whole.
run "production" {
  command = apply

  # --- tasks --------------------------------------------------------------------------------
  assert {
    condition = alltrue([
      for p, cmd in { api = ["api"], worker = ["worker"], writer = ["writer"], migrate = ["migrate"] } :
      jsondecode(module.compute.container_definitions[p])[0].command == cmd
    ])
    error_message = "the task commands are the image's roles (ENTRYPOINT queuefront)"
  }

  assert {
    condition     = jsondecode(module.compute.container_definitions["worker"])[0].image == var.image
    error_message = "the tasks run the given image"
  }

  # --- who the client is, and that auth is on -----------------------------------------------
  assert {
    condition     = { for e in jsondecode(module.compute.container_definitions["api"])[0].environment : e.name => e.value }["QF_CLIENT_IP_HEADER"] == "X-Qf-Viewer-Address"
    error_message = "the api takes the client's address from the header CloudFront sets"
  }

  assert {
    condition     = { for e in jsondecode(module.compute.container_definitions["api"])[0].environment : e.name => e.value }["QF_AUTH_DISABLED"] == "false"
    error_message = "auth is on in production"
  }

  assert {
    condition = length(module.edge.behaviors) == 3 && alltrue([
      for b in module.edge.behaviors : anytrue([
        for f in b.function_association : f.event_type == "viewer-request" && f.function_arn == module.edge.viewer_address_function_arn
      ])
    ])
    error_message = "every request through every behaviour (the edge-cached paths too) gets X-Qf-Viewer-Address from CloudFront"
  }

  assert {
    condition = alltrue([
      for p in ["api", "worker", "writer"] :
      { for e in jsondecode(module.compute.container_definitions[p])[0].environment : e.name => e.value }["QF_MAX_MESSAGE_BYTES"] == "1048576"
    ])
    error_message = "the processes get the queues' 1 MiB message limit"
  }

  # --- IAM: each process its own queues and DLQs -------------------------------------------
  assert {
    condition = toset(flatten([
      for st in jsondecode(module.compute.task_policies["worker"]).Statement : st.Resource if startswith(st.Action[0], "sqs:")
      ])) == toset([
      "arn:aws:sqs:eu-west-1:123456789012:queuefront-high", "arn:aws:sqs:eu-west-1:123456789012:queuefront-normal",
      "arn:aws:sqs:eu-west-1:123456789012:queuefront-high-dlq", "arn:aws:sqs:eu-west-1:123456789012:queuefront-normal-dlq",
    ])
    error_message = "worker: high, normal and their DLQs"
  }

  assert {
    condition = toset(flatten([
      for st in jsondecode(module.compute.task_policies["writer"]).Statement : st.Resource if startswith(st.Action[0], "sqs:")
    ])) == toset(["arn:aws:sqs:eu-west-1:123456789012:queuefront-ingest", "arn:aws:sqs:eu-west-1:123456789012:queuefront-ingest-dlq"])
    error_message = "writer: ingest and its DLQ"
  }

  # --- deploys that drop nothing ------------------------------------------------------------
  # a deregistered api task keeps answering what it accepted: the ALB waits longer than the
  # longest reply window before ECS stops it, and the task then drains within its stop timeout
  assert {
    condition     = module.edge.deregistration_delay_s > var.reply_window_s && module.edge.deregistration_delay_s <= var.reply_window_s + 30
    error_message = "the ALB's deregistration delay must outlast the reply window (and not hold deploys for minutes)"
  }

  assert {
    condition     = var.stop_timeout_s > var.settings.shutdown_timeout_s
    error_message = "ECS's stop timeout must outlast the processes' drain"
  }

  # --- queues ---------------------------------------------------------------------------------
  assert {
    condition     = module.queues.max_message_bytes == 1048576
    error_message = "the queues are made for 1 MiB messages"
  }

  # --- scaling ---------------------------------------------------------------------------------
  assert {
    condition = (
      module.autoscaling.backlog_queues.worker == tolist(["queuefront-high", "queuefront-normal"]) &&
      module.autoscaling.backlog_queues.writer == tolist(["queuefront-ingest"])
    )
    error_message = "the worker scales on high + normal, the writer on ingest"
  }

  assert {
    condition     = module.autoscaling.worker_backlog_target == 312
    error_message = "worker: 5 s / (1.6 s / 100 slots) = 312 messages per task"
  }

  assert {
    condition     = module.autoscaling.writer_backlog_target == 1714
    error_message = "writer: 30 s / 0.0175 s per message = 1,714 messages per task (not 300,000: per message, not per row)"
  }

  assert {
    condition     = module.autoscaling.worker_peak_backend_calls == var.backend_max_concurrency && { for e in jsondecode(module.compute.container_definitions["worker"])[0].environment : e.name => e.value }["QF_BACKEND_MAX_CONCURRENCY"] == "400"
    error_message = "10 workers + 25% deploy overlap = 12 x 100 slots, held to the backend's 400 by the workers' shared limit"
  }

  # a deploy keeps the backend's share: nothing stops before its replacement runs
  assert {
    condition = (
      module.compute.deployments["worker"].minimum_healthy_percent == 100 &&
      module.compute.deployments["worker"].maximum_percent == 125 &&
      module.autoscaling.worker_deploy_headroom_at_min == 1
    )
    error_message = "worker deploys keep 100% and start one task first at the minimum count (125% of 4)"
  }
}

# Auth fails closed: a stack without any credential secret is refused at plan time unless
# auth_disabled says it is intended.
run "no_credentials_is_refused" {
  command = plan

  variables {
    auth_api_keys_secret_arn = null
    auth_jwt_secret_arn      = null
  }

  expect_failures = [var.auth_disabled]
}

# Votes straight from API Gateway to the ingest queue: the stack's own queue, route and role.
run "ingest_direct" {
  command = apply

  variables {
    ingest_direct = true
  }

  assert {
    condition     = module.edge.openapi.paths["/api/polls/{poll_id}/votes"].post["x-amazon-apigateway-integration"].uri == "arn:aws:apigateway:eu-west-1:sqs:path/123456789012/queuefront-ingest"
    error_message = "the votes route sends to the stack's ingest queue"
  }

  assert {
    condition     = strcontains(module.edge.openapi.paths["/api/polls/{poll_id}/votes"].post["x-amazon-apigateway-integration"].requestTemplates["application/json"], "MessageAttribute.1.Name=route&MessageAttribute.1.Value.DataType=String&MessageAttribute.1.Value.StringValue=vote&")
    error_message = "the messages name the route table's vote route (its sink is what the writer checks)"
  }

  assert {
    condition     = module.edge.openapi.paths["/api/login"].post["x-amazon-apigateway-integration"].connectionType == "VPC_LINK" && module.edge.openapi.paths["/{proxy+}"]["x-amazon-apigateway-any-method"]["x-amazon-apigateway-integration"].connectionType == "VPC_LINK"
    error_message = "everything else still goes to the api"
  }
}
