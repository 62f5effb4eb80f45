output "vpc_id" {
  description = "VPC of the stack."
  value       = local.vpc_id
}

output "vpc_cidr" {
  description = "CIDR of the VPC."
  value       = local.vpc_cidr
}

output "private_subnet_ids" {
  description = "Private subnets for tasks, data stores and the VPC link."
  value       = local.private_subnet_ids
}

output "tasks_security_group_id" {
  description = "Security group attached to every task; Redis admits it."
  value       = aws_security_group.tasks.id
}

output "db_clients_security_group_id" {
  description = "Security group attached to the writer and the migrate task; the database admits it."
  value       = aws_security_group.db_clients.id
}

output "availability_zones" {
  description = "AZs of the private subnets (the new VPC's; empty for an existing VPC)."
  value       = local.azs
}
