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

output "task_egress_ids" {
  description = "What a task needs to reach ECR, Secrets Manager, SQS and logs (private routes through NAT, route table associations, VPC endpoints, the tasks' HTTPS egress): services are created after all of it, or their first tasks cannot pull the image."
  value = concat(
    aws_route.private_nat[*].id,
    aws_route_table_association.private[*].id,
    aws_nat_gateway.this[*].id,
    aws_route.public_internet[*].id, # the NAT gateways' own way out
    aws_route_table_association.public[*].id,
    [for e in aws_vpc_endpoint.interface : e.id],
    aws_vpc_endpoint.s3[*].id,
    [aws_vpc_security_group_egress_rule.tasks_https.id],
  )
}
