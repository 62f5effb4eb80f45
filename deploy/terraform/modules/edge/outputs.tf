output "client_ip_header" {
  description = "Header CloudFront sets to the viewer's address on every request it forwards (the api's QF_CLIENT_IP_HEADER)."
  value       = local.client_ip_header
}

output "viewer_address_function_arn" {
  description = "The CloudFront Function that sets the client's address header."
  value       = aws_cloudfront_function.viewer_address.arn
}

output "default_behavior_functions" {
  description = "Function associations of the distribution's default behaviour."
  value       = one(aws_cloudfront_distribution.this.default_cache_behavior).function_association
}

output "behaviors" {
  description = "Every cache behaviour of the distribution (default first, then the edge-cached paths) with its function associations and cache/origin request policy ids."
  value = concat(
    [merge(one(aws_cloudfront_distribution.this.default_cache_behavior), { path_pattern = "*" })],
    aws_cloudfront_distribution.this.ordered_cache_behavior,
  )
}

output "cloudfront_domain_name" {
  description = "Domain name of the distribution: the public entry point."
  value       = aws_cloudfront_distribution.this.domain_name
}

output "cloudfront_distribution_id" {
  description = "Distribution id (for invalidations and metrics)."
  value       = aws_cloudfront_distribution.this.id
}

output "api_endpoint" {
  description = "API Gateway stage URL behind CloudFront (its WAF refuses whatever did not come through CloudFront)."
  value       = "https://${local.api_domain}/${aws_api_gateway_stage.live.stage_name}"
}

output "api_id" {
  description = "API Gateway REST API id."
  value       = aws_api_gateway_rest_api.this.id
}

output "api_name" {
  description = "API Gateway REST API name (CloudWatch dimension ApiName)."
  value       = aws_api_gateway_rest_api.this.name
}

output "stage_name" {
  description = "The API's stage (CloudWatch dimension Stage; CloudFront's origin path)."
  value       = aws_api_gateway_stage.live.stage_name
}

output "openapi" {
  description = "The API as API Gateway imports it (OpenAPI 3 with x-amazon-apigateway-integration)."
  value       = local.openapi
}

output "api_web_acl_arn" {
  description = "The regional WAF web ACL on the API's stage (origin secret or 403)."
  value       = aws_wafv2_web_acl.api.arn
}

output "api_web_acl_name" {
  description = "Name of the API's web ACL (CloudWatch dimension WebACL of its blocked-requests metric)."
  value       = aws_wafv2_web_acl.api.name
}

output "alb_security_group_id" {
  description = "Security group of the internal ALB (the api tasks admit it)."
  value       = aws_security_group.alb.id
}

output "alb_arn_suffix" {
  description = "ARN suffix of the ALB (CloudWatch dimension LoadBalancer)."
  value       = aws_lb.api.arn_suffix
}

output "target_group_arn" {
  description = "Target group of the api service."
  value       = aws_lb_target_group.api.arn
}

output "target_group_arn_suffix" {
  description = "ARN suffix of the target group (CloudWatch dimension TargetGroup)."
  value       = aws_lb_target_group.api.arn_suffix
}

output "alb_request_count_resource_label" {
  description = "resource_label for the ALBRequestCountPerTarget scaling metric."
  value       = "${aws_lb.api.arn_suffix}/${aws_lb_target_group.api.arn_suffix}"
}

output "web_acl_arn" {
  description = "WAF web ACL on the distribution (CloudFront scope)."
  value       = aws_wafv2_web_acl.this.arn
}

output "listener_arn" {
  description = "The ALB listener (the api service registers with its target group after it exists)."
  value       = aws_lb_listener.api.arn
}

output "origin_secret_arn" {
  description = "Secrets Manager secret with the origin header's value."
  value       = aws_secretsmanager_secret.origin.arn
}

output "listener_rule_arns" {
  description = "The listener rules in front of the api's target group (the forward rule that makes the group usable by ECS, and the probe block): the api service is created after them."
  value       = [aws_lb_listener_rule.from_cloudfront.arn, aws_lb_listener_rule.probes_not_public.arn]
}

output "deregistration_delay_s" {
  description = "Seconds the ALB lets in-flight requests finish on a deregistered api task."
  value       = tonumber(aws_lb_target_group.api.deregistration_delay)
}
