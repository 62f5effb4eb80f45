variable "name" {
  type        = string
  description = "Name prefix of the stack (policy and alarm names)."
}

variable "cluster_name" {
  type        = string
  description = "ECS cluster of the services."
}

variable "api_service_name" {
  type        = string
  description = "ECS service of the api process."
}

variable "worker_service_name" {
  type        = string
  description = "ECS service of the worker process (python -m workers.priority)."
}

variable "writer_service_name" {
  type        = string
  description = "ECS service of the writer process (python -m workers.writer)."
}

variable "worker_queue_names" {
  type        = list(string)
  description = "Queues the worker drains (high and normal): its backlog is the sum of their visible and in-flight messages."

  validation {
    condition     = length(var.worker_queue_names) >= 1 && length(var.worker_queue_names) <= 4
    error_message = "worker_queue_names must list 1 to 4 queues."
  }
}

variable "writer_queue_name" {
  type        = string
  description = "Queue the writer drains (ingest)."
}

# --- api ---------------------------------------------------------------------------------

variable "api_min_tasks" {
  type        = number
  description = "Fewest api tasks (two or more keeps an AZ failure from taking the API down)."
  default     = 2

  validation {
    condition     = var.api_min_tasks >= 1
    error_message = "api_min_tasks must be at least 1: the api cannot scale from zero in time for a request."
  }
}

variable "api_max_tasks" {
  type        = number
  description = "Most api tasks."
  default     = 20

  validation {
    condition     = var.api_max_tasks >= 1 && var.api_max_tasks <= 1000
    error_message = "api_max_tasks must be between 1 and 1000."
  }
}

variable "api_cpu_target_percent" {
  type        = number
  description = "Target average CPU of the api tasks."
  default     = 60

  validation {
    condition     = var.api_cpu_target_percent >= 10 && var.api_cpu_target_percent <= 90
    error_message = "api_cpu_target_percent must be between 10 and 90."
  }
}

variable "api_requests_per_target" {
  type        = number
  description = "Target ALB requests per api task per minute (ALBRequestCountPerTarget); null: no such policy (the api scales on CPU)."
  default     = null

  validation {
    condition     = var.api_requests_per_target == null || try(var.api_requests_per_target >= 1, false)
    error_message = "api_requests_per_target must be positive (or null)."
  }
}

variable "alb_resource_label" {
  type        = string
  description = "<alb arn suffix>/<target group arn suffix> of the api's target group."
}

# --- worker --------------------------------------------------------------------------------

variable "worker_min_tasks" {
  type        = number
  description = "Fewest worker tasks. At least 1: a worker started on demand would come after the reply window."
  default     = 2

  validation {
    condition     = var.worker_min_tasks >= 1
    error_message = "worker_min_tasks must be at least 1 (replies wait at most the reply window)."
  }
}

variable "worker_max_tasks" {
  type        = number
  description = "Most worker tasks. The load on the legacy backend is bounded by the workers' shared limit (backend_max_concurrency), not by this: tasks past the backend's slots add CPU, not calls."
  default     = 10

  validation {
    condition     = var.worker_max_tasks >= 1 && var.worker_max_tasks <= 1000
    error_message = "worker_max_tasks must be between 1 and 1000."
  }
}

variable "worker_concurrency" {
  type        = number
  description = "QF_WORKER_CONCURRENCY: backend calls one worker task makes at once."

  validation {
    condition     = var.worker_concurrency >= 1
    error_message = "worker_concurrency must be at least 1."
  }
}

variable "backend_max_concurrency" {
  type        = number
  description = "Concurrent calls the legacy backend can take: the workers' shared limit (QF_BACKEND_MAX_CONCURRENCY), whatever the task count."

  validation {
    condition     = var.backend_max_concurrency >= 1
    error_message = "backend_max_concurrency must be at least 1."
  }
}

variable "worker_deployment_maximum_percent" {
  type        = number
  description = "The worker service's deployment_maximum_percent: during a deploy up to worker_max_tasks x this / 100 (rounded down) workers run; their calls stay within backend_max_concurrency (the shared limit)."

  validation {
    condition     = var.worker_deployment_maximum_percent >= 100 && var.worker_deployment_maximum_percent <= 200
    error_message = "worker_deployment_maximum_percent must be between 100 and 200."
  }
}

variable "worker_deployment_minimum_healthy_percent" {
  type        = number
  description = "The worker service's deployment_minimum_healthy_percent: 100 keeps the whole backend share running during a deploy (the new task starts before an old one stops)."

  validation {
    condition     = var.worker_deployment_minimum_healthy_percent >= 0 && var.worker_deployment_minimum_healthy_percent <= 100
    error_message = "worker_deployment_minimum_healthy_percent must be between 0 and 100."
  }
}

variable "runbook_base_url" {
  type        = string
  description = "Where docs/runbooks is published; each alarm's description links its runbook there."
  default     = "docs/runbooks"
}

variable "worker_acceptable_latency_s" {
  type        = number
  description = "Longest a high/normal message should wait in the queue; keep it well under the reply window (the routes' timeout_s)."
  default     = 5

  validation {
    condition     = var.worker_acceptable_latency_s > 0 && var.worker_acceptable_latency_s < 29
    error_message = "worker_acceptable_latency_s must be between 0 and 29 (API Gateway's limit)."
  }
}

variable "worker_processing_time_s" {
  type        = number
  description = "Average time one worker task spends per message: the backend's latency divided by QF_WORKER_CONCURRENCY."
  default     = 0.05

  validation {
    condition     = var.worker_processing_time_s > 0
    error_message = "worker_processing_time_s must be positive."
  }
}

# --- writer ----------------------------------------------------------------------------------

variable "writer_min_tasks" {
  type        = number
  description = "Fewest writer tasks; 0 lets the writer scale to zero when the ingest queue is empty."
  default     = 0

  validation {
    condition     = var.writer_min_tasks >= 0
    error_message = "writer_min_tasks must not be negative."
  }
}

variable "writer_max_tasks" {
  type        = number
  description = "Most writer tasks (each holds one Postgres connection pool: mind the database's connection limit)."
  default     = 4

  validation {
    condition     = var.writer_max_tasks >= 1 && var.writer_max_tasks <= 100
    error_message = "writer_max_tasks must be between 1 and 100."
  }
}

variable "writer_acceptable_latency_s" {
  type        = number
  description = "Longest an ingested item should wait before it is in Postgres (and in the tallies)."
  default     = 30

  validation {
    condition     = var.writer_acceptable_latency_s > 0
    error_message = "writer_acceptable_latency_s must be positive."
  }
}

variable "writer_processing_time_s" {
  type        = number
  description = "Average time one writer task spends per SQS message, not per row: a message packs up to QF_INGEST_PACK_MAX items. The ingest benchmark stored 2,856 items/s at 50 items per message, 57 messages/s: 0.0175 s."
  default     = 0.0175

  validation {
    # a per-row figure (about 1/3000 s) here would set a target the writer never reaches
    condition     = var.writer_processing_time_s >= 0.001
    error_message = "writer_processing_time_s is per SQS message (tens of items), not per row: at least 0.001 s."
  }
}

variable "writer_idle_minutes" {
  type        = number
  description = "Minutes the ingest queue must stay empty (nothing visible, nothing in flight) before the writer scales to zero."
  default     = 15

  validation {
    condition     = var.writer_idle_minutes >= 1 && var.writer_idle_minutes <= 1440
    error_message = "writer_idle_minutes must be between 1 and 1440."
  }
}

# --- the pods' scaling signal ------------------------------------------------------------------

variable "scaling_signal" {
  type = object({
    namespace  = string
    dimensions = map(string)
    metrics    = map(string)
  })
  description = "The api pods' scaling signal (service/scaling_signal.py): CloudWatch namespace, the dimensions every pod writes, and metric names by key (deploy/terraform/scaling_signal.json)."

  validation {
    condition     = length(setsubtract(["backlog", "drain_rate", "drain_capacity", "cpu"], keys(var.scaling_signal.metrics))) == 0
    error_message = "scaling_signal.metrics must name backlog, drain_rate, drain_capacity and cpu."
  }
}

variable "signal_period_s" {
  type        = number
  description = "Period of the fast alarms on the pods' signal: 10 or 30 (high-resolution alarms) or 60."
  default     = 10

  validation {
    condition     = contains([10, 30, 60], var.signal_period_s)
    error_message = "signal_period_s must be 10, 30 or 60."
  }
}

variable "signal_datapoints" {
  type        = number
  description = "Periods in a row above the threshold before a fast alarm adds tasks (noise against speed)."
  default     = 2

  validation {
    condition     = var.signal_datapoints >= 1 && var.signal_datapoints <= 6
    error_message = "signal_datapoints must be between 1 and 6."
  }
}

variable "worker_target_utilization_percent" {
  type        = number
  description = "Workers' demand (drain rate + backlog / worker_acceptable_latency_s) as a share of their capacity that target tracking holds; the fast alarm adds workers above it."
  default     = 70

  validation {
    condition     = var.worker_target_utilization_percent >= 20 && var.worker_target_utilization_percent < 100
    error_message = "worker_target_utilization_percent must be between 20 and 99."
  }
}

# --- known events -------------------------------------------------------------------------------

variable "scaling_events" {
  type = map(object({
    start     = string
    end       = string
    timezone  = optional(string, "UTC")
    min_tasks = map(number)
  }))
  description = "Known events (a sale, a TV show): from start to end (yyyy-mm-ddThh:mm:ss in timezone) the services of min_tasks keep at least that many tasks."
  default     = {}

  validation {
    condition = alltrue([
      for e in values(var.scaling_events) :
      can(regex("^\\d{4}-\\d{2}-\\d{2}T\\d{2}:\\d{2}:\\d{2}$", e.start))
      && can(regex("^\\d{4}-\\d{2}-\\d{2}T\\d{2}:\\d{2}:\\d{2}$", e.end))
      && try(timecmp("${e.start}Z", "${e.end}Z") < 0, false)
      && length(setsubtract(keys(e.min_tasks), ["api", "worker", "writer"])) == 0
    ])
    error_message = "scaling_events: start < end as yyyy-mm-ddThh:mm:ss, min_tasks keyed by api, worker or writer."
  }
}

# --- common ------------------------------------------------------------------------------

variable "scale_out_cooldown_s" {
  type        = number
  description = "Seconds after a scale-out before the next one."
  default     = 60
}

variable "scale_in_cooldown_s" {
  type        = number
  description = "Seconds after a scale-in before the next one (longer than scale-out: draining takes time)."
  default     = 300
}

variable "tags" {
  type        = map(string)
  description = "Tags added to the alarms."
  default     = {}
}
