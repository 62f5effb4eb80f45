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
  description = "Task definition ARNs by process (api, worker, writer, migrate, admin)."
  value       = { for k, t in aws_ecs_task_definition.this : k => t.arn }
}

output "task_role_arns" {
  description = "Task role ARNs by process."
  value       = { for k, r in aws_iam_role.task : k => r.arn }
}

output "log_group_names" {
  description = "Log groups by process."
  value       = { for k, g in aws_cloudwatch_log_group.process : k => g.name }
}

locals {
  run_task = join(" ", [
    "aws ecs run-task",
    "--cluster ${aws_ecs_cluster.this.name}",
    "--launch-type FARGATE",
    "--network-configuration 'awsvpcConfiguration={subnets=[${join(",", var.subnet_ids)}],securityGroups=[${join(",", local.security_groups["admin"])}],assignPublicIp=DISABLED}'",
  ])
}

output "migrate_run_task_command" {
  description = "Runs the one-off migrate task (before the first deploy and after each schema change); the task definition's command is the migrate role."
  value       = "${local.run_task} --task-definition ${aws_ecs_task_definition.this["migrate"].family}"
}

output "admin_run_task_commands" {
  description = "The runbooks' operator commands on AWS, as admin tasks: redrive each queue's DLQ back to it, and rebuild the tallies from Postgres."
  value = merge(
    {
      for k, q in var.queue_names : "redrive_${k}" => format(
        "%s --task-definition %s --overrides '%s'", local.run_task, aws_ecs_task_definition.this["admin"].family,
        jsonencode({ containerOverrides = [{ name = "admin", command = ["admin", "redrive", q] }] }),
      )
    },
    {
      reconcile = format(
        "%s --task-definition %s --overrides '%s'", local.run_task, aws_ecs_task_definition.this["admin"].family,
        jsonencode({ containerOverrides = [{ name = "admin", command = ["admin", "reconcile"] }] }),
      )
    },
  )
}

output "task_policies" {
  description = "The rendered IAM policy of each process's task role (migrate has none)."
  value       = local.task_policies
}

output "container_definitions" {
  description = "The rendered container definitions (JSON) of each process's task definition."
  value       = { for k, t in aws_ecs_task_definition.this : k => t.container_definitions }
}

output "deployments" {
  description = "Minimum healthy and maximum percent of each service's deployments (api, worker, writer)."
  value       = local.deployment
}
