# RDS for PostgreSQL: private, encrypted, Multi-AZ, automated backups, TLS required, a
# generated master password that never enters the Terraform state, and reachable only from
# the database clients' group (the writer and the migrate task).
#
# The processes get the whole URL (postgresql://user:pass@host:5432/db?sslmode=verify-full…) as
# QF_DATABASE_URL from a Secrets Manager secret injected by ECS.

data "aws_partition" "current" {}

resource "aws_security_group" "db" {
  name        = "${var.name}-postgres"
  description = "Postgres: from the writer and the migrate task only"
  vpc_id      = var.vpc_id
  tags        = var.tags
}

resource "aws_vpc_security_group_ingress_rule" "db_from_clients" {
  # count, not for_each: the group ids are only known after apply.
  count = length(var.client_security_group_ids)

  security_group_id            = aws_security_group.db.id
  description                  = "Postgres from the database clients"
  ip_protocol                  = "tcp"
  from_port                    = 5432
  to_port                      = 5432
  referenced_security_group_id = var.client_security_group_ids[count.index]
}

# The clients' side: their groups may open connections to Postgres and nowhere else on 5432.
resource "aws_vpc_security_group_egress_rule" "clients_to_db" {
  count = length(var.client_security_group_ids)

  security_group_id            = var.client_security_group_ids[count.index]
  description                  = "to Postgres over TLS"
  ip_protocol                  = "tcp"
  from_port                    = 5432
  to_port                      = 5432
  referenced_security_group_id = aws_security_group.db.id
}

resource "aws_db_subnet_group" "this" {
  name       = "${var.name}-postgres"
  subnet_ids = var.subnet_ids
  tags       = var.tags
}

resource "aws_db_parameter_group" "this" {
  name_prefix = "${var.name}-pg${var.engine_major_version}-"
  family      = "postgres${var.engine_major_version}"
  description = "queuefront: TLS only, slow statements and DDL logged"
  tags        = var.tags

  parameter {
    name  = "rds.force_ssl"
    value = "1"
  }

  parameter {
    name  = "log_statement"
    value = "ddl"
  }

  parameter {
    name  = "log_min_duration_statement"
    value = "1000"
  }

  lifecycle {
    create_before_destroy = true
  }
}

# --- enhanced monitoring ------------------------------------------------------------------

resource "aws_iam_role" "monitoring" {
  name = "${var.name}-rds-monitoring"
  assume_role_policy = jsonencode({
    Version   = "2012-10-17"
    Statement = [{ Effect = "Allow", Action = "sts:AssumeRole", Principal = { Service = "monitoring.rds.amazonaws.com" } }]
  })
  tags = var.tags
}

resource "aws_iam_role_policy_attachment" "monitoring" {
  role       = aws_iam_role.monitoring.name
  policy_arn = "arn:${data.aws_partition.current.partition}:iam::aws:policy/service-role/AmazonRDSEnhancedMonitoringRole"
}

# --- password ------------------------------------------------------------------------------
# RDS-managed: RDS generates the master password, keeps it in a Secrets Manager secret of
# its own (encrypted with the stack's key) and rotates it on the schedule below. Terraform
# never sees the value, so it is in no plan and no state. The tasks get it from that
# secret's `password` key as PGPASSWORD (ECS injects it at start; asyncpg reads it when the
# URL has no password), and the URL secret holds everything but the password.

resource "aws_db_instance" "this" {
  identifier = "${var.name}-postgres"
  engine     = "postgres"
  # Major version only: RDS applies minor upgrades (auto_minor_version_upgrade) and the
  # plan shows no drift afterwards.
  engine_version = var.engine_major_version
  instance_class = var.instance_class

  db_name                       = var.database_name
  username                      = var.username
  manage_master_user_password   = true
  master_user_secret_kms_key_id = var.kms_key_arn

  allocated_storage     = var.allocated_storage_gb
  max_allocated_storage = var.max_allocated_storage_gb
  storage_type          = "gp3"
  storage_encrypted     = true
  kms_key_id            = var.kms_key_arn

  multi_az               = var.multi_az
  db_subnet_group_name   = aws_db_subnet_group.this.name
  vpc_security_group_ids = [aws_security_group.db.id]
  publicly_accessible    = false
  parameter_group_name   = aws_db_parameter_group.this.name
  # The CA the clients verify (sslmode=verify-full against the RDS CA bundle in the image).
  ca_cert_identifier = var.ca_cert_identifier

  backup_retention_period   = var.backup_retention_days
  backup_window             = "03:00-04:00"
  maintenance_window        = "sun:04:30-sun:05:30"
  copy_tags_to_snapshot     = true
  deletion_protection       = var.deletion_protection
  skip_final_snapshot       = false
  final_snapshot_identifier = "${var.name}-postgres-final"

  auto_minor_version_upgrade          = true
  iam_database_authentication_enabled = true
  enabled_cloudwatch_logs_exports     = ["postgresql", "upgrade"]

  performance_insights_enabled          = true
  performance_insights_kms_key_id       = var.kms_key_arn
  performance_insights_retention_period = 7
  monitoring_interval                   = 60
  monitoring_role_arn                   = aws_iam_role.monitoring.arn

  tags = var.tags
}

# --- the URL the writer and migrate read -----------------------------------------------------
# TLS with the server's certificate verified against the RDS CA bundle the image carries
# (Dockerfile: /app/certs/rds-global-bundle.pem) and its host name checked.

locals {
  url_query = "sslmode=verify-full&sslrootcert=${var.ca_bundle_path}"
}

resource "aws_secretsmanager_secret" "url" {
  name                    = "${var.name}/postgres/url"
  description             = "QF_DATABASE_URL of ${var.name} (no password: PGPASSWORD comes from the RDS-managed secret): postgresql://user@host:5432/db?${local.url_query}"
  kms_key_id              = var.kms_key_arn
  recovery_window_in_days = 7
  tags                    = var.tags
  #checkov:skip=CKV2_AWS_57:holds no credential (user, host, database, TLS options); the password is in the RDS-managed secret, which RDS rotates
}

# Written once the instance exists (its address is in it): whatever injects the URL waits
# for the database, not only for the secret's container.
resource "aws_secretsmanager_secret_version" "url" {
  secret_id     = aws_secretsmanager_secret.url.id
  secret_string = "postgresql://${var.username}@${aws_db_instance.this.address}:${aws_db_instance.this.port}/${var.database_name}?${local.url_query}"
}

locals {
  master_secret_arn = one(aws_db_instance.this.master_user_secret).secret_arn
}

# The managed secret's rotation schedule (RDS rotates it; no Lambda of ours). A rotation
# changes the password at once: running writers keep their open connections, and a writer
# whose new connection is refused exits so that ECS starts it again with the new value
# (workers/writer; docs/runbooks/rotate-database-password.md).
resource "aws_secretsmanager_secret_rotation" "master" {
  #checkov:skip=CKV_AWS_304:the schedule is password_rotation_days, which its validation bounds to 90 days at most
  secret_id          = local.master_secret_arn
  rotate_immediately = false

  rotation_rules {
    automatically_after_days = var.password_rotation_days
  }
}

resource "aws_cloudwatch_metric_alarm" "free_storage" {
  alarm_name          = "${var.name}-postgres-free-storage"
  alarm_description   = "Less than 10 GiB free on the ingest database. Runbook: ${var.runbook_base_url}/postgres-free-storage.md"
  namespace           = "AWS/RDS"
  metric_name         = "FreeStorageSpace"
  dimensions          = { DBInstanceIdentifier = aws_db_instance.this.identifier }
  statistic           = "Minimum"
  period              = 300
  evaluation_periods  = 1
  comparison_operator = "LessThanThreshold"
  threshold           = 10737418240
  alarm_actions       = [var.alarm_topic_arn]
  ok_actions          = [var.alarm_topic_arn]
  tags                = var.tags
}

resource "aws_cloudwatch_metric_alarm" "cpu" {
  alarm_name          = "${var.name}-postgres-cpu"
  alarm_description   = "Postgres CPU over 80% for 15 minutes: the writer's batch inserts are limited by the database. Runbook: ${var.runbook_base_url}/postgres-cpu.md"
  namespace           = "AWS/RDS"
  metric_name         = "CPUUtilization"
  dimensions          = { DBInstanceIdentifier = aws_db_instance.this.identifier }
  statistic           = "Average"
  period              = 300
  evaluation_periods  = 3
  comparison_operator = "GreaterThanThreshold"
  threshold           = 80
  alarm_actions       = [var.alarm_topic_arn]
  ok_actions          = [var.alarm_topic_arn]
  tags                = var.tags
}
