# The cache module against a mocked AWS provider.

mock_provider "aws" {
  source = "../../tests/mocks"
}

variables {
  name                      = "qf"
  vpc_id                    = "vpc-1"
  subnet_ids                = ["subnet-a", "subnet-b"]
  client_security_group_ids = ["sg-tasks"]
  kms_key_arn               = "arn:aws:kms:eu-west-1:123456789012:key/1111"
  alarm_topic_arn           = "arn:aws:sns:eu-west-1:123456789012:qf-alarms"
  runbook_base_url          = "https://example.com/runbooks"
}

run "tls_auth_and_narrow_paths" {
  command = apply

  assert {
    condition     = aws_elasticache_replication_group.this.transit_encryption_enabled && aws_elasticache_replication_group.this.transit_encryption_mode == "required" && aws_elasticache_replication_group.this.at_rest_encryption_enabled
    error_message = "TLS required, encrypted at rest"
  }

  assert {
    condition     = aws_elasticache_replication_group.this.auth_token == "Mocked0Secret0Value0With0Enough0Characters0"
    error_message = "the auth token is the one kept in Secrets Manager"
  }

  assert {
    condition     = aws_vpc_security_group_egress_rule.clients_to_redis[0].security_group_id == "sg-tasks" && aws_vpc_security_group_egress_rule.clients_to_redis[0].from_port == 6379 && aws_vpc_security_group_egress_rule.clients_to_redis[0].referenced_security_group_id == aws_security_group.redis.id
    error_message = "the tasks' egress on 6379 goes to Redis's group only"
  }

  assert {
    condition     = strcontains(aws_secretsmanager_secret_version.url.secret_string, "rediss://") && strcontains(aws_secretsmanager_secret_version.url.secret_string, "@master.queuefront-redis.abcdef.euw1.cache.amazonaws.com:6379/0")
    error_message = "QF_REDIS_URL is TLS to the primary endpoint"
  }

  assert {
    condition     = strcontains(aws_cloudwatch_metric_alarm.memory.alarm_description, "https://example.com/runbooks/redis-memory.md")
    error_message = "the alarm links its runbook"
  }
}

run "exactly_once_keys_are_never_evicted" {
  command = apply

  assert {
    condition     = aws_elasticache_replication_group.this.parameter_group_name == aws_elasticache_parameter_group.this.name
    error_message = "the replication group uses the module's parameter group, not a default one (volatile-lru)"
  }

  assert {
    condition     = [for p in aws_elasticache_parameter_group.this.parameter : p.value if p.name == "maxmemory-policy"] == ["noeviction"]
    error_message = "maxmemory-policy is noeviction: claims, idempotency records, tombstones and tally markers are never evicted"
  }

  assert {
    condition = (
      aws_cloudwatch_metric_alarm.evictions.metric_name == "Evictions" && aws_cloudwatch_metric_alarm.evictions.threshold == 0 &&
      aws_cloudwatch_metric_alarm.evictions.comparison_operator == "GreaterThanThreshold" &&
      aws_cloudwatch_metric_alarm.evictions.alarm_actions == toset([var.alarm_topic_arn])
    )
    error_message = "any eviction pages"
  }

  assert {
    condition     = aws_cloudwatch_metric_alarm.memory.metric_name == "DatabaseMemoryUsagePercentage" && aws_cloudwatch_metric_alarm.memory.threshold == 80 && aws_cloudwatch_metric_alarm.memory.alarm_actions == toset([var.alarm_topic_arn])
    error_message = "memory over 80% pages, before a full Redis refuses writes"
  }
}
