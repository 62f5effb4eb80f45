# terraform apply -var-file=examples/production.tfvars
name   = "queuefront"
region = "eu-west-1"
tags   = { owner = "platform", cost-center = "retail" }

availability_zones = ["eu-west-1a", "eu-west-1b", "eu-west-1c"]

image              = "123456789012.dkr.ecr.eu-west-1.amazonaws.com/queuefront:1.0.0"
ecr_repository_arn = "arn:aws:ecr:eu-west-1:123456789012:repository/queuefront"

# The kiosk backend: ~1.6 s per call, 400 calls at once before it degrades.
backend_url             = "https://legacy.internal.example.com"
backend_max_concurrency = 400

settings = {
  routes_file        = "/app/config/routes.toml"
  worker_concurrency = 100
  rate_limit_rps     = 20
  rate_limit_burst   = 40
  log_level          = "INFO"
}

# The longest timeout_s in the route table.
reply_window_s = 20

auth_api_keys_secret_arn = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:queuefront/api-keys-AbCdEf"

services = {
  api     = { cpu = 1024, memory = 2048, desired_count = 3 }
  worker  = { cpu = 1024, memory = 2048, desired_count = 3 }
  writer  = { cpu = 1024, memory = 2048, desired_count = 0 }
  migrate = { cpu = 512, memory = 1024 }
}

# Backlog targets: acceptable latency / processing time per message per task.
# worker: 5 s / (1.6 s / 100) = 312 messages per task. A backend call is an I/O wait, so a
# task holds 100 of them and the floor alone (4 x 100) holds all 400 of the backend's
# slots: a brownout (calls ten times longer) needs ten times the calls in flight, not a
# scale-out that comes a minute late. All workers share backend_max_concurrency (a lease
# in Redis per call), so neither more tasks nor a deploy's overlap (125 %, one task at 4)
# ever puts more than 400 calls on the backend; tasks past the floor add CPU.
# writer: 30 s / 0.0175 s = 1,714 messages per task (the ingest benchmark: 57 messages/s of
# up to 50 items each per writer).
api_min_tasks               = 3
api_max_tasks               = 30
worker_min_tasks            = 4
worker_max_tasks            = 10
worker_acceptable_latency_s = 5
worker_processing_time_s    = 0.016
writer_min_tasks            = 1
writer_max_tasks            = 4
writer_acceptable_latency_s = 30
writer_processing_time_s    = 0.0175
writer_idle_minutes         = 15

# Scaling (docs/operations.md, "Scaling"; python -m bench.scaling runs this policy on the
# seeds' bursts). The workers and the api also scale on the pods' own signal at 10 s
# (worker_target_utilization_percent, api_cpu_target_percent: modules/autoscaling).
# One writer stays warm: from zero the first vote waits for an SQS datapoint (1-3 min
# late) and a task start, against a 30 s target; a warm writer costs ~$36 a month.
# The worker minimum runs on regular Fargate (on_demand_base defaults to
# worker_min_tasks: a Spot reclaim must not take the floor); tasks above it may be Spot.
# The fast alarms act on one 10 s datapoint over their threshold (the default waits for
# two): the signal is already every pod's 5 s samples averaged over 10 s, and a task start
# (30-60 s) dwarfs the 10 s saved, which still matters — on the hyper-scale swing without
# its scheduled event the api keeps up (nothing refused, 1 M edge errors fewer), at the
# price of a larger first step on a short transient (the kiosk's step: 9 workers where 6
# did, for 15 minutes). bench/scaling: docs/benchmarks.md, "Scaling".
signal_datapoints = 1

redis_node_type   = "cache.r7g.large"
redis_replicas    = 2
db_instance_class = "db.r6g.large"

domain_names               = ["api.example.com"]
cloudfront_certificate_arn = "arn:aws:acm:us-east-1:123456789012:certificate/11111111-2222-3333-4444-555555555555"
waf_rate_limit             = 3000

# API Gateway's throttles bound what reaches the api; the account's own quota (10,000
# requests/s per Region by default, Service Quotas L-8A5B8E43) bounds them all. At the
# seeds' scale the old 1,000 requests/s default and 2,000 votes/s were the bottleneck
# (bench/scaling: the TV vote's final call is 12,000 votes/s, the hyper-scale swing
# 15,000 requests/s on $default): the routes now take what the api tier scales to, and
# the account quota must be raised to match before such an event (docs/operations.md).
default_throttle = { burst = 5000, rate = 20000 }

route_throttles = {
  "POST /api/login"                 = { burst = 400, rate = 200 }
  "POST /api/polls/{poll_id}/votes" = { burst = 5000, rate = 15000 }
}

alarm_emails     = ["oncall@example.com"]
runbook_base_url = "https://github.com/example/queuefront/blob/main/docs/runbooks"
