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

run "the_url_follows_the_endpoint" {
  command = apply

  assert {
    condition     = terraform_data.endpoint.input == "queuefront-postgres.abcdefghijkl.eu-west-1.rds.amazonaws.com:5432"
    error_message = "the URL secret is keyed on the instance's address and port (a new endpoint rewrites it)"
  }

  assert {
    condition     = aws_secretsmanager_secret_version.url.secret_string_wo_version == var.password_version
    error_message = "the URL is written with the password's version"
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
