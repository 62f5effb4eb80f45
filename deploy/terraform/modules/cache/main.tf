# ElastiCache for Redis: one shard, a primary and replicas in several AZs with automatic
# failover, TLS in transit, encrypted at rest, an auth token kept in Secrets Manager, and
# reachable only from the tasks' security group.
#
# The processes get the whole connection URL (rediss://:<token>@<primary>:6379/0) as
# QF_REDIS_URL from a second secret, injected by ECS.

resource "aws_security_group" "redis" {
  name        = "${var.name}-redis"
  description = "Redis: TLS port from the queuefront tasks only"
  vpc_id      = var.vpc_id
  tags        = var.tags
}

resource "aws_vpc_security_group_ingress_rule" "redis_from_tasks" {
  # count, not for_each: the group ids are only known after apply.
  count = length(var.client_security_group_ids)

  security_group_id            = aws_security_group.redis.id
  description                  = "Redis over TLS from the tasks"
  ip_protocol                  = "tcp"
  from_port                    = 6379
  to_port                      = 6379
  referenced_security_group_id = var.client_security_group_ids[count.index]
}

resource "aws_elasticache_subnet_group" "this" {
  name       = "${var.name}-redis"
  subnet_ids = var.subnet_ids
  tags       = var.tags
}

# --- auth token --------------------------------------------------------------------------
# Generated ephemerally and written write-only: the generator's value never enters the
# state. ElastiCache has no write-only token argument, so the token is read back from the
# secret for auth_token; keep the state encrypted (README).

ephemeral "aws_secretsmanager_random_password" "auth_token" {
  password_length     = 64
  exclude_punctuation = true
}

resource "aws_secretsmanager_secret" "auth_token" {
  name                    = "${var.name}/redis/auth-token"
  description             = "ElastiCache auth token of ${var.name}"
  kms_key_id              = var.kms_key_arn
  recovery_window_in_days = 7
  tags                    = var.tags
  #checkov:skip=CKV2_AWS_57:ElastiCache has no managed rotation for auth tokens; rotate by bumping auth_token_version (README)
}

resource "aws_secretsmanager_secret_version" "auth_token" {
  secret_id                = aws_secretsmanager_secret.auth_token.id
  secret_string_wo         = ephemeral.aws_secretsmanager_random_password.auth_token.random_password
  secret_string_wo_version = var.auth_token_version
}

data "aws_secretsmanager_secret_version" "auth_token" {
  secret_id  = aws_secretsmanager_secret.auth_token.id
  depends_on = [aws_secretsmanager_secret_version.auth_token]
}

# --- replication group -------------------------------------------------------------------

resource "aws_cloudwatch_log_group" "slow" {
  name              = "/elasticache/${var.name}/slow-log"
  retention_in_days = var.log_retention_days
  kms_key_id        = var.kms_key_arn
  tags              = var.tags
}

resource "aws_elasticache_replication_group" "this" {
  replication_group_id = "${var.name}-redis"
  description          = "queuefront replies, cache, tallies, rate limits"

  engine               = "redis"
  engine_version       = var.engine_version
  node_type            = var.node_type
  parameter_group_name = var.parameter_group_name
  port                 = 6379
  num_cache_clusters   = 1 + var.replicas

  automatic_failover_enabled = true
  multi_az_enabled           = true
  subnet_group_name          = aws_elasticache_subnet_group.this.name
  security_group_ids         = [aws_security_group.redis.id]

  at_rest_encryption_enabled = true
  kms_key_id                 = var.kms_key_arn
  transit_encryption_enabled = true
  transit_encryption_mode    = "required"
  auth_token                 = data.aws_secretsmanager_secret_version.auth_token.secret_string
  auth_token_update_strategy = "ROTATE"

  snapshot_retention_limit   = var.snapshot_retention_days
  auto_minor_version_upgrade = true
  apply_immediately          = false

  log_delivery_configuration {
    destination      = aws_cloudwatch_log_group.slow.name
    destination_type = "cloudwatch-logs"
    log_format       = "json"
    log_type         = "slow-log"
  }

  tags = var.tags
}

# --- the URL the processes read ----------------------------------------------------------

resource "aws_secretsmanager_secret" "url" {
  name                    = "${var.name}/redis/url"
  description             = "QF_REDIS_URL of ${var.name}: rediss://:<token>@<primary>:6379/0"
  kms_key_id              = var.kms_key_arn
  recovery_window_in_days = 7
  tags                    = var.tags
  #checkov:skip=CKV2_AWS_57:derived from the auth token secret and the endpoint; it changes with auth_token_version, not by rotation
}

resource "aws_secretsmanager_secret_version" "url" {
  secret_id     = aws_secretsmanager_secret.url.id
  secret_string = "rediss://:${data.aws_secretsmanager_secret_version.auth_token.secret_string}@${aws_elasticache_replication_group.this.primary_endpoint_address}:6379/0"
}

resource "aws_cloudwatch_metric_alarm" "memory" {
  alarm_name          = "${var.name}-redis-memory"
  alarm_description   = "Redis memory over 80%: replies, cache and idempotency keys may be evicted."
  namespace           = "AWS/ElastiCache"
  metric_name         = "DatabaseMemoryUsagePercentage"
  dimensions          = { ReplicationGroupId = aws_elasticache_replication_group.this.id }
  statistic           = "Maximum"
  period              = 300
  evaluation_periods  = 2
  comparison_operator = "GreaterThanThreshold"
  threshold           = 80
  treat_missing_data  = "missing"
  alarm_actions       = [var.alarm_topic_arn]
  ok_actions          = [var.alarm_topic_arn]
  tags                = var.tags
}
