output "url_secret_arn" {
  description = "Secret holding the full QF_DATABASE_URL."
  value       = aws_secretsmanager_secret.url.arn
}

output "address" {
  description = "Host name of the instance."
  value       = aws_db_instance.this.address
}

output "instance_identifier" {
  description = "RDS instance identifier."
  value       = aws_db_instance.this.identifier
}

output "security_group_id" {
  description = "Security group of the instance."
  value       = aws_security_group.db.id
}
