# Either a new VPC (public subnets only for the NAT gateways; tasks, data stores and the
# API Gateway VPC link in private subnets) or an existing VPC passed through. The security
# groups that identify clients (every task; the database clients) live here so that the
# data-store modules and the compute module can refer to them without a cycle.

data "aws_region" "current" {}

data "aws_vpc" "existing" {
  count = var.create_vpc ? 0 : 1
  id    = var.vpc_id
}

locals {
  azs      = var.availability_zones
  az_count = length(var.availability_zones)

  vpc_id             = var.create_vpc ? aws_vpc.this[0].id : var.vpc_id
  vpc_cidr           = var.create_vpc ? aws_vpc.this[0].cidr_block : data.aws_vpc.existing[0].cidr_block
  private_subnet_ids = var.create_vpc ? aws_subnet.private[*].id : var.private_subnet_ids

  nat_count = var.create_vpc ? (var.single_nat_gateway ? 1 : local.az_count) : 0

  interface_endpoints = var.create_vpc && var.enable_vpc_endpoints ? toset([
    "sqs", "ecr.api", "ecr.dkr", "logs", "monitoring", "secretsmanager", "kms",
  ]) : toset([])
}

resource "aws_vpc" "this" {
  count = var.create_vpc ? 1 : 0

  lifecycle {
    precondition {
      condition     = length(var.availability_zones) >= 2
      error_message = "A new VPC needs availability_zones: two or more zone names of the region."
    }
  }

  cidr_block           = var.vpc_cidr
  enable_dns_support   = true
  enable_dns_hostnames = true
  tags                 = merge(var.tags, { Name = var.name })
}

# Nothing may use the default security group.
resource "aws_default_security_group" "this" {
  count  = var.create_vpc ? 1 : 0
  vpc_id = aws_vpc.this[0].id
  tags   = merge(var.tags, { Name = "${var.name}-default-unused" })
}

resource "aws_subnet" "public" {
  count = var.create_vpc ? local.az_count : 0

  vpc_id            = aws_vpc.this[0].id
  availability_zone = local.azs[count.index]
  cidr_block        = cidrsubnet(var.vpc_cidr, 4, count.index)
  tags              = merge(var.tags, { Name = "${var.name}-public-${local.azs[count.index]}" })
}

resource "aws_subnet" "private" {
  count = var.create_vpc ? local.az_count : 0

  vpc_id            = aws_vpc.this[0].id
  availability_zone = local.azs[count.index]
  cidr_block        = cidrsubnet(var.vpc_cidr, 4, count.index + 8)
  tags              = merge(var.tags, { Name = "${var.name}-private-${local.azs[count.index]}" })
}

resource "aws_internet_gateway" "this" {
  count  = var.create_vpc ? 1 : 0
  vpc_id = aws_vpc.this[0].id
  tags   = merge(var.tags, { Name = var.name })
}

resource "aws_eip" "nat" {
  count  = local.nat_count
  domain = "vpc"
  tags   = merge(var.tags, { Name = "${var.name}-nat-${count.index}" })
}

resource "aws_nat_gateway" "this" {
  count = local.nat_count

  allocation_id = aws_eip.nat[count.index].id
  subnet_id     = aws_subnet.public[count.index].id
  tags          = merge(var.tags, { Name = "${var.name}-nat-${count.index}" })

  depends_on = [aws_internet_gateway.this]
}

resource "aws_route_table" "public" {
  count  = var.create_vpc ? 1 : 0
  vpc_id = aws_vpc.this[0].id
  tags   = merge(var.tags, { Name = "${var.name}-public" })
}

resource "aws_route" "public_internet" {
  count = var.create_vpc ? 1 : 0

  route_table_id         = aws_route_table.public[0].id
  destination_cidr_block = "0.0.0.0/0"
  gateway_id             = aws_internet_gateway.this[0].id
}

resource "aws_route_table_association" "public" {
  count = var.create_vpc ? local.az_count : 0

  subnet_id      = aws_subnet.public[count.index].id
  route_table_id = aws_route_table.public[0].id
}

resource "aws_route_table" "private" {
  count  = var.create_vpc ? local.az_count : 0
  vpc_id = aws_vpc.this[0].id
  tags   = merge(var.tags, { Name = "${var.name}-private-${local.azs[count.index]}" })
}

# Egress for the legacy backend (QF_BACKEND_URL may be outside the VPC) and any AWS API
# without an endpoint.
resource "aws_route" "private_nat" {
  count = var.create_vpc ? local.az_count : 0

  route_table_id         = aws_route_table.private[count.index].id
  destination_cidr_block = "0.0.0.0/0"
  nat_gateway_id         = aws_nat_gateway.this[var.single_nat_gateway ? 0 : count.index].id
}

resource "aws_route_table_association" "private" {
  count = var.create_vpc ? local.az_count : 0

  subnet_id      = aws_subnet.private[count.index].id
  route_table_id = aws_route_table.private[count.index].id
}

# --- flow logs ---------------------------------------------------------------------------

resource "aws_cloudwatch_log_group" "flow" {
  count = var.create_vpc ? 1 : 0

  name              = "/vpc/${var.name}/flow"
  retention_in_days = var.flow_log_retention_days
  kms_key_id        = var.kms_key_arn
  tags              = var.tags
}

resource "aws_iam_role" "flow" {
  count = var.create_vpc ? 1 : 0

  name = "${var.name}-vpc-flow-logs"
  assume_role_policy = jsonencode({
    Version   = "2012-10-17"
    Statement = [{ Effect = "Allow", Action = "sts:AssumeRole", Principal = { Service = "vpc-flow-logs.amazonaws.com" } }]
  })
  tags = var.tags
}

resource "aws_iam_role_policy" "flow" {
  count = var.create_vpc ? 1 : 0

  name = "write-flow-logs"
  role = aws_iam_role.flow[0].id
  policy = jsonencode({
    Version = "2012-10-17"
    Statement = [{
      Effect   = "Allow"
      Action   = ["logs:CreateLogStream", "logs:PutLogEvents", "logs:DescribeLogStreams"]
      Resource = "${aws_cloudwatch_log_group.flow[0].arn}:*"
    }]
  })
}

resource "aws_flow_log" "this" {
  count = var.create_vpc ? 1 : 0

  vpc_id          = aws_vpc.this[0].id
  traffic_type    = "ALL"
  log_destination = aws_cloudwatch_log_group.flow[0].arn
  iam_role_arn    = aws_iam_role.flow[0].arn
  tags            = var.tags
}

# --- VPC endpoints -----------------------------------------------------------------------

resource "aws_security_group" "endpoints" {
  count = length(local.interface_endpoints) > 0 ? 1 : 0

  name        = "${var.name}-vpc-endpoints"
  description = "HTTPS from inside the VPC to the interface endpoints"
  vpc_id      = local.vpc_id
  tags        = var.tags

  ingress {
    description = "HTTPS from the VPC"
    from_port   = 443
    to_port     = 443
    protocol    = "tcp"
    cidr_blocks = [local.vpc_cidr]
  }
}

resource "aws_vpc_endpoint" "interface" {
  for_each = local.interface_endpoints

  vpc_id              = local.vpc_id
  service_name        = "com.amazonaws.${data.aws_region.current.name}.${each.key}"
  vpc_endpoint_type   = "Interface"
  private_dns_enabled = true
  subnet_ids          = local.private_subnet_ids
  security_group_ids  = [aws_security_group.endpoints[0].id]
  tags                = merge(var.tags, { Name = "${var.name}-${each.key}" })
}

# ECR stores image layers in S3.
resource "aws_vpc_endpoint" "s3" {
  count = var.create_vpc && var.enable_vpc_endpoints ? 1 : 0

  vpc_id            = local.vpc_id
  service_name      = "com.amazonaws.${data.aws_region.current.name}.s3"
  vpc_endpoint_type = "Gateway"
  route_table_ids   = aws_route_table.private[*].id
  tags              = merge(var.tags, { Name = "${var.name}-s3" })
}

# --- client security groups --------------------------------------------------------------
# Attached to tasks; the data stores admit traffic from these groups only.

resource "aws_security_group" "tasks" {
  name = "${var.name}-tasks"
  #checkov:skip=CKV2_AWS_5:attached to every ECS service and the migrate task by the compute module (local.security_groups)
  description = "Every queuefront task (api, worker, writer, migrate, admin): Redis admits this group"
  vpc_id      = local.vpc_id
  tags        = var.tags
}

# Egress is what each task needs and no more: HTTPS to the AWS APIs (VPC endpoints or NAT)
# and ECR here; Redis and Postgres from the cache and database modules (to their groups
# only); the legacy backend from the compute module (the worker's group only).
resource "aws_vpc_security_group_egress_rule" "tasks_https" {
  security_group_id = aws_security_group.tasks.id
  description       = "HTTPS to the AWS APIs (SQS, Secrets Manager, logs, ECR) through the endpoints or NAT"
  ip_protocol       = "tcp"
  from_port         = 443
  to_port           = 443
  cidr_ipv4         = "0.0.0.0/0"
}

resource "aws_security_group" "db_clients" {
  name = "${var.name}-db-clients"
  #checkov:skip=CKV2_AWS_5:attached to the writer service and the migrate task by the compute module (local.security_groups)
  description = "The writer and the migrate task: the database admits this group only"
  vpc_id      = local.vpc_id
  tags        = var.tags
}
