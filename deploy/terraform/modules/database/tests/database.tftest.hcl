# The database module against a mocked AWS provider.

mock_provider "aws" {
  source = "../../tests/mocks"
}

variables {
  name                      = "qf"
  vpc_id                    = "vpc-1"
  subnet_ids                = ["subnet-a", "subnet-b"]
  client_security_group_ids = ["sg-db-clients"]
  kms_key_arn               = "arn:aws:kms:eu-west-1:123456789012:key/1111"
  alarm_topic_arn           = "arn:aws:sns:eu-west-1:123456789012:qf-alarms"
  runbook_base_url          = "https://example.com/runbooks"
}

run "major_version_only_and_verified_tls" {
  command = apply

  assert {
    condition     = aws_db_instance.this.engine_version == "16" && aws_db_instance.this.auto_minor_version_upgrade
    error_message = "a major version only: RDS's minor upgrades leave no drift"
  }

  assert {
    condition     = aws_db_parameter_group.this.family == "postgres16" && anytrue([for p in aws_db_parameter_group.this.parameter : p.name == "rds.force_ssl" && p.value == "1"])
    error_message = "the server refuses plain connections"
  }

  assert {
    condition     = aws_db_instance.this.ca_cert_identifier == "rds-ca-rsa2048-g1"
    error_message = "the server's certificate comes from the CA the image's bundle holds"
  }

  assert {
    condition     = strcontains(aws_secretsmanager_secret.url.description, "sslmode=verify-full&sslrootcert=/app/certs/rds-global-bundle.pem")
    error_message = "the clients verify the certificate and the host name"
  }
}

run "the_password_is_rds_managed_and_never_in_terraform" {
  command = apply

  assert {
    condition     = aws_db_instance.this.manage_master_user_password && aws_db_instance.this.master_user_secret_kms_key_id == var.kms_key_arn
    error_message = "RDS generates, keeps (under the stack's key) and rotates the master password"
  }

  assert {
    condition     = aws_db_instance.this.password == null && aws_db_instance.this.password_wo == null
    error_message = "no password argument: the value never passes through Terraform"
  }

  assert {
    condition     = aws_secretsmanager_secret_version.url.secret_string == "postgresql://queuefront@queuefront-postgres.abcdefghijkl.eu-west-1.rds.amazonaws.com:5432/queuefront?sslmode=verify-full&sslrootcert=/app/certs/rds-global-bundle.pem"
    error_message = "the URL secret is the instance's endpoint, the user and TLS options, and no password (PGPASSWORD comes from the managed secret)"
  }

  assert {
    condition     = output.password_secret_arn == "arn:aws:secretsmanager:eu-west-1:123456789012:secret:rds!db-mocked-AbCdEf"
    error_message = "the module hands on the RDS-managed secret"
  }

  assert {
    condition     = aws_secretsmanager_secret_rotation.master.secret_id == output.password_secret_arn && one(aws_secretsmanager_secret_rotation.master.rotation_rules).automatically_after_days == 30 && aws_secretsmanager_secret_rotation.master.rotate_immediately == false
    error_message = "the managed secret rotates on the schedule given (password_rotation_days), not on every apply"
  }
}

run "only_the_clients_reach_postgres" {
  command = apply

  assert {
    condition     = aws_vpc_security_group_egress_rule.clients_to_db[0].security_group_id == "sg-db-clients" && aws_vpc_security_group_egress_rule.clients_to_db[0].from_port == 5432 && aws_vpc_security_group_egress_rule.clients_to_db[0].referenced_security_group_id == aws_security_group.db.id
    error_message = "the clients' egress on 5432 goes to the database's group only"
  }

  assert {
    condition     = aws_db_instance.this.publicly_accessible == false && aws_db_instance.this.storage_encrypted
    error_message = "private and encrypted"
  }

  assert {
    condition     = strcontains(aws_cloudwatch_metric_alarm.free_storage.alarm_description, "https://example.com/runbooks/postgres-free-storage.md") && strcontains(aws_cloudwatch_metric_alarm.cpu.alarm_description, "https://example.com/runbooks/postgres-cpu.md")
    error_message = "each alarm links its runbook"
  }
}

run "a_minor_version_is_refused" {
  command = plan

  variables {
    engine_major_version = "16.4"
  }

  expect_failures = [var.engine_major_version]
}
