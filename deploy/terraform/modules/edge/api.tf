# API Gateway REST API (regional) between CloudFront and the internal ALB.
#
# Why REST and not the HTTP API (the decision and its costs: deploy/terraform/README.md,
# "The API's public endpoint"): the execute-api endpoint is public whatever we do, and an
# HTTP API takes no WAF, so a direct caller was only refused at the ALB — after API Gateway
# had counted the call against the stage's and the route's throttles and billed it. A REST
# API stage takes a regional WAF web ACL, evaluated before anything else API Gateway does;
# ours allows only requests carrying the origin secret CloudFront adds and blocks the rest
# with 403. So the only way in is CloudFront (and its WAF), then this one.
#
# The API is one OpenAPI document (a planned value the suites read): the root and
# {proxy+} forward everything to the ALB; each throttled route ("METHOD /path") is its own
# method so that the stage can throttle it; with ingest_direct the votes route is an SQS
# integration instead (§ ingest_direct below).
#
# REST private integrations (VPC link v1) reach a Network Load Balancer only with the AWS
# provider 5.x: an internal NLB forwards TCP to the ALB (an `alb` target group). A newer
# provider (6.x, `integration_target` on VPC links v2 for REST APIs) could drop the NLB.

data "aws_region" "current" {}

locals {
  region     = data.aws_region.current.name
  stage_name = "live"

  # "POST /api/polls/{poll_id}/votes" -> method, path, path parameters
  throttled_routes = {
    for key, t in var.route_throttles : key => {
      method     = lower(split(" ", key)[0])
      path       = split(" ", key)[1]
      parameters = [for m in regexall("\\{([A-Za-z0-9_]+)\\}", split(" ", key)[1]) : m[0]]
      throttle   = t
    }
  }

  # VPC_LINK: API Gateway connects to the link's NLB whatever the host; the URI's host is
  # the Host header and, over HTTPS, the name verified on the ALB's certificate.
  nlb_origin = local.alb_https ? "https://${var.alb_certificate_domain}:${local.listener_port}" : "http://${aws_lb.nlb.dns_name}:${local.listener_port}"

  # x-amazon-apigateway-integration of a route forwarded to the ALB through the VPC link.
  proxy_integration = {
    for key, r in merge(local.throttled_routes, {
      "ANY /"         = { method = "x-amazon-apigateway-any-method", path = "/", parameters = [], throttle = null }
      "ANY /{proxy+}" = { method = "x-amazon-apigateway-any-method", path = "/{proxy+}", parameters = ["proxy"], throttle = null }
    }) :
    key => merge(
      {
        type                = "http_proxy"
        httpMethod          = r.method == "x-amazon-apigateway-any-method" ? "ANY" : upper(r.method)
        uri                 = "${local.nlb_origin}${replace(r.path, "{proxy+}", "{proxy}")}"
        connectionType      = "VPC_LINK"
        connectionId        = aws_api_gateway_vpc_link.this.id
        passthroughBehavior = "when_no_match"
        timeoutInMillis     = var.integration_timeout_ms
        requestParameters   = { for p in r.parameters : "integration.request.path.${p}" => "method.request.path.${p}" }
      },
      local.alb_https ? { tlsConfig = { insecureSkipVerification = false } } : {},
    )
  }

  operations = merge(
    {
      "/" = {
        "x-amazon-apigateway-any-method" = {
          responses                         = { default = { description = "the api's answer" } }
          "x-amazon-apigateway-integration" = local.proxy_integration["ANY /"]
        }
      }
      "/{proxy+}" = {
        "x-amazon-apigateway-any-method" = {
          parameters                        = [{ name = "proxy", "in" = "path", required = true, schema = { type = "string" } }]
          responses                         = { default = { description = "the api's answer" } }
          "x-amazon-apigateway-integration" = local.proxy_integration["ANY /{proxy+}"]
        }
      }
    },
    {
      for path in distinct([for r in values(local.throttled_routes) : r.path]) : path => {
        for key, r in local.throttled_routes : r.method => {
          parameters = [for p in r.parameters : { name = p, "in" = "path", required = true, schema = { type = "string" } }]
          # the direct route's objects have another shape than the proxy's: chosen as JSON
          responses                         = jsondecode(contains(keys(local.direct_integrations), key) ? jsonencode(local.direct_responses) : jsonencode({ default = { description = "the api's answer" } }))
          "x-amazon-apigateway-integration" = jsondecode(contains(keys(local.direct_integrations), key) ? jsonencode(local.direct_integrations[key]) : jsonencode(local.proxy_integration[key]))
        } if r.path == path
      }
    },
  )

  openapi = {
    openapi = "3.0.1"
    info    = { title = var.name, version = "1" }
    paths   = local.operations
  }
}

# --- the internal NLB that VPC link v1 needs ------------------------------------------------

resource "aws_security_group" "nlb" {
  name        = "${var.name}-nlb"
  description = "Internal NLB behind API Gateway's VPC link: to the ALB listener only"
  vpc_id      = var.vpc_id
  tags        = var.tags
}

resource "aws_vpc_security_group_egress_rule" "nlb_to_alb" {
  security_group_id            = aws_security_group.nlb.id
  description                  = "to the internal ALB's listener"
  ip_protocol                  = "tcp"
  from_port                    = local.listener_port
  to_port                      = local.listener_port
  referenced_security_group_id = aws_security_group.alb.id
}

resource "aws_lb" "nlb" {
  #checkov:skip=CKV_AWS_91:a TCP pass-through to the ALB; requests are logged at API Gateway (access log), the WAFs and CloudFront
  #checkov:skip=CKV_AWS_152:cross-zone off is the NLB default and costs nothing here: the ALB behind it balances across zones
  name                       = "${var.name}-api-link"
  internal                   = true
  load_balancer_type         = "network"
  subnets                    = var.subnet_ids
  security_groups            = [aws_security_group.nlb.id]
  enable_deletion_protection = var.alb_deletion_protection
  # API Gateway's VPC link arrives over PrivateLink; the group's egress rule is what matters
  enforce_security_group_inbound_rules_on_private_link_traffic = "off"
  tags                                                         = var.tags
}

resource "aws_lb_target_group" "alb" {
  name        = "${var.name}-alb"
  target_type = "alb"
  port        = local.listener_port
  protocol    = "TCP"
  vpc_id      = var.vpc_id
  tags        = var.tags

  health_check {
    protocol = local.alb_https ? "HTTPS" : "HTTP"
    port     = "traffic-port"
    # the listener answers 403 to anything without the origin secret: alive
    matcher = "200-499"
    path    = "/"
  }
}

resource "aws_lb_target_group_attachment" "alb" {
  target_group_arn = aws_lb_target_group.alb.arn
  target_id        = aws_lb.api.arn
  port             = local.listener_port

  # an ALB can be a target only once it has a listener on that port
  depends_on = [aws_lb_listener.api]
}

resource "aws_lb_listener" "nlb" {
  load_balancer_arn = aws_lb.nlb.arn
  port              = local.listener_port
  protocol          = "TCP"
  tags              = var.tags

  default_action {
    type             = "forward"
    target_group_arn = aws_lb_target_group.alb.arn
  }
}

resource "aws_api_gateway_vpc_link" "this" {
  name        = var.name
  description = "API Gateway to the internal NLB in front of the ALB"
  target_arns = [aws_lb.nlb.arn]
  tags        = var.tags
}

# --- the API -----------------------------------------------------------------------------

resource "aws_api_gateway_rest_api" "this" {
  #checkov:skip=CKV_AWS_237:replacing the API changes CloudFront's origin; a new API is a deliberate two-step change, not create-before-destroy
  name        = var.name
  description = "queuefront api behind CloudFront"
  body        = jsonencode(local.openapi)
  # the body's methods are the whole API: no console-made leftovers survive an apply
  put_rest_api_mode = "overwrite"
  fail_on_warnings  = true

  endpoint_configuration {
    types = ["REGIONAL"]
  }

  tags = var.tags

  lifecycle {
    precondition {
      condition     = var.ingest_direct == null || contains(keys(var.route_throttles), try(var.ingest_direct.route_key, ""))
      error_message = "ingest_direct.route_key must be one of route_throttles' keys: the direct route is its own method with its own throttle."
    }
  }
}

resource "aws_api_gateway_deployment" "this" {
  rest_api_id = aws_api_gateway_rest_api.this.id

  triggers = {
    body = sha1(aws_api_gateway_rest_api.this.body)
  }

  lifecycle {
    create_before_destroy = true
  }
}

resource "aws_cloudwatch_log_group" "api_access" {
  name              = "/apigateway/${var.name}/access"
  retention_in_days = var.log_retention_days
  kms_key_id        = var.kms_key_arn
  tags              = var.tags
}

resource "aws_api_gateway_stage" "live" {
  #checkov:skip=CKV_AWS_120:responses are cached by CloudFront (s-maxage) and the api's Redis tiers; a stage cache would be a third, unkeyed by credentials
  #checkov:skip=CKV_AWS_73:X-Ray is not part of the stack's observability (CloudWatch metrics, access logs, structured logs)
  #checkov:skip=CKV2_AWS_51:the integration to the ALB stays inside the VPC (VPC link); client certificates authenticate API Gateway to public backends
  #checkov:skip=CKV2_AWS_4:execution logging needs the account-level CloudWatch role; the JSON access log records every request
  #checkov:skip=CKV2_AWS_77:the Log4j rule set (AWSManagedRulesKnownBadInputsRuleSet) runs on CloudFront's web ACL, which every request this stage's WAF allows has passed
  rest_api_id   = aws_api_gateway_rest_api.this.id
  deployment_id = aws_api_gateway_deployment.this.id
  stage_name    = local.stage_name

  access_log_settings {
    destination_arn = aws_cloudwatch_log_group.api_access.arn
    format = jsonencode({
      requestId          = "$context.requestId"
      ip                 = "$context.identity.sourceIp"
      requestTime        = "$context.requestTime"
      resourcePath       = "$context.resourcePath"
      httpMethod         = "$context.httpMethod"
      status             = "$context.status"
      responseLength     = "$context.responseLength"
      integrationLatency = "$context.integrationLatency"
      integrationError   = "$context.integration.error"
      wafStatus          = "$context.waf.status"
    })
  }

  tags = var.tags

  # REST access logs need the account's CloudWatch role (api_gateway_account below)
  depends_on = [aws_api_gateway_account.this]
}

# Stage-wide throttling, then one override per throttled route.
resource "aws_api_gateway_method_settings" "all" {
  #checkov:skip=CKV_AWS_225:responses are cached at the edge (CloudFront) and in the api, not in API Gateway
  #checkov:skip=CKV_AWS_308:no caching, so nothing to encrypt
  rest_api_id = aws_api_gateway_rest_api.this.id
  stage_name  = aws_api_gateway_stage.live.stage_name
  method_path = "*/*"

  settings {
    metrics_enabled        = true
    throttling_burst_limit = var.default_throttle.burst
    throttling_rate_limit  = var.default_throttle.rate
  }
}

resource "aws_api_gateway_method_settings" "route" {
  #checkov:skip=CKV_AWS_225:responses are cached at the edge (CloudFront) and in the api, not in API Gateway
  #checkov:skip=CKV_AWS_308:no caching, so nothing to encrypt
  for_each = local.throttled_routes

  rest_api_id = aws_api_gateway_rest_api.this.id
  stage_name  = aws_api_gateway_stage.live.stage_name
  method_path = "${trimprefix(each.value.path, "/")}/${upper(each.value.method)}"

  settings {
    metrics_enabled        = true
    throttling_burst_limit = each.value.throttle.burst
    throttling_rate_limit  = each.value.throttle.rate
  }
}

# The account-level role API Gateway writes REST logs with (one per account and region;
# manage_api_gateway_account = false where another stack already sets it).
resource "aws_iam_role" "api_gateway_logs" {
  count = var.manage_api_gateway_account ? 1 : 0

  name = "${var.name}-apigateway-logs"
  assume_role_policy = jsonencode({
    Version   = "2012-10-17"
    Statement = [{ Effect = "Allow", Action = "sts:AssumeRole", Principal = { Service = "apigateway.amazonaws.com" } }]
  })
  tags = var.tags
}

resource "aws_iam_role_policy_attachment" "api_gateway_logs" {
  count = var.manage_api_gateway_account ? 1 : 0

  role       = aws_iam_role.api_gateway_logs[0].name
  policy_arn = "arn:${data.aws_partition.current.partition}:iam::aws:policy/service-role/AmazonAPIGatewayPushToCloudWatchLogs"
}

resource "aws_api_gateway_account" "this" {
  count = var.manage_api_gateway_account ? 1 : 0

  cloudwatch_role_arn = aws_iam_role.api_gateway_logs[0].arn
  depends_on          = [aws_iam_role_policy_attachment.api_gateway_logs]
}

locals {
  api_domain = "${aws_api_gateway_rest_api.this.id}.execute-api.${local.region}.amazonaws.com"
}

# --- the API's own WAF: the origin secret or nothing -----------------------------------------
# Regional, on the stage. Evaluated before API Gateway's other controls, so a caller who
# learned the API's id is refused (403) without reaching a route's throttle bucket, the
# VPC link or SQS. During a rotation (origin_secret_accept_previous) both values pass.

resource "aws_wafv2_web_acl" "api" {
  #checkov:skip=CKV_AWS_192:the managed rule groups (known bad inputs included) run on CloudFront's web ACL, which every allowed request has passed
  #checkov:skip=CKV2_AWS_31:every request this ACL allows came through CloudFront's web ACL, which logs; its blocks are counted in CloudWatch metrics (the direct-calls alarm)
  name        = "${var.name}-api"
  description = "queuefront API Gateway stage: only requests that came through CloudFront"
  scope       = "REGIONAL"

  default_action {
    block {
      custom_response {
        response_code            = 403
        custom_response_body_key = "forbidden"
      }
    }
  }

  custom_response_body {
    key          = "forbidden"
    content_type = "APPLICATION_JSON"
    content      = jsonencode({ error = "forbidden", message = "Requests are served through the public endpoint only" })
  }

  dynamic "rule" {
    for_each = { for i, v in local.origin_secrets_allowed : i => v }
    content {
      name     = "from-cloudfront-${rule.key}"
      priority = rule.key

      action {
        allow {}
      }

      statement {
        byte_match_statement {
          search_string         = rule.value
          positional_constraint = "EXACTLY"

          field_to_match {
            single_header {
              name = lower(var.origin_header_name)
            }
          }

          text_transformation {
            priority = 0
            type     = "NONE"
          }
        }
      }

      visibility_config {
        cloudwatch_metrics_enabled = true
        metric_name                = "${var.name}-api-from-cloudfront-${rule.key}"
        sampled_requests_enabled   = false
      }
    }
  }

  visibility_config {
    cloudwatch_metrics_enabled = true
    metric_name                = "${var.name}-api"
    sampled_requests_enabled   = true
  }

  tags = var.tags
}

resource "aws_wafv2_web_acl_association" "api" {
  resource_arn = aws_api_gateway_stage.live.arn
  web_acl_arn  = aws_wafv2_web_acl.api.arn
}

# --- ingest_direct: one route straight to the ingest queue ------------------------------------
# The voting seed's v2: POST /polls/{pollId}/votes on an API Gateway -> SQS integration, so
# no server of ours touches a vote before the writer. API Gateway calls SQS's query API
# (Action=SendMessage, form-encoded, signed with the integration's role), as AWS documents
# for REST APIs ("integrate an API Gateway REST API with Amazon SQS", AWS re:Post knowledge
# center: api-gateway-rest-api-sqs-errors; SQS API reference: SendMessage, MessageAttribute.N.*):
#   MessageBody                 the request body as the client sent it (the writer validates it)
#   MessageAttribute route      the route's name in the route table (its sink)
#   MessageAttribute request_id API Gateway's $context.requestId (the item's id: a redelivery
#                               or an SQS duplicate stores once)
#   MessageAttribute received_at_ms  $context.requestTimeEpoch
#   MessageAttribute path.<p>   each path parameter
# workers/writer/direct.py reads exactly this; tests/integration/test_ingest_direct.py sends it.

locals {
  direct = var.ingest_direct == null ? null : {
    key        = var.ingest_direct.route_key
    route_name = var.ingest_direct.route_name
    parameters = [for m in regexall("\\{([A-Za-z0-9_]+)\\}", split(" ", var.ingest_direct.route_key)[1]) : m[0]]
  }

  direct_attributes = local.direct == null ? [] : concat(
    [
      { name = "route", type = "String", value = "'${local.direct.route_name}'" },
      { name = "request_id", type = "String", value = "$context.requestId" },
      { name = "received_at_ms", type = "Number", value = "$context.requestTimeEpoch" },
    ],
    [for p in local.direct.parameters : { name = "path.${p}", type = "String", value = "$input.params().path.get('${p}')" }],
  )

  # VTL: every value URL-encoded into the form SQS's query API reads.
  direct_template = join("&", concat(
    ["Action=SendMessage", "MessageBody=$util.urlEncode($input.body)"],
    flatten([
      for i, a in local.direct_attributes : [
        "MessageAttribute.${i + 1}.Name=${a.name}",
        "MessageAttribute.${i + 1}.Value.DataType=${a.type}",
        "MessageAttribute.${i + 1}.Value.StringValue=${startswith(a.value, "'") ? trim(a.value, "'") : "$util.urlEncode(${a.value})"}",
      ]
    ]),
  ))

  direct_integrations = local.direct == null ? {} : {
    (local.direct.key) = {
      type        = "aws"
      httpMethod  = "POST"
      uri         = "arn:${data.aws_partition.current.partition}:apigateway:${local.region}:sqs:path/${local.account_id}/${var.ingest_direct.queue_name}"
      credentials = aws_iam_role.ingest_direct[0].arn
      # only JSON bodies are mapped; anything else is refused with 415 before SQS
      passthroughBehavior = "never"
      timeoutInMillis     = var.integration_timeout_ms
      requestParameters   = { "integration.request.header.Content-Type" = "'application/x-www-form-urlencoded'" }
      requestTemplates    = { "application/json" = local.direct_template }
      responses = {
        default = {
          statusCode        = "202"
          responseTemplates = { "application/json" = jsonencode({ id = "$context.requestId", status = "accepted" }) }
        }
        "4\\d{2}" = {
          statusCode        = "400"
          responseTemplates = { "application/json" = jsonencode({ error = "bad_request", message = "The queue refused the vote", request_id = "$context.requestId" }) }
        }
        "5\\d{2}" = {
          statusCode         = "503"
          responseParameters = { "method.response.header.Retry-After" = "'1'" }
          responseTemplates  = { "application/json" = jsonencode({ error = "unavailable", message = "The queue is unavailable, retry", request_id = "$context.requestId" }) }
        }
      }
    }
  }
}

locals {
  direct_responses = {
    "202" = { description = "accepted: the vote is on the ingest queue" }
    "400" = { description = "the queue refused the message" }
    "503" = {
      description = "the queue is unavailable"
      headers     = { "Retry-After" = { schema = { type = "string" } } }
    }
  }
}

# May send to the ingest queue and nothing else (the queue is SSE-KMS: a data key from the
# stack's key, through SQS only).
resource "aws_iam_role" "ingest_direct" {
  count = var.ingest_direct == null ? 0 : 1

  name = "${var.name}-apigateway-ingest"
  assume_role_policy = jsonencode({
    Version = "2012-10-17"
    Statement = [{
      Effect    = "Allow"
      Action    = "sts:AssumeRole"
      Principal = { Service = "apigateway.amazonaws.com" }
      Condition = { StringEquals = { "aws:SourceAccount" = local.account_id } }
    }]
  })
  tags = var.tags
}

resource "aws_iam_role_policy" "ingest_direct" {
  count = var.ingest_direct == null ? 0 : 1

  name = "send-to-ingest-only"
  role = aws_iam_role.ingest_direct[0].id
  policy = jsonencode({
    Version = "2012-10-17"
    Statement = [
      {
        Sid      = "SendToIngest"
        Effect   = "Allow"
        Action   = ["sqs:SendMessage"]
        Resource = [var.ingest_direct.queue_arn]
      },
      {
        Sid       = "IngestQueueEncryption"
        Effect    = "Allow"
        Action    = ["kms:GenerateDataKey", "kms:Decrypt"]
        Resource  = [var.kms_key_arn]
        Condition = { StringEquals = { "kms:ViaService" = "sqs.${local.region}.amazonaws.com" } }
      },
    ]
  })
}
