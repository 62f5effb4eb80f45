# The network module, planned with a mocked AWS provider.

mock_provider "aws" {
  override_during = plan
  source          = "../../tests/mocks"
}

override_resource {
  target          = aws_security_group.tasks
  override_during = plan
  values          = { id = "sg-tasks" }
}

variables {
  name               = "qf"
  availability_zones = ["eu-west-1a", "eu-west-1b", "eu-west-1c"]
  kms_key_arn        = "arn:aws:kms:eu-west-1:123456789012:key/1111"
}

run "subnets_in_the_named_zones" {
  command = plan

  assert {
    condition     = [for s in aws_subnet.private : s.availability_zone] == ["eu-west-1a", "eu-west-1b", "eu-west-1c"]
    error_message = "one private subnet per named AZ, in order"
  }

  assert {
    condition     = length(aws_nat_gateway.this) == 3
    error_message = "one NAT gateway per AZ"
  }
}

run "tasks_egress_is_https_only_here" {
  command = plan

  assert {
    condition     = aws_vpc_security_group_egress_rule.tasks_https.from_port == 443 && aws_vpc_security_group_egress_rule.tasks_https.to_port == 443 && aws_vpc_security_group_egress_rule.tasks_https.ip_protocol == "tcp"
    error_message = "the tasks' group allows HTTPS out; Redis, Postgres and the backend are opened by their modules"
  }

  assert {
    condition     = length(aws_security_group.tasks.egress) == 0
    error_message = "no inline all-ports egress on the tasks' group"
  }
}

run "a_new_vpc_needs_named_zones" {
  command = plan

  variables {
    availability_zones = []
  }

  expect_failures = [aws_vpc.this]
}
