# queuefront on AWS: CloudFront + WAF -> API Gateway (REST API, regional WAF, VPC link ->
# internal NLB) -> internal ALB ->
# api tasks -> SQS (high, normal, ingest) -> worker / writer tasks -> legacy backend /
# Postgres, with Redis for replies, cache and tallies; every service autoscaled on load.

locals {
  # The api pods' scaling signal (service/scaling_signal.py): namespace, dimension and metric
  # names in one file, which the task definition (what the api writes) and the alarms (what
  # they read) both take; the dimension's value is the stack's name.
  scaling_signal_spec = jsondecode(file("${path.module}/scaling_signal.json"))
  scaling_signal = {
    namespace  = local.scaling_signal_spec.namespace
    dimensions = { (local.scaling_signal_spec.dimension) = var.name }
    metrics    = local.scaling_signal_spec.metrics
  }

  # Resources that the provider's default_tags do not reach (Cloud Control) take these.
  tags = merge({ project = "queuefront", stack = var.name }, var.tags)

  # Derived queue settings (variables.tf, queues).
  reply_window_s = var.reply_window_s

  queue_defaults = {
    high   = { visibility_timeout_s = 60, message_retention_s = 3600, oldest_age_alarm_s = floor(0.75 * local.reply_window_s) }
    normal = { visibility_timeout_s = 60, message_retention_s = 3600, oldest_age_alarm_s = floor(0.75 * local.reply_window_s) }
    ingest = { visibility_timeout_s = 120, message_retention_s = 345600, oldest_age_alarm_s = 300 }
  }

  # The worker's deploy overlap: by default the smallest maximum percent that lets a deploy
  # at worker_min_tasks start one new task before stopping an old one (ECS rounds the
  # maximum down), so a deploy never drops below the backend's share; the overlap cannot
  # overload the backend: the workers share backend_max_concurrency (QF_BACKEND_MAX_CONCURRENCY).
  worker_deployment_maximum_percent = coalesce(
    var.worker_deployment_maximum_percent,
    ceil(100 * (var.worker_min_tasks + 1) / var.worker_min_tasks),
  )

  queues = {
    for k, q in var.queues : k => {
      name                 = q.name
      visibility_timeout_s = coalesce(q.visibility_timeout_s, local.queue_defaults[k].visibility_timeout_s)
      message_retention_s  = coalesce(q.message_retention_s, local.queue_defaults[k].message_retention_s)
      oldest_age_alarm_s   = coalesce(q.oldest_age_alarm_s, local.queue_defaults[k].oldest_age_alarm_s)
    }
  }
}

module "kms" {
  source = "./modules/kms"

  name = var.name
}

module "network" {
  source = "./modules/network"

  name                 = var.name
  create_vpc           = var.create_vpc
  vpc_id               = var.vpc_id
  private_subnet_ids   = var.private_subnet_ids
  vpc_cidr             = var.vpc_cidr
  availability_zones   = var.availability_zones
  single_nat_gateway   = var.single_nat_gateway
  enable_vpc_endpoints = var.enable_vpc_endpoints
  kms_key_arn          = module.kms.key_arn
}

module "observability" {
  source = "./modules/observability"

  name                    = var.name
  kms_key_arn             = module.kms.key_arn
  alarm_emails            = var.alarm_emails
  cluster_name            = module.compute.cluster_name
  service_names           = module.compute.service_names
  alb_arn_suffix          = module.edge.alb_arn_suffix
  target_group_arn_suffix = module.edge.target_group_arn_suffix
  api_name                = module.edge.api_name
  api_stage               = module.edge.stage_name
  api_web_acl_name        = module.edge.api_web_acl_name
  alarm_subscriptions     = var.alarm_subscriptions
  queue_names             = module.queues.queue_names
  dlq_names               = module.queues.dlq_names
  ingest_lag_threshold_s  = 2 * var.writer_acceptable_latency_s
  runbook_base_url        = var.runbook_base_url
}

module "queues" {
  source = "./modules/queues"

  queues            = local.queues
  dlq_suffix        = var.dlq_suffix
  max_receive_count = var.max_receive_count
  max_message_bytes = var.settings.max_message_bytes
  kms_key_arn       = module.kms.key_arn
  alarm_topic_arn   = module.observability.alarm_topic_arn
  runbook_base_url  = var.runbook_base_url
  tags              = local.tags
}

module "cache" {
  source = "./modules/cache"

  name                      = var.name
  vpc_id                    = module.network.vpc_id
  subnet_ids                = module.network.private_subnet_ids
  client_security_group_ids = [module.network.tasks_security_group_id]
  node_type                 = var.redis_node_type
  replicas                  = var.redis_replicas
  kms_key_arn               = module.kms.key_arn
  log_retention_days        = var.log_retention_days
  alarm_topic_arn           = module.observability.alarm_topic_arn
  runbook_base_url          = var.runbook_base_url
}

module "database" {
  source = "./modules/database"

  name                      = var.name
  vpc_id                    = module.network.vpc_id
  subnet_ids                = module.network.private_subnet_ids
  client_security_group_ids = [module.network.db_clients_security_group_id]
  instance_class            = var.db_instance_class
  allocated_storage_gb      = var.db_allocated_storage_gb
  multi_az                  = var.db_multi_az
  backup_retention_days     = var.db_backup_retention_days
  deletion_protection       = var.db_deletion_protection
  password_rotation_days    = var.db_password_rotation_days
  kms_key_arn               = module.kms.key_arn
  alarm_topic_arn           = module.observability.alarm_topic_arn
  runbook_base_url          = var.runbook_base_url
}

module "edge" {
  source = "./modules/edge"
  providers = {
    aws           = aws
    aws.us_east_1 = aws.us_east_1
  }

  name                          = var.name
  vpc_id                        = module.network.vpc_id
  subnet_ids                    = module.network.private_subnet_ids
  api_port                      = var.settings.http_port
  api_probe_port                = var.settings.metrics_port
  alb_certificate_arn           = var.alb_certificate_arn
  alb_certificate_domain        = var.alb_certificate_domain
  deregistration_delay_s        = ceil(local.reply_window_s) + 15
  default_throttle              = var.default_throttle
  route_throttles               = var.route_throttles
  edge_cached_paths             = var.edge_cached_paths
  edge_cache_query_strings      = var.edge_cache_query_strings
  price_class                   = var.price_class
  domain_names                  = var.domain_names
  cloudfront_certificate_arn    = var.cloudfront_certificate_arn
  cloudfront_log_bucket         = var.cloudfront_log_bucket
  waf_rate_limit                = var.waf_rate_limit
  origin_secret_version         = var.origin_secret_version
  origin_secret_accept_previous = var.origin_secret_accept_previous
  kms_key_arn                   = module.kms.key_arn
  log_retention_days            = var.log_retention_days
  manage_api_gateway_account    = var.manage_api_gateway_account

  # votes straight from API Gateway to the ingest queue (off by default)
  ingest_direct = var.ingest_direct ? {
    route_key  = var.ingest_direct_route
    route_name = var.ingest_direct_route_name
    queue_name = module.queues.queue_names["ingest"]
    queue_arn  = module.queues.queue_arns["ingest"]
  } : null
}

module "compute" {
  source = "./modules/compute"

  name                         = var.name
  image                        = var.image
  ecr_repository_arn           = var.ecr_repository_arn
  cpu_architecture             = var.cpu_architecture
  vpc_id                       = module.network.vpc_id
  subnet_ids                   = module.network.private_subnet_ids
  tasks_security_group_id      = module.network.tasks_security_group_id
  db_clients_security_group_id = module.network.db_clients_security_group_id
  alb_security_group_id        = module.edge.alb_security_group_id
  api_target_group_arn         = module.edge.target_group_arn
  api_listener_arn             = module.edge.listener_arn
  alb_arn_suffix               = module.edge.alb_arn_suffix
  target_group_arn_suffix      = module.edge.target_group_arn_suffix
  runbook_base_url             = var.runbook_base_url
  service_prerequisites = {
    listener_rules = module.edge.listener_rule_arns
    network        = module.network.task_egress_ids
  }

  queue_names       = module.queues.queue_names
  queue_arns        = module.queues.queue_arns
  dlq_arns          = module.queues.dlq_arns
  dlq_names         = module.queues.dlq_names
  dlq_suffix        = var.dlq_suffix
  max_receive_count = var.max_receive_count
  visibility_timeout_s = {
    worker = max(local.queues["high"].visibility_timeout_s, local.queues["normal"].visibility_timeout_s)
    writer = local.queues["ingest"].visibility_timeout_s
  }

  # The secrets' versions (not their containers): the services wait for the values.
  redis_url_secret_arn            = module.cache.url_secret_arn
  database_url_secret_arn         = module.database.url_secret_arn
  database_password_secret_arn    = module.database.password_secret_arn
  auth_api_keys_secret_arn        = var.auth_api_keys_secret_arn
  auth_jwt_secret_arn             = var.auth_jwt_secret_arn
  auth_invalidate_keys_secret_arn = var.auth_invalidate_keys_secret_arn
  auth_disabled                   = var.auth_disabled
  client_ip_header                = module.edge.client_ip_header
  backend_url                     = var.backend_url
  backend_max_concurrency         = var.backend_max_concurrency
  backend_cidr_blocks             = var.backend_cidr_blocks
  kms_key_arn                     = module.kms.key_arn

  settings                                  = var.settings
  wait_for_steady_state                     = var.wait_for_steady_state
  worker_deployment_maximum_percent         = local.worker_deployment_maximum_percent
  worker_deployment_minimum_healthy_percent = var.worker_deployment_minimum_healthy_percent
  services                                  = var.services
  use_fargate_spot                          = var.use_fargate_spot
  on_demand_base                            = coalesce(var.on_demand_base, var.worker_min_tasks)
  stop_timeout_s                            = var.stop_timeout_s
  log_retention_days                        = var.log_retention_days
  enable_metrics_collector                  = var.enable_metrics_collector
  scaling_signal = {
    namespace  = local.scaling_signal.namespace
    dimensions = local.scaling_signal.dimensions
    interval_s = var.scaling_signal_interval_s
  }
}

module "autoscaling" {
  source = "./modules/autoscaling"

  name         = var.name
  cluster_name = module.compute.cluster_name

  api_service_name    = module.compute.service_names["api"]
  worker_service_name = module.compute.service_names["worker"]
  writer_service_name = module.compute.service_names["writer"]

  # The worker drains high and normal; the writer drains ingest.
  worker_queue_names = [module.queues.queue_names["high"], module.queues.queue_names["normal"]]
  writer_queue_name  = module.queues.queue_names["ingest"]

  api_min_tasks           = var.api_min_tasks
  api_max_tasks           = var.api_max_tasks
  api_cpu_target_percent  = var.api_cpu_target_percent
  api_requests_per_target = var.api_requests_per_target
  alb_resource_label      = module.edge.alb_request_count_resource_label

  worker_min_tasks                          = var.worker_min_tasks
  worker_max_tasks                          = var.worker_max_tasks
  worker_concurrency                        = var.settings.worker_concurrency
  backend_max_concurrency                   = var.backend_max_concurrency
  worker_deployment_maximum_percent         = local.worker_deployment_maximum_percent
  worker_deployment_minimum_healthy_percent = var.worker_deployment_minimum_healthy_percent
  worker_acceptable_latency_s               = var.worker_acceptable_latency_s
  worker_processing_time_s                  = var.worker_processing_time_s
  worker_target_utilization_percent         = var.worker_target_utilization_percent

  writer_min_tasks            = var.writer_min_tasks
  writer_max_tasks            = var.writer_max_tasks
  writer_acceptable_latency_s = var.writer_acceptable_latency_s
  writer_processing_time_s    = var.writer_processing_time_s
  writer_idle_minutes         = var.writer_idle_minutes
  runbook_base_url            = var.runbook_base_url

  scaling_signal    = local.scaling_signal
  signal_period_s   = var.signal_period_s
  signal_datapoints = var.signal_datapoints
  scaling_events    = var.scaling_events
}
