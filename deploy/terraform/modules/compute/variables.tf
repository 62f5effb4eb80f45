variable "name" {
  type        = string
  description = "Name prefix of the stack (cluster, services, roles, log groups)."

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{1,30}$", var.name))
    error_message = "name must be 2-31 lowercase letters, digits or dashes, starting with a letter."
  }
}

variable "image" {
  type        = string
  description = "The queuefront image (one image; the command picks the process). Pin a digest or an immutable tag."

  validation {
    condition     = length(var.image) > 0 && !endswith(var.image, ":latest")
    error_message = "image must be set and must not use the mutable :latest tag."
  }
}

variable "ecr_repository_arn" {
  type        = string
  description = "ECR repository of the image, for the execution role's pull permissions; null when the image is public."
  default     = null

  validation {
    condition     = var.ecr_repository_arn == null || can(regex("^arn:aws[a-z-]*:ecr:", var.ecr_repository_arn))
    error_message = "ecr_repository_arn must be an ECR repository ARN or null."
  }
}

variable "cpu_architecture" {
  type        = string
  description = "CPU architecture the image is built for."
  default     = "X86_64"

  validation {
    condition     = contains(["X86_64", "ARM64"], var.cpu_architecture)
    error_message = "cpu_architecture must be X86_64 or ARM64."
  }
}

variable "vpc_id" {
  type        = string
  description = "VPC of the tasks."
}

variable "subnet_ids" {
  type        = list(string)
  description = "Private subnets of the tasks."

  validation {
    condition     = length(var.subnet_ids) >= 2
    error_message = "Give subnets in at least two AZs."
  }
}

variable "tasks_security_group_id" {
  type        = string
  description = "Group attached to every task (Redis admits it)."
}

variable "db_clients_security_group_id" {
  type        = string
  description = "Group attached to the writer and the migrate task (the database admits it)."
}

variable "alb_security_group_id" {
  type        = string
  description = "The internal ALB's group; the api admits it on the HTTP port."
}

variable "api_listener_arn" {
  type        = string
  description = "The ALB listener that forwards to api_target_group_arn: the services are created after it (ECS refuses a target group no listener uses)."
}

variable "service_prerequisites" {
  type        = map(list(string))
  description = "Ids of what the services' tasks need to start that other modules make (the network's routes and endpoints, the listener rules in front of the target group, ...): the services are created after every one of them."
  default     = {}
}

variable "alb_arn_suffix" {
  type        = string
  description = "The internal ALB's ARN suffix (CloudWatch dimension LoadBalancer of the api's deployment alarms)."
}

variable "target_group_arn_suffix" {
  type        = string
  description = "The api target group's ARN suffix (CloudWatch dimension TargetGroup of the api's deployment alarms)."
}

variable "dlq_names" {
  type        = map(string)
  description = "Dead-letter queue names by key (high, normal, ingest): the worker's and writer's deployment alarms watch them grow."

  validation {
    condition     = toset(keys(var.dlq_names)) == toset(["high", "normal", "ingest"])
    error_message = "dlq_names must have exactly the keys high, normal and ingest."
  }
}

variable "deployment_error_threshold_percent" {
  type        = number
  description = "Share of the api's answers that may be 500s or ALB 5xx during a deployment before it is rolled back."
  default     = 5
}

variable "runbook_base_url" {
  type        = string
  description = "Where docs/runbooks is published; each alarm's description links <runbook_base_url>/<alarm>.md."
  default     = "docs/runbooks"
}

variable "wait_for_steady_state" {
  type        = bool
  description = "terraform apply waits until each service's tasks run (and fails when the deployment circuit breaker rolls back) instead of succeeding over crash-looping tasks."
  default     = true
}

variable "worker_deployment_maximum_percent" {
  type        = number
  description = "deployment_maximum_percent of the worker service: the overlap during a deploy, which multiplies the calls the legacy backend can get (100: none)."

  validation {
    condition     = var.worker_deployment_maximum_percent >= 100 && var.worker_deployment_maximum_percent <= 200
    error_message = "worker_deployment_maximum_percent must be between 100 and 200."
  }
}

variable "worker_deployment_minimum_healthy_percent" {
  type        = number
  description = "deployment_minimum_healthy_percent of the worker service: 100 keeps every worker (the backend's whole share) running while a deploy starts new ones in the overlap worker_deployment_maximum_percent allows."

  validation {
    condition     = var.worker_deployment_minimum_healthy_percent >= 0 && var.worker_deployment_minimum_healthy_percent <= 100
    error_message = "worker_deployment_minimum_healthy_percent must be between 0 and 100."
  }
}

variable "backend_cidr_blocks" {
  type        = list(string)
  description = "Where the legacy backend (backend_url) is: the worker's only egress besides AWS APIs, Redis and the VPC."
  default     = ["0.0.0.0/0"]

  validation {
    condition     = length(var.backend_cidr_blocks) > 0 && alltrue([for c in var.backend_cidr_blocks : can(cidrhost(c, 0))])
    error_message = "backend_cidr_blocks must list one or more CIDR blocks."
  }
}

variable "api_target_group_arn" {
  type        = string
  description = "ALB target group the api service registers with."
}

variable "queue_names" {
  type        = map(string)
  description = "Queue names by key (high, normal, ingest): QF_QUEUE_HIGH, QF_QUEUE_NORMAL, QF_QUEUE_INGEST."

  validation {
    condition     = toset(keys(var.queue_names)) == toset(["high", "normal", "ingest"])
    error_message = "queue_names must have exactly the keys high, normal and ingest."
  }
}

variable "queue_arns" {
  type        = map(string)
  description = "Queue ARNs by key (high, normal, ingest), for the task roles."

  validation {
    condition     = toset(keys(var.queue_arns)) == toset(["high", "normal", "ingest"])
    error_message = "queue_arns must have exactly the keys high, normal and ingest."
  }
}

variable "dlq_arns" {
  type        = map(string)
  description = "Dead-letter queue ARNs by key (high, normal, ingest): the worker and writer read their depth, admin redrives them."

  validation {
    condition     = toset(keys(var.dlq_arns)) == toset(["high", "normal", "ingest"])
    error_message = "dlq_arns must have exactly the keys high, normal and ingest."
  }
}

variable "dlq_suffix" {
  type        = string
  description = "QF_DLQ_SUFFIX: the DLQ of queue q is named <q><suffix>."
}

variable "max_receive_count" {
  type        = number
  description = "QF_MAX_RECEIVE_COUNT: the redrive policy's maxReceiveCount."
}

variable "visibility_timeout_s" {
  type        = object({ worker = number, writer = number })
  description = "QF_VISIBILITY_TIMEOUT_S of each consumer: its queues' visibility timeout."
}

variable "redis_url_secret_arn" {
  type        = string
  description = "Secret holding QF_REDIS_URL."
}

variable "database_url_secret_arn" {
  type        = string
  description = "Secret holding QF_DATABASE_URL without the password (writer, migrate and admin only)."
}

variable "database_password_secret_arn" {
  type        = string
  description = "The RDS-managed master secret (JSON username/password): its password key is the writer's, migrate's and admin's PGPASSWORD."

  validation {
    condition     = can(regex("^arn:aws[a-z-]*:secretsmanager:", var.database_password_secret_arn))
    error_message = "database_password_secret_arn must be a Secrets Manager secret ARN."
  }
}

variable "auth_api_keys_secret_arn" {
  type        = string
  description = "Secret holding QF_AUTH_API_KEYS (comma-separated keys) for the api; null: no API keys."
  default     = null
}

variable "auth_jwt_secret_arn" {
  type        = string
  description = "Secret holding QF_AUTH_JWT_SECRET (HS256) for the api; null: no JWT auth."
  default     = null
}

variable "auth_invalidate_keys_secret_arn" {
  type        = string
  description = "Secret holding QF_AUTH_INVALIDATE_KEYS (keys allowed to invalidate the cache); null: none."
  default     = null
}

variable "auth_disabled" {
  type        = bool
  description = "QF_AUTH_DISABLED: run the api without authentication (the root module refuses it without intent)."
  default     = false
}

variable "client_ip_header" {
  type        = string
  description = "QF_CLIENT_IP_HEADER: the header the edge sets to the client's address (empty: the TCP peer)."
  default     = ""
}

variable "backend_url" {
  type        = string
  description = "QF_BACKEND_URL: the legacy backend the worker calls."

  validation {
    condition     = can(regex("^https?://", var.backend_url))
    error_message = "backend_url must be an http(s) URL."
  }
}

variable "backend_max_concurrency" {
  type        = number
  description = "QF_BACKEND_MAX_CONCURRENCY: backend calls all worker tasks together make at once (a lease in Redis per call), whatever their number."

  validation {
    condition     = var.backend_max_concurrency >= 1
    error_message = "backend_max_concurrency must be at least 1."
  }
}

variable "kms_key_arn" {
  type        = string
  description = "The stack's KMS key (queues, secrets, logs)."
}

variable "settings" {
  type = object({
    http_port                 = number
    metrics_port              = number
    routes_file               = string
    log_level                 = string
    redis_max_connections     = number
    worker_concurrency        = number
    batch_size                = number
    batch_max_wait_s          = number
    admission_threshold       = number
    admission_wait_s          = number
    backlog_poll_s            = number
    reply_ttl_s               = number
    shutdown_timeout_s        = number
    rate_limit_rps            = number
    rate_limit_burst          = number
    auth_jwt_audience         = string
    auth_jwt_invalidate_scope = string
    max_message_bytes         = number
  })
  description = "Process settings passed as QF_* environment variables (see the root module's settings variable)."
}

variable "services" {
  type = map(object({
    cpu           = number
    memory        = number
    desired_count = number
  }))
  description = "Fargate size and initial task count of api, worker, writer and migrate (autoscaling owns the count afterwards)."

  validation {
    condition     = toset(keys(var.services)) == toset(["api", "worker", "writer", "migrate"])
    error_message = "services must have exactly the keys api, worker, writer and migrate."
  }
}

variable "use_fargate_spot" {
  type        = bool
  description = "Run the worker and the writer mostly on Fargate Spot (they drain on SIGTERM and SQS redelivers what they held)."
  default     = true
}

variable "on_demand_base" {
  type        = number
  description = "Worker/writer tasks always placed on regular Fargate before Spot takes the rest."
  default     = 1

  validation {
    condition     = var.on_demand_base >= 0 && var.on_demand_base <= 100
    error_message = "on_demand_base must be between 0 and 100."
  }
}

variable "stop_timeout_s" {
  type        = number
  description = "stopTimeout: seconds between SIGTERM and SIGKILL; must exceed QF_SHUTDOWN_TIMEOUT_S so a worker can drain."
  default     = 45

  validation {
    condition     = var.stop_timeout_s >= 2 && var.stop_timeout_s <= 120
    error_message = "stop_timeout_s must be between 2 and 120 (the Fargate maximum)."
  }
}

variable "log_retention_days" {
  type        = number
  description = "Retention of the task log groups."
  default     = 365

  validation {
    condition     = contains([1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288, 3653], var.log_retention_days)
    error_message = "log_retention_days must be a CloudWatch Logs retention value."
  }
}

variable "enable_metrics_collector" {
  type        = bool
  description = "Add an ADOT collector sidecar that scrapes the process's /metrics and writes queuefront_* metrics to CloudWatch (EMF)."
  default     = true
}

variable "collector_image" {
  type        = string
  description = "AWS Distro for OpenTelemetry collector image (pin a tag)."
  default     = "public.ecr.aws/aws-observability/aws-otel-collector:v0.40.0"

  validation {
    condition     = !endswith(var.collector_image, ":latest")
    error_message = "collector_image must not use the mutable :latest tag."
  }
}

variable "metrics_namespace" {
  type        = string
  description = "CloudWatch namespace of the application metrics."
  default     = "queuefront"
}

variable "scaling_signal" {
  type = object({
    namespace  = string
    dimensions = map(string)
    interval_s = number
  })
  description = "The api pods' scaling signal: CloudWatch namespace and dimensions of the EMF lines they write to stdout, and how often (QF_SCALING_SIGNAL_*; 0: never)."
  default     = { namespace = "queuefront/scaling", dimensions = {}, interval_s = 0 }
}

variable "tags" {
  type        = map(string)
  description = "Tags added to every resource."
  default     = {}
}
