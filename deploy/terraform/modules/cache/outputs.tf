output "url_secret_arn" {
  description = "Secret holding the full QF_REDIS_URL (rediss://:<token>@<primary>:6379/0)."
  value       = aws_secretsmanager_secret.url.arn
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
