output "url_secret_arn" {
  description = "Secret holding QF_DATABASE_URL (everything but the password), read from its version: whatever injects it waits for the instance (and the clients' security group rules)."
  value       = aws_secretsmanager_secret_version.url.arn
  depends_on  = [aws_vpc_security_group_ingress_rule.db_from_clients, aws_vpc_security_group_egress_rule.clients_to_db]
}

output "password_secret_arn" {
  description = "The RDS-managed secret of the master user (JSON with username and password; rotated by RDS): the tasks' PGPASSWORD is its password key."
  value       = local.master_secret_arn
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
