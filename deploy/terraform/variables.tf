# --- stack -------------------------------------------------------------------------------------

variable "name" {
  type        = string
  description = "Name prefix of every resource of the stack."
  default     = "queuefront"

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{1,30}$", var.name))
    error_message = "name must be 2-31 lowercase letters, digits or dashes, starting with a letter."
  }
}

variable "region" {
  type        = string
  description = "AWS region of the stack (QF_AWS_REGION)."

  validation {
    condition     = can(regex("^[a-z]{2}(-gov)?-[a-z]+-[0-9]$", var.region))
    error_message = "region must be an AWS region such as eu-west-1."
  }
}

variable "tags" {
  type        = map(string)
  description = "Tags added to every resource (on top of project and stack)."
  default     = {}
}

# --- network -----------------------------------------------------------------------------------

variable "create_vpc" {
  type        = bool
  description = "Build a new VPC (true) or use vpc_id and private_subnet_ids (false)."
  default     = true
}

variable "vpc_id" {
  type        = string
  description = "Existing VPC (create_vpc = false)."
  default     = null
}

variable "private_subnet_ids" {
  type        = list(string)
  description = "Existing private subnets in two or more AZs (create_vpc = false); they need NAT or VPC endpoints for SQS, ECR, logs and Secrets Manager."
  default     = []
}

variable "vpc_cidr" {
  type        = string
  description = "CIDR of the new VPC."
  default     = "10.40.0.0/16"
}

variable "availability_zones" {
  type        = list(string)
  description = "AZs of the new VPC by name (two or more, e.g. eu-west-1a, eu-west-1b, eu-west-1c); unused with an existing VPC."
  default     = []
}

variable "single_nat_gateway" {
  type        = bool
  description = "One NAT gateway instead of one per AZ."
  default     = false
}

variable "enable_vpc_endpoints" {
  type        = bool
  description = "Interface/gateway endpoints for SQS, ECR, S3, logs, monitoring, Secrets Manager and KMS in the new VPC."
  default     = true
}

# --- image and processes -------------------------------------------------------------------------

variable "image" {
  type        = string
  description = "The queuefront container image, by digest or immutable tag."

  validation {
    condition     = length(var.image) > 0 && !endswith(var.image, ":latest")
    error_message = "image must be set and must not use the mutable :latest tag."
  }
}

variable "ecr_repository_arn" {
  type        = string
  description = "ECR repository of the image (pull permissions); null for a public image."
  default     = null
}

variable "cpu_architecture" {
  type        = string
  description = "X86_64 or ARM64, as the image is built."
  default     = "X86_64"
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
  description = "Concurrent requests the legacy backend can take: every worker shares this limit (QF_BACKEND_MAX_CONCURRENCY, a lease in Redis per call), whatever the task count or a deploy's overlap."

  validation {
    condition     = var.backend_max_concurrency >= 1
    error_message = "backend_max_concurrency must be at least 1."
  }
}

variable "settings" {
  type = object({
    http_port                 = optional(number, 8080)
    metrics_port              = optional(number, 9100)
    routes_file               = optional(string, "/app/config/routes.toml")
    log_level                 = optional(string, "INFO")
    redis_max_connections     = optional(number, 64)
    worker_concurrency        = optional(number, 32)
    batch_size                = optional(number, 300)
    batch_max_wait_s          = optional(number, 1)
    admission_threshold       = optional(number, 100)
    admission_wait_s          = optional(number, 5)
    backlog_poll_s            = optional(number, 1)
    reply_ttl_s               = optional(number, 120)
    shutdown_timeout_s        = optional(number, 20)
    rate_limit_rps            = optional(number, 0)
    rate_limit_burst          = optional(number, 20)
    auth_jwt_audience         = optional(string, "")
    auth_jwt_invalidate_scope = optional(string, "cache:invalidate")
    max_message_bytes         = optional(number, 1048576)
  })
  description = "queuefront settings passed to the processes as QF_<NAME> environment variables (defaults as in queuefront.settings)."
  default     = {}

  validation {
    condition     = contains(["DEBUG", "INFO", "WARNING", "ERROR"], var.settings.log_level)
    error_message = "settings.log_level must be DEBUG, INFO, WARNING or ERROR."
  }

  validation {
    condition     = var.settings.http_port != var.settings.metrics_port && var.settings.http_port >= 1024 && var.settings.metrics_port >= 1024
    error_message = "settings.http_port and settings.metrics_port must differ and be unprivileged (>= 1024)."
  }

  validation {
    condition     = var.settings.max_message_bytes >= 1024 && var.settings.max_message_bytes <= 1048576
    error_message = "settings.max_message_bytes (the queues' MaximumMessageSize) must be between 1024 and 1048576."
  }

  validation {
    condition     = var.settings.batch_size >= 1 && var.settings.batch_size <= 10000 && var.settings.worker_concurrency >= 1
    error_message = "settings.batch_size must be 1-10000 and settings.worker_concurrency at least 1."
  }
}

variable "reply_window_s" {
  type        = number
  description = "The longest timeout_s of the route table (default 20): how long a client waits for a reply. Sizes the queue-age alarms and the ALB's deregistration delay."
  default     = 20

  validation {
    condition     = var.reply_window_s > 0 && var.reply_window_s < 29
    error_message = "reply_window_s must stay under API Gateway's 29 s limit."
  }
}

variable "auth_api_keys_secret_arn" {
  type        = string
  description = "Existing Secrets Manager secret with QF_AUTH_API_KEYS (comma-separated); null: no API keys."
  default     = null
}

variable "auth_jwt_secret_arn" {
  type        = string
  description = "Existing Secrets Manager secret with QF_AUTH_JWT_SECRET; null: no JWT auth."
  default     = null
}

variable "auth_invalidate_keys_secret_arn" {
  type        = string
  description = "Existing Secrets Manager secret with QF_AUTH_INVALIDATE_KEYS (comma-separated keys allowed to invalidate the cache); null: only JWTs with the invalidation scope may."
  default     = null
}

variable "auth_disabled" {
  type        = bool
  description = "Run the api without authentication (QF_AUTH_DISABLED). Auth fails closed: with no credential secret given, the plan is refused unless this is true."
  default     = false

  validation {
    condition     = var.auth_disabled || var.auth_api_keys_secret_arn != null || var.auth_jwt_secret_arn != null
    error_message = "No credentials: give auth_api_keys_secret_arn and/or auth_jwt_secret_arn, or set auth_disabled = true to run the api without auth on purpose."
  }
}

variable "services" {
  type = map(object({
    cpu           = number
    memory        = number
    desired_count = optional(number, 1)
  }))
  description = "Fargate CPU units / memory MiB and initial count of api, worker, writer and migrate."
  default = {
    api     = { cpu = 1024, memory = 2048, desired_count = 2 }
    worker  = { cpu = 1024, memory = 2048, desired_count = 2 }
    writer  = { cpu = 1024, memory = 2048, desired_count = 0 }
    migrate = { cpu = 512, memory = 1024, desired_count = 0 }
  }

  validation {
    condition     = toset(keys(var.services)) == toset(["api", "worker", "writer", "migrate"])
    error_message = "services must have exactly the keys api, worker, writer and migrate."
  }

  validation {
    condition     = alltrue([for s in values(var.services) : contains([256, 512, 1024, 2048, 4096, 8192, 16384], s.cpu)])
    error_message = "cpu must be a Fargate size: 256, 512, 1024, 2048, 4096, 8192 or 16384."
  }
}

variable "wait_for_steady_state" {
  type        = bool
  description = "terraform apply waits for every service's tasks to run and fails when a deployment is rolled back."
  default     = true
}

variable "worker_deployment_maximum_percent" {
  type        = number
  description = "The worker service's deployment_maximum_percent; null: the smallest that lets a deploy at worker_min_tasks start one new task first (125 for 4). The backend's bound holds during a deploy whatever this is: the workers share backend_max_concurrency."
  default     = null
}

variable "worker_deployment_minimum_healthy_percent" {
  type        = number
  description = "The worker service's deployment_minimum_healthy_percent: 100 keeps the backend's whole share of workers running while a deploy replaces them."
  default     = 100
}

variable "backend_cidr_blocks" {
  type        = list(string)
  description = "Where backend_url's host is (the worker's egress to the backend port)."
  default     = ["0.0.0.0/0"]
}

variable "use_fargate_spot" {
  type        = bool
  description = "Run worker and writer tasks beyond on_demand_base on Fargate Spot."
  default     = true
}

variable "on_demand_base" {
  type        = number
  description = "Worker/writer tasks kept on regular Fargate before Spot is used; null (the default): worker_min_tasks, so a Spot reclaim never takes the worker floor."
  default     = null

  validation {
    condition     = var.on_demand_base == null || try(var.on_demand_base >= var.worker_min_tasks, false)
    error_message = "on_demand_base must be at least worker_min_tasks: the minimum worker fleet runs on regular Fargate, not Spot."
  }
}

variable "stop_timeout_s" {
  type        = number
  description = "stopTimeout of every container: seconds from SIGTERM to SIGKILL; longer than settings.shutdown_timeout_s so the worker drains."
  default     = 45

  validation {
    condition     = var.stop_timeout_s >= 2 && var.stop_timeout_s <= 120
    error_message = "stop_timeout_s must be between 2 and 120 (Fargate's limit)."
  }
}

variable "enable_metrics_collector" {
  type        = bool
  description = "ADOT collector sidecar that ships each task's queuefront_* metrics to CloudWatch."
  default     = true
}

# --- queues ---------------------------------------------------------------------------------------

variable "queues" {
  type = map(object({
    name                 = string
    visibility_timeout_s = optional(number)
    message_retention_s  = optional(number)
    oldest_age_alarm_s   = optional(number)
  }))
  description = <<-EOT
    The high, normal and ingest queues. Omitted values are derived: high/normal keep messages
    an hour (older ones are past any reply window), hide them 60 s while a worker calls the
    backend, and alarm when the oldest waits 75% of the reply window; ingest keeps them 4
    days, hides them 120 s (batch gathering plus the insert) and alarms after 5 minutes.
  EOT
  default = {
    high   = { name = "queuefront-high" }
    normal = { name = "queuefront-normal" }
    ingest = { name = "queuefront-ingest" }
  }

  validation {
    condition     = toset(keys(var.queues)) == toset(["high", "normal", "ingest"])
    error_message = "queues must have exactly the keys high, normal and ingest."
  }
}

variable "dlq_suffix" {
  type        = string
  description = "QF_DLQ_SUFFIX: each dead-letter queue is <queue><suffix>."
  default     = "-dlq"
}

variable "max_receive_count" {
  type        = number
  description = "Receives before a message goes to its DLQ."
  default     = 3
}

# --- data stores ------------------------------------------------------------------------------------

variable "redis_node_type" {
  type        = string
  description = "ElastiCache node type."
  default     = "cache.r7g.large"
}

variable "redis_replicas" {
  type        = number
  description = "Redis replicas besides the primary (>= 1 for Multi-AZ failover)."
  default     = 1
}

variable "db_instance_class" {
  type        = string
  description = "RDS instance class."
  default     = "db.r6g.large"
}

variable "db_allocated_storage_gb" {
  type        = number
  description = "Initial RDS storage."
  default     = 100
}

variable "db_multi_az" {
  type        = bool
  description = "RDS Multi-AZ standby."
  default     = true
}

variable "db_backup_retention_days" {
  type        = number
  description = "Days of RDS automated backups."
  default     = 14
}

variable "db_deletion_protection" {
  type        = bool
  description = "Refuse to delete the database."
  default     = true
}

variable "db_password_rotation_days" {
  type        = number
  description = "Days between rotations of the RDS-managed master password (RDS rotates it; the value is never in Terraform's state). docs/runbooks/rotate-database-password.md."
  default     = 30
}

# --- autoscaling --------------------------------------------------------------------------------------

variable "api_min_tasks" {
  type        = number
  description = "Fewest api tasks."
  default     = 2
}

variable "api_max_tasks" {
  type        = number
  description = "Most api tasks."
  default     = 20
}

variable "api_cpu_target_percent" {
  type        = number
  description = "Target average CPU of the api."
  default     = 60
}

variable "api_requests_per_target" {
  type        = number
  description = "Target ALB requests per api task per minute; null (the default): the api scales on CPU only (its CPU per request differs fourfold between routes)."
  default     = null
}

variable "worker_min_tasks" {
  type        = number
  description = "Fewest worker tasks (>= 1)."
  default     = 2
}

variable "worker_max_tasks" {
  type        = number
  description = "Most worker tasks. Backend calls are bounded by backend_max_concurrency, shared by all of them; tasks past worker_min_tasks add CPU and receive loops."
  default     = 10
}

variable "worker_acceptable_latency_s" {
  type        = number
  description = "Acceptable queue wait of a proxied request (under the reply window)."
  default     = 5
}

variable "worker_processing_time_s" {
  type        = number
  description = "Average seconds one worker task spends per message (backend latency / worker_concurrency)."
  default     = 0.05
}

variable "worker_target_utilization_percent" {
  type        = number
  description = "Workers' demand (drain rate + backlog / worker_acceptable_latency_s, from the pods' scaling signal) as a percentage of their capacity that the worker fleet is scaled to hold."
  default     = 70
}

variable "writer_min_tasks" {
  type        = number
  description = "Fewest writer tasks (0: scale to zero when ingest is idle)."
  default     = 0
}

variable "writer_max_tasks" {
  type        = number
  description = "Most writer tasks."
  default     = 4
}

variable "writer_acceptable_latency_s" {
  type        = number
  description = "Acceptable delay before an ingested item is stored."
  default     = 30
}

variable "writer_processing_time_s" {
  type        = number
  description = "Average seconds one writer task spends per SQS message (not per row: a message packs up to QF_INGEST_PACK_MAX items)."
  default     = 0.0175
}

variable "writer_idle_minutes" {
  type        = number
  description = "Minutes of an empty ingest queue before the writer scales to zero."
  default     = 15
}

variable "scaling_signal_interval_s" {
  type        = number
  description = "How often each api process writes its scaling signal (QF_SCALING_SIGNAL_INTERVAL_S): at least twice per signal_period_s."
  default     = 5

  validation {
    condition     = var.scaling_signal_interval_s >= 0 && var.scaling_signal_interval_s <= 30
    error_message = "scaling_signal_interval_s must be between 0 (no signal: the fast alarms see nothing) and 30."
  }
}

variable "signal_period_s" {
  type        = number
  description = "Period of the fast scaling alarms on the pods' signal: 10, 30 or 60 s."
  default     = 10
}

variable "signal_datapoints" {
  type        = number
  description = "Periods in a row above the threshold before a fast alarm adds tasks."
  default     = 2
}

variable "scaling_events" {
  type = map(object({
    start     = string
    end       = string
    timezone  = optional(string, "UTC")
    min_tasks = map(number)
  }))
  description = "Known events (a sale, a TV show): from start to end (yyyy-mm-ddThh:mm:ss in timezone) each service of min_tasks (api, worker, writer) keeps at least that many tasks."
  default     = {}
}

# --- edge ------------------------------------------------------------------------------------------------

variable "domain_names" {
  type        = list(string)
  description = "Aliases of the CloudFront distribution."
  default     = []
}

variable "cloudfront_certificate_arn" {
  type        = string
  description = "ACM certificate (us-east-1) for domain_names."
  default     = null
}

variable "cloudfront_log_bucket" {
  type        = string
  description = "S3 bucket domain for CloudFront standard logs; null: none."
  default     = null
}

variable "price_class" {
  type        = string
  description = "CloudFront price class."
  default     = "PriceClass_100"
}

variable "edge_cached_paths" {
  type        = list(string)
  description = "Path patterns of public GET routes cached at the edge for their s-maxage."
  default     = ["/api/polls", "/api/polls/*/results"]
}

variable "edge_cache_query_strings" {
  type        = map(list(string))
  description = "Per edge-cached path, the query strings its route reads: only these are in its cache key and reach the origin (a path not listed: none)."
  default     = {}
}

variable "waf_rate_limit" {
  type        = number
  description = "Requests per client IP per 5 minutes before WAF blocks."
  default     = 2000
}

variable "default_throttle" {
  type        = object({ burst = number, rate = number })
  description = "API Gateway stage throttling (burst requests, steady requests/s)."
  default     = { burst = 2000, rate = 1000 }
}

variable "route_throttles" {
  type        = map(object({ burst = number, rate = number }))
  description = "Per-route API Gateway throttling, keyed \"METHOD /path\"."
  default = {
    "POST /api/login"                 = { burst = 200, rate = 100 }
    "POST /api/polls/{poll_id}/votes" = { burst = 5000, rate = 2000 }
  }
}

variable "alb_certificate_arn" {
  type        = string
  description = "ACM certificate for HTTPS on the internal ALB; null: HTTP inside the VPC."
  default     = null
}

variable "alb_certificate_domain" {
  type        = string
  description = "Name API Gateway verifies on the ALB certificate."
  default     = null
}

variable "origin_secret_version" {
  type        = number
  description = "Bump to rotate the header CloudFront adds and the ALB requires (apply with origin_secret_accept_previous = true, then false)."
  default     = 1
}

variable "origin_secret_accept_previous" {
  type        = bool
  description = "During an origin secret rotation: the ALB accepts the previous value too."
  default     = false
}

variable "manage_api_gateway_account" {
  type        = bool
  description = "Set the account's API Gateway CloudWatch role (account-and-region-wide; REST access logs need it); false where another stack sets it."
  default     = true
}

variable "ingest_direct" {
  type        = bool
  description = "Votes straight from API Gateway to the ingest queue (the voting seed's v2): ingest_direct_route skips the api pods; the writer validates, deduplicates (by API Gateway's request id) and stores. Gives up idempotency keys and per-identity rate limits on that route (docs: deploy/terraform/README.md)."
  default     = false
}

variable "ingest_direct_route" {
  type        = string
  description = "With ingest_direct: the route (a key of route_throttles, API Gateway syntax) whose integration sends to the ingest queue."
  default     = "POST /api/polls/{poll_id}/votes"
}

variable "ingest_direct_route_name" {
  type        = string
  description = "With ingest_direct: that route's name in the route table (its sink is what the writer validates against)."
  default     = "vote"
}

# --- observability -------------------------------------------------------------------------------

variable "alarm_emails" {
  type        = list(string)
  description = "E-mail addresses for the alarm topic."
  default     = []
}

variable "alarm_subscriptions" {
  type        = map(object({ protocol = string, endpoint = string }))
  description = "Subscribers of the alarm (paging) topic besides alarm_emails, by a name of your choice: e.g. { pager = { protocol = \"https\", endpoint = \"<paging service URL>\" } }."
  default     = {}
}

variable "runbook_base_url" {
  type        = string
  description = "Where docs/runbooks is published (e.g. the repository's URL + /blob/main/docs/runbooks); every alarm's description links its runbook there."
  default     = "docs/runbooks"
}

variable "log_retention_days" {
  type        = number
  description = "Retention of every log group of the stack."
  default     = 365
}
