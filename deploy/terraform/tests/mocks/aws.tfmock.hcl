# Mocked AWS for `terraform test` (mock_provider "aws" { source = ".../tests/mocks" }): the
# account, region and partition the assertions expect, and values of the right shape for
# the computed attributes that the configuration passes on (ARNs, endpoints), so that the
# provider's own validation of those arguments accepts them.

mock_data "aws_region" {
  defaults = { name = "eu-west-1" }
}

mock_data "aws_caller_identity" {
  defaults = { account_id = "123456789012" }
}

mock_data "aws_partition" {
  defaults = { partition = "aws" }
}

mock_resource "aws_kms_key" {
  defaults = { arn = "arn:aws:kms:eu-west-1:123456789012:key/00000000-0000-0000-0000-000000000000", key_id = "00000000-0000-0000-0000-000000000000" }
}

mock_resource "aws_sns_topic" {
  defaults = { arn = "arn:aws:sns:eu-west-1:123456789012:queuefront-alarms" }
}

mock_resource "aws_cloudwatch_log_group" {
  defaults = { arn = "arn:aws:logs:eu-west-1:123456789012:log-group:mocked" }
}

mock_resource "aws_secretsmanager_secret" {
  defaults = { arn = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:mocked-AbCdEf", id = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:mocked-AbCdEf" }
}

mock_resource "aws_iam_role" {
  defaults = { arn = "arn:aws:iam::123456789012:role/mocked" }
}

mock_resource "aws_lb" {
  defaults = { arn = "arn:aws:elasticloadbalancing:eu-west-1:123456789012:loadbalancer/app/queuefront-api/0123456789abcdef", arn_suffix = "app/queuefront-api/0123456789abcdef" }
}

mock_resource "aws_lb_target_group" {
  defaults = { arn = "arn:aws:elasticloadbalancing:eu-west-1:123456789012:targetgroup/queuefront-api/0123456789abcdef", arn_suffix = "targetgroup/queuefront-api/0123456789abcdef" }
}

mock_resource "aws_lb_listener" {
  defaults = { arn = "arn:aws:elasticloadbalancing:eu-west-1:123456789012:listener/app/queuefront-api/0123456789abcdef/fedcba9876543210" }
}

mock_resource "aws_wafv2_web_acl" {
  defaults = { arn = "arn:aws:wafv2:us-east-1:123456789012:global/webacl/queuefront/00000000-0000-0000-0000-000000000000" }
}

mock_resource "aws_cloudfront_function" {
  defaults = { arn = "arn:aws:cloudfront::123456789012:function/queuefront-viewer-address" }
}

mock_resource "aws_api_gateway_rest_api" {
  defaults = { id = "abcdef1234", root_resource_id = "root0000" }
}

mock_resource "aws_api_gateway_stage" {
  defaults = { arn = "arn:aws:apigateway:eu-west-1::/restapis/abcdef1234/stages/live" }
}

mock_resource "aws_api_gateway_vpc_link" {
  defaults = { id = "vpclink1" }
}

mock_resource "aws_wafv2_web_acl_association" {
  defaults = { id = "association" }
}

mock_resource "aws_ecs_cluster" {
  defaults = { arn = "arn:aws:ecs:eu-west-1:123456789012:cluster/queuefront", id = "arn:aws:ecs:eu-west-1:123456789012:cluster/queuefront" }
}

mock_resource "aws_ecs_task_definition" {
  defaults = { arn = "arn:aws:ecs:eu-west-1:123456789012:task-definition/queuefront:1" }
}

mock_resource "aws_cloudwatch_event_rule" {
  defaults = { arn = "arn:aws:events:eu-west-1:123456789012:rule/queuefront-ecs-deployment-failed" }
}

mock_resource "aws_appautoscaling_policy" {
  defaults = { arn = "arn:aws:autoscaling:eu-west-1:123456789012:scalingPolicy:00000000-0000-0000-0000-000000000000:resource/ecs/service/queuefront/queuefront-worker:policyName/mocked" }
}

mock_resource "aws_cloudcontrolapi_resource" {
  defaults = { id = "https://sqs.eu-west-1.amazonaws.com/123456789012/mocked" }
}

mock_resource "aws_db_instance" {
  defaults = {
    address            = "queuefront-postgres.abcdefghijkl.eu-west-1.rds.amazonaws.com"
    port               = 5432
    id                 = "db-ABCDEFGHIJKLMNOPQRSTUVWXYZ"
    master_user_secret = [{ secret_arn = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:rds!db-mocked-AbCdEf", kms_key_id = "arn:aws:kms:eu-west-1:123456789012:key/1111", secret_status = "active" }]
  }
}

mock_resource "aws_secretsmanager_secret_version" {
  defaults = { arn = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:mocked-AbCdEf" }
}

mock_resource "aws_elasticache_replication_group" {
  defaults = { primary_endpoint_address = "master.queuefront-redis.abcdef.euw1.cache.amazonaws.com" }
}

# Secrets: values of the shape ElastiCache's auth token and the headers accept.
mock_data "aws_secretsmanager_random_password" {
  defaults = { random_password = "Mocked0Password0With0Enough0Characters00" }
}

mock_data "aws_secretsmanager_secret_version" {
  defaults = { secret_string = "Mocked0Secret0Value0With0Enough0Characters0" }
}

# What a service runs after the apply: the task definition the apply registered (a
# rolled-back deployment is simulated by overriding it).
mock_data "aws_ecs_service" {
  defaults = { task_definition = "arn:aws:ecs:eu-west-1:123456789012:task-definition/queuefront:1" }
}
