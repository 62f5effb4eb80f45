output "url_secret_arn" {
  description = "Secret holding the full QF_REDIS_URL (rediss://:<token>@<primary>:6379/0), taken from its version: whatever injects it is created after the value exists (and the tasks' path to Redis is open)."
  value       = aws_secretsmanager_secret_version.url.arn
  depends_on  = [aws_vpc_security_group_ingress_rule.redis_from_tasks, aws_vpc_security_group_egress_rule.clients_to_redis]
}

output "auth_token_secret_arn" {
  description = "Secret holding the bare auth token."
  value       = aws_secretsmanager_secret.auth_token.arn
}

output "primary_endpoint_address" {
  description = "Primary endpoint of the replication group."
  value       = aws_elasticache_replication_group.this.primary_endpoint_address
}

output "replication_group_id" {
  description = "Replication group id."
  value       = aws_elasticache_replication_group.this.id
}

output "security_group_id" {
  description = "Security group of the replication group."
  value       = aws_security_group.redis.id
}

output "parameter_group_name" {
  description = "The replication group's parameter group (maxmemory-policy noeviction)."
  value       = aws_elasticache_parameter_group.this.name
}
