# Viewer -> CloudFront (WAF, edge cache that honours s-maxage) -> API Gateway REST API
# (regional WAF: the origin secret or nothing; throttling) -> VPC link -> internal NLB ->
# internal ALB -> api tasks. The API Gateway part is in api.tf.

data "aws_caller_identity" "current" {}
data "aws_partition" "current" {}

# --- internal ALB ----------------------------------------------------------------------------

locals {
  alb_https     = var.alb_certificate_arn != null
  listener_port = local.alb_https ? 443 : 80
}

resource "aws_security_group" "alb" {
  name        = "${var.name}-alb"
  description = "Internal ALB: from the internal NLB (API Gateway's VPC link) only, to the api tasks"
  vpc_id      = var.vpc_id
  tags        = var.tags
}

resource "aws_vpc_security_group_ingress_rule" "alb_from_nlb" {
  security_group_id            = aws_security_group.alb.id
  description                  = "from the internal NLB behind API Gateway's VPC link"
  ip_protocol                  = "tcp"
  from_port                    = local.listener_port
  to_port                      = local.listener_port
  referenced_security_group_id = aws_security_group.nlb.id
}

# The ALB's egress (to the api tasks' port only) is made by the compute module, which owns
# the api tasks' group.

resource "aws_lb" "api" {
  #checkov:skip=CKV_AWS_91:access logs need an S3 bucket with ALB's log-delivery policy; requests are logged at API Gateway (access log) and CloudFront already
  #checkov:skip=CKV2_AWS_28:internal ALB reachable only from the VPC link; the WAF sits on CloudFront in front of it
  name                       = "${var.name}-api"
  internal                   = true
  load_balancer_type         = "application"
  subnets                    = var.subnet_ids
  security_groups            = [aws_security_group.alb.id]
  drop_invalid_header_fields = true
  enable_deletion_protection = var.alb_deletion_protection
  idle_timeout               = 60
  tags                       = var.tags
}

resource "aws_lb_target_group" "api" {
  #checkov:skip=CKV_AWS_378:HTTP from the internal ALB to the api tasks inside the VPC (security groups: ALB to the api port only); TLS ends at CloudFront and API Gateway
  name                 = "${var.name}-api"
  port                 = var.api_port
  protocol             = "HTTP"
  target_type          = "ip"
  vpc_id               = var.vpc_id
  deregistration_delay = var.deregistration_delay_s

  # Liveness on the probe port (the public port has no probes the public may see):
  # /healthz fails for pod-local faults a restart cures (its reply listener is gone while
  # Redis answers); not readiness, since a Redis outage makes every pod unready at once
  # and ECS would replace healthy tasks in a loop. /readyz answers 503 itself.
  health_check {
    port                = tostring(var.api_probe_port)
    path                = "/healthz"
    matcher             = "200"
    interval            = 10
    timeout             = 5
    healthy_threshold   = 2
    unhealthy_threshold = 3
  }

  tags = var.tags
}

# --- origin verification --------------------------------------------------------------------
# API Gateway's execute-api endpoint is public: without a check, callers could skip
# CloudFront and the WAF. CloudFront adds a secret header to every origin request; the ALB
# forwards only requests that carry it (API Gateway passes request headers through) and
# answers everything else 403. The value lives in Secrets Manager; rotating it is two applies
# (docs/runbooks/rotate-origin-secret.md): a new origin_secret_version with
# origin_secret_accept_previous = true (the ALB takes both while CloudFront deploys the new
# one), then origin_secret_accept_previous = false.

data "aws_secretsmanager_random_password" "origin" {
  password_length     = 48
  exclude_punctuation = true
}

resource "aws_secretsmanager_secret" "origin" {
  name                    = "${var.name}/edge/origin-verify"
  description             = "${var.origin_header_name}: the header CloudFront adds and the ALB requires"
  kms_key_id              = var.kms_key_arn
  recovery_window_in_days = 7
  tags                    = var.tags
  #checkov:skip=CKV2_AWS_57:rotated by bumping origin_secret_version (two applies, so that no request is refused while CloudFront deploys); a rotation Lambda could not update CloudFront and the ALB in that order
}

resource "aws_secretsmanager_secret_version" "origin" {
  secret_id                = aws_secretsmanager_secret.origin.id
  secret_string_wo         = data.aws_secretsmanager_random_password.origin.random_password
  secret_string_wo_version = var.origin_secret_version
}

data "aws_secretsmanager_secret_version" "origin" {
  secret_id  = aws_secretsmanager_secret.origin.id
  depends_on = [aws_secretsmanager_secret_version.origin]
}

data "aws_secretsmanager_secret_version" "origin_previous" {
  count = var.origin_secret_accept_previous ? 1 : 0

  secret_id     = aws_secretsmanager_secret.origin.id
  version_stage = "AWSPREVIOUS"
  depends_on    = [aws_secretsmanager_secret_version.origin]
}

locals {
  origin_secret          = data.aws_secretsmanager_secret_version.origin.secret_string
  origin_secrets_allowed = concat([local.origin_secret], data.aws_secretsmanager_secret_version.origin_previous[*].secret_string)

  # The probe routes are the operators' (queuefront serves them on QF_METRICS_PORT only);
  # the edge refuses them whatever the api does.
  blocked_paths = ["/metrics", "/metrics/*", "/readyz", "/readyz/*"]
}

resource "aws_lb_listener" "api" {
  #checkov:skip=CKV_AWS_2:HTTP only when no alb_certificate_arn is given: the ALB is internal, reachable from the VPC link only, and TLS ends at API Gateway
  #checkov:skip=CKV_AWS_103:same listener; with alb_certificate_arn it uses ELBSecurityPolicy-TLS13-1-2-2021-06
  load_balancer_arn = aws_lb.api.arn
  port              = local.listener_port
  protocol          = local.alb_https ? "HTTPS" : "HTTP"
  ssl_policy        = local.alb_https ? "ELBSecurityPolicy-TLS13-1-2-2021-06" : null
  certificate_arn   = var.alb_certificate_arn

  # Anything that did not come through CloudFront.
  default_action {
    type = "fixed-response"

    fixed_response {
      content_type = "application/json"
      status_code  = "403"
      message_body = jsonencode({ error = "forbidden", message = "Requests are served through the public endpoint only" })
    }
  }

  tags = var.tags
}

resource "aws_lb_listener_rule" "probes_not_public" {
  listener_arn = aws_lb_listener.api.arn
  priority     = 1

  action {
    type = "fixed-response"

    fixed_response {
      content_type = "application/json"
      status_code  = "404"
      message_body = jsonencode({ error = "not_found", message = "No route" })
    }
  }

  condition {
    path_pattern {
      values = local.blocked_paths
    }
  }

  tags = var.tags
}

resource "aws_lb_listener_rule" "from_cloudfront" {
  listener_arn = aws_lb_listener.api.arn
  priority     = 10

  action {
    type             = "forward"
    target_group_arn = aws_lb_target_group.api.arn
  }

  condition {
    http_header {
      http_header_name = var.origin_header_name
      values           = local.origin_secrets_allowed
    }
  }

  tags = var.tags
}

# --- CloudFront ------------------------------------------------------------------------------

# Default behaviour: every method; the cache key includes the credentials, so an
# authenticated response is only ever replayed to the same client, and anything without
# s-maxage (default TTL 0) is not cached at all.
resource "aws_cloudfront_cache_policy" "origin_controlled" {
  name        = "${var.name}-origin-controlled"
  comment     = "TTL from the origin's Cache-Control (s-maxage); credentials in the key"
  min_ttl     = 0
  default_ttl = 0
  max_ttl     = var.edge_max_ttl_s

  parameters_in_cache_key_and_forwarded_to_origin {
    enable_accept_encoding_gzip   = true
    enable_accept_encoding_brotli = true

    headers_config {
      header_behavior = "whitelist"
      headers {
        items = var.credential_headers
      }
    }

    cookies_config {
      cookie_behavior = "none"
    }

    query_strings_config {
      query_string_behavior = "all"
    }
  }
}

# Public edge-cached routes (the voting system's GET /polls): one shared entry per URL,
# whoever asks, for the s-maxage the route sets. One policy per path: its cache key holds
# the query strings that route reads (edge_cache_query_strings) and no others, so a viewer
# adding random query strings gets a miss of their own, not everybody's results page
# refetched (and rate-limited) at the origin. No header is in the key.
locals {
  edge_cached = {
    for i, path in var.edge_cached_paths : path => {
      index         = i
      query_strings = lookup(var.edge_cache_query_strings, path, [])
    }
  }
}

resource "aws_cloudfront_cache_policy" "edge_public" {
  for_each = local.edge_cached

  name        = "${var.name}-edge-public-${each.value.index}"
  comment     = "${each.key}: TTL from s-maxage, keyed on the path and ${length(each.value.query_strings) > 0 ? join(", ", each.value.query_strings) : "no query string"}"
  min_ttl     = 0
  default_ttl = 0
  max_ttl     = var.edge_max_ttl_s

  parameters_in_cache_key_and_forwarded_to_origin {
    enable_accept_encoding_gzip   = true
    enable_accept_encoding_brotli = true

    headers_config {
      header_behavior = "none"
    }

    cookies_config {
      cookie_behavior = "none"
    }

    query_strings_config {
      query_string_behavior = length(each.value.query_strings) > 0 ? "whitelist" : "none"

      dynamic "query_strings" {
        for_each = length(each.value.query_strings) > 0 ? [each.value.query_strings] : []
        content {
          items = query_strings.value
        }
      }
    }
  }
}

# What the edge-cached behaviours send to the origin besides their cache key: the viewer's
# address the function sets (the api rate-limits each viewer's cache misses as that viewer,
# not as the ALB node), and nothing else — no credential, no cookie, no other header. An
# origin request policy forwards without keying: the address never splits the cache.
resource "aws_cloudfront_origin_request_policy" "edge_public" {
  name    = "${var.name}-edge-public"
  comment = "Edge-cached routes: the viewer's address only"

  headers_config {
    header_behavior = "whitelist"
    headers {
      items = [local.client_ip_header]
    }
  }

  cookies_config {
    cookie_behavior = "none"
  }

  query_strings_config {
    query_string_behavior = "none"
  }
}

# The client's address for the api's rate limits and idempotency scopes: set by CloudFront,
# never taken from the client (the api reads it as QF_CLIENT_IP_HEADER; see the .js file).
resource "aws_cloudfront_function" "viewer_address" {
  name    = "${var.name}-viewer-address"
  runtime = "cloudfront-js-2.0"
  comment = "X-Qf-Viewer-Address: the viewer's IP as CloudFront saw it (client values replaced)"
  publish = true
  code    = file("${path.module}/viewer_address.js")
}

# The proxy routes pass request headers on to the legacy backend, so the default behaviour
# forwards every viewer header except Host (API Gateway routes on its own host name).
resource "aws_cloudfront_origin_request_policy" "api" {
  name    = "${var.name}-api"
  comment = "All viewer headers but Host, all query strings, no cookies"

  headers_config {
    header_behavior = "allExcept"
    headers {
      items = ["Host"]
    }
  }

  cookies_config {
    cookie_behavior = "none"
  }

  query_strings_config {
    query_string_behavior = "all"
  }
}

resource "aws_cloudfront_response_headers_policy" "security" {
  name    = "${var.name}-security-headers"
  comment = "Security headers; Cache-Control is left to the origin"

  security_headers_config {
    content_type_options {
      override = true
    }

    frame_options {
      frame_option = "DENY"
      override     = true
    }

    referrer_policy {
      referrer_policy = "no-referrer"
      override        = true
    }

    strict_transport_security {
      access_control_max_age_sec = 31536000
      include_subdomains         = true
      preload                    = true
      override                   = true
    }
  }
}

locals {
  origin_id   = "api-gateway"
  all_methods = ["DELETE", "GET", "HEAD", "OPTIONS", "PATCH", "POST", "PUT"]

  # set by viewer_address.js on every behaviour; the api's QF_CLIENT_IP_HEADER
  client_ip_header = "X-Qf-Viewer-Address"
}

resource "aws_cloudfront_distribution" "this" {
  #checkov:skip=CKV_AWS_310:a single origin (API Gateway, itself multi-AZ); a failover origin group cannot carry POST requests
  #checkov:skip=CKV_AWS_305:an API, not a website: there is no root object
  #checkov:skip=CKV_AWS_174:TLSv1.2_2021 is set when cloudfront_certificate_arn is given; the default *.cloudfront.net certificate does not allow choosing
  #checkov:skip=CKV2_AWS_42:a custom certificate needs the operator's domain (domain_names + cloudfront_certificate_arn); the default certificate is used without one
  #checkov:skip=CKV_AWS_86:standard logs need an S3 bucket with ACLs, given as cloudfront_log_bucket; requests are also logged at API Gateway
  #checkov:skip=CKV_AWS_374:no geo restriction: the API serves every country; WAF rate-limits per client
  enabled         = true
  is_ipv6_enabled = true
  http_version    = "http2and3"
  comment         = "${var.name} api"
  price_class     = var.price_class
  aliases         = var.domain_names
  web_acl_id      = aws_wafv2_web_acl.this.arn

  origin {
    origin_id   = local.origin_id
    domain_name = local.api_domain
    origin_path = "/${local.stage_name}"

    # what the ALB requires (origin verification above); a viewer's own header of that
    # name is replaced
    custom_header {
      name  = var.origin_header_name
      value = local.origin_secret
    }

    custom_origin_config {
      http_port                = 80
      https_port               = 443
      origin_protocol_policy   = "https-only"
      origin_ssl_protocols     = ["TLSv1.2"]
      origin_read_timeout      = 30
      origin_keepalive_timeout = 60
    }
  }

  default_cache_behavior {
    target_origin_id           = local.origin_id
    allowed_methods            = local.all_methods
    cached_methods             = ["GET", "HEAD"]
    viewer_protocol_policy     = "https-only"
    compress                   = true
    cache_policy_id            = aws_cloudfront_cache_policy.origin_controlled.id
    origin_request_policy_id   = aws_cloudfront_origin_request_policy.api.id
    response_headers_policy_id = aws_cloudfront_response_headers_policy.security.id

    function_association {
      event_type   = "viewer-request"
      function_arn = aws_cloudfront_function.viewer_address.arn
    }
  }

  dynamic "ordered_cache_behavior" {
    for_each = var.edge_cached_paths
    content {
      path_pattern               = ordered_cache_behavior.value
      target_origin_id           = local.origin_id
      allowed_methods            = ["GET", "HEAD", "OPTIONS"]
      cached_methods             = ["GET", "HEAD"]
      viewer_protocol_policy     = "https-only"
      compress                   = true
      cache_policy_id            = aws_cloudfront_cache_policy.edge_public[ordered_cache_behavior.value].id
      origin_request_policy_id   = aws_cloudfront_origin_request_policy.edge_public.id
      response_headers_policy_id = aws_cloudfront_response_headers_policy.security.id

      # every behaviour that reaches the origin says who the viewer is
      function_association {
        event_type   = "viewer-request"
        function_arn = aws_cloudfront_function.viewer_address.arn
      }
    }
  }

  dynamic "logging_config" {
    for_each = var.cloudfront_log_bucket == null ? [] : [var.cloudfront_log_bucket]
    content {
      bucket          = logging_config.value
      include_cookies = false
      prefix          = "${var.name}/"
    }
  }

  restrictions {
    geo_restriction {
      restriction_type = "none"
    }
  }

  viewer_certificate {
    cloudfront_default_certificate = var.cloudfront_certificate_arn == null
    acm_certificate_arn            = var.cloudfront_certificate_arn
    ssl_support_method             = var.cloudfront_certificate_arn == null ? null : "sni-only"
    minimum_protocol_version       = var.cloudfront_certificate_arn == null ? "TLSv1" : "TLSv1.2_2021"
  }

  tags = var.tags
}

# --- WAF (CloudFront scope: us-east-1) -------------------------------------------------------

locals {
  account_id = data.aws_caller_identity.current.account_id
  partition  = data.aws_partition.current.partition

  waf_logs_key_policy = jsonencode({
    Version = "2012-10-17"
    Statement = [
      {
        Sid       = "AccountAdministersKeyThroughIam"
        Effect    = "Allow"
        Principal = { AWS = "arn:${local.partition}:iam::${local.account_id}:root" }
        Action    = "kms:*"
        Resource  = "*"
      },
      {
        Sid       = "CloudWatchLogsInUsEast1"
        Effect    = "Allow"
        Principal = { Service = "logs.us-east-1.amazonaws.com" }
        Action    = ["kms:Encrypt*", "kms:Decrypt*", "kms:ReEncrypt*", "kms:GenerateDataKey*", "kms:Describe*"]
        Resource  = "*"
        Condition = { ArnLike = { "kms:EncryptionContext:aws:logs:arn" = "arn:${local.partition}:logs:us-east-1:${local.account_id}:log-group:*" } }
      },
    ]
  })
}

resource "aws_kms_key" "waf_logs" {
  provider = aws.us_east_1

  description             = "${var.name}: WAF logs (us-east-1)"
  enable_key_rotation     = true
  deletion_window_in_days = 30
  policy                  = local.waf_logs_key_policy
  tags                    = var.tags
}

resource "aws_cloudwatch_log_group" "waf" {
  provider = aws.us_east_1

  # WAF requires the aws-waf-logs- prefix.
  name              = "aws-waf-logs-${var.name}"
  retention_in_days = var.log_retention_days
  kms_key_id        = aws_kms_key.waf_logs.arn
  tags              = var.tags
}

resource "aws_wafv2_web_acl" "this" {
  provider = aws.us_east_1

  name        = var.name
  description = "queuefront edge: per-IP rate limit and AWS managed rules"
  scope       = "CLOUDFRONT"

  default_action {
    allow {}
  }

  rule {
    name     = "rate-per-ip"
    priority = 0

    action {
      block {}
    }

    statement {
      rate_based_statement {
        limit                 = var.waf_rate_limit
        evaluation_window_sec = 300
        aggregate_key_type    = "IP"
      }
    }

    visibility_config {
      cloudwatch_metrics_enabled = true
      metric_name                = "${var.name}-rate-per-ip"
      sampled_requests_enabled   = true
    }
  }

  rule {
    name     = "aws-ip-reputation"
    priority = 1

    override_action {
      none {}
    }

    statement {
      managed_rule_group_statement {
        vendor_name = "AWS"
        name        = "AWSManagedRulesAmazonIpReputationList"
      }
    }

    visibility_config {
      cloudwatch_metrics_enabled = true
      metric_name                = "${var.name}-ip-reputation"
      sampled_requests_enabled   = true
    }
  }

  # Tor exits and anonymising VPNs are blocked (vote stuffing); hosting-provider addresses
  # are only counted, since integrations may legitimately call from a cloud.
  rule {
    name     = "aws-anonymous-ip"
    priority = 2

    override_action {
      none {}
    }

    statement {
      managed_rule_group_statement {
        vendor_name = "AWS"
        name        = "AWSManagedRulesAnonymousIpList"

        rule_action_override {
          name = "HostingProviderIPList"
          action_to_use {
            count {}
          }
        }
      }
    }

    visibility_config {
      cloudwatch_metrics_enabled = true
      metric_name                = "${var.name}-anonymous-ip"
      sampled_requests_enabled   = true
    }
  }

  rule {
    name     = "aws-common"
    priority = 3

    override_action {
      none {}
    }

    statement {
      managed_rule_group_statement {
        vendor_name = "AWS"
        name        = "AWSManagedRulesCommonRuleSet"

        # Bodies up to QF_MAX_MESSAGE_BYTES (1 MiB, SQS's limit) are legitimate; the rule
        # set blocks anything over 8 KiB.
        rule_action_override {
          name = "SizeRestrictions_BODY"
          action_to_use {
            count {}
          }
        }
      }
    }

    visibility_config {
      cloudwatch_metrics_enabled = true
      metric_name                = "${var.name}-common"
      sampled_requests_enabled   = true
    }
  }

  rule {
    name     = "aws-known-bad-inputs"
    priority = 4

    override_action {
      none {}
    }

    statement {
      managed_rule_group_statement {
        vendor_name = "AWS"
        name        = "AWSManagedRulesKnownBadInputsRuleSet"
      }
    }

    visibility_config {
      cloudwatch_metrics_enabled = true
      metric_name                = "${var.name}-known-bad-inputs"
      sampled_requests_enabled   = true
    }
  }

  visibility_config {
    cloudwatch_metrics_enabled = true
    metric_name                = var.name
    sampled_requests_enabled   = true
  }

  tags = var.tags
}

resource "aws_wafv2_web_acl_logging_configuration" "this" {
  provider = aws.us_east_1

  resource_arn            = aws_wafv2_web_acl.this.arn
  log_destination_configs = [aws_cloudwatch_log_group.waf.arn]

  redacted_fields {
    single_header {
      name = "authorization"
    }
  }

  redacted_fields {
    single_header {
      name = "x-api-key"
    }
  }

  redacted_fields {
    single_header {
      name = lower(var.origin_header_name)
    }
  }
}
