output "cluster_name" {
  description = "ECS cluster name."
  value       = aws_ecs_cluster.this.name
}

output "cluster_arn" {
  description = "ECS cluster ARN."
  value       = aws_ecs_cluster.this.arn
}

output "service_names" {
  description = "ECS service names by process (api, worker, writer)."
  value       = { for k, s in aws_ecs_service.this : k => s.name }
}

output "task_definition_arns" {
  description = "Task definition ARNs by process (api, worker, writer, migrate)."
  value       = { for k, t in aws_ecs_task_definition.this : k => t.arn }
}

output "task_role_arns" {
  description = "Task role ARNs by process."
  value       = merge({ for k, r in aws_iam_role.task : k => r.arn }, { migrate = aws_iam_role.migrate.arn })
}

output "log_group_names" {
  description = "Log groups by process."
  value       = { for k, g in aws_cloudwatch_log_group.process : k => g.name }
}

output "migrate_run_task_command" {
  description = "Runs the one-off migrate task (before the first deploy and after each schema change)."
  value = join(" ", [
    "aws ecs run-task",
    "--cluster ${aws_ecs_cluster.this.name}",
    "--task-definition ${aws_ecs_task_definition.this["migrate"].family}",
    "--launch-type FARGATE",
    "--network-configuration 'awsvpcConfiguration={subnets=[${join(",", var.subnet_ids)}],securityGroups=[${join(",", local.security_groups["migrate"])}],assignPublicIp=DISABLED}'",
  ])
}
