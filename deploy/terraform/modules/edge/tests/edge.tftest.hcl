# The edge module against a mocked AWS provider: what CloudFront keys its cache on, and that
# the ALB serves only what came through CloudFront. `apply` (nothing leaves this machine):
# the origin secret is read back after it is written, so its value is known at apply only.

mock_provider "aws" {
  source = "../../tests/mocks"
}

mock_provider "aws" {
  alias  = "us_east_1"
  source = "../../tests/mocks"
}

override_data {
  target = data.aws_secretsmanager_secret_version.origin
  values = { secret_string = "current-origin-secret-0123456789" }
}

override_data {
  target = data.aws_secretsmanager_secret_version.origin_previous[0]
  values = { secret_string = "previous-origin-secret-012345678" }
}

override_resource {
  target = aws_cloudfront_cache_policy.origin_controlled
  values = { id = "cp-origin-controlled" }
}

override_resource {
  target = aws_cloudfront_origin_request_policy.api
  values = { id = "orp-api" }
}

override_resource {
  target = aws_wafv2_web_acl.api
  values = { arn = "arn:aws:wafv2:eu-west-1:123456789012:regional/webacl/qf-api/11111111-1111-1111-1111-111111111111" }
}

override_resource {
  target = aws_lb.nlb
  values = { arn = "arn:aws:elasticloadbalancing:eu-west-1:123456789012:loadbalancer/net/qf-api-link/0123456789abcdef", dns_name = "qf-api-link-0123.elb.eu-west-1.amazonaws.com" }
}

variables {
  name        = "qf"
  vpc_id      = "vpc-1"
  subnet_ids  = ["subnet-a", "subnet-b"]
  kms_key_arn = "arn:aws:kms:eu-west-1:123456789012:key/1111"
}

run "the_cache_key_holds_every_credential_the_origin_receives" {
  command = apply

  # queuefront's credentials (service/auth.py: X-Api-Key, Authorization; tests/terraform
  # checks this list against the code). For each one CloudFront forwards to the origin on
  # the default behaviour, the cache key must contain it, or one client's authenticated
  # answer would be served to another.
  assert {
    condition = alltrue([
      for h in ["Authorization", "X-Api-Key"] : contains(
        one(one(one(aws_cloudfront_cache_policy.origin_controlled.parameters_in_cache_key_and_forwarded_to_origin).headers_config).headers).items, h
      )
      if(
        one(aws_cloudfront_origin_request_policy.api.headers_config).header_behavior == "allExcept" ?
        !contains(one(one(aws_cloudfront_origin_request_policy.api.headers_config).headers).items, h) :
        one(aws_cloudfront_origin_request_policy.api.headers_config).header_behavior != "none"
      )
    ])
    error_message = "a credential header forwarded to the origin is missing from the cache key"
  }

  assert {
    condition     = one(one(aws_cloudfront_cache_policy.origin_controlled.parameters_in_cache_key_and_forwarded_to_origin).headers_config).header_behavior == "whitelist"
    error_message = "the default behaviour's cache key lists its headers"
  }

  assert {
    condition     = one(aws_cloudfront_distribution.this.default_cache_behavior).cache_policy_id == "cp-origin-controlled" && one(aws_cloudfront_distribution.this.default_cache_behavior).origin_request_policy_id == "orp-api"
    error_message = "the default behaviour uses the credential-keyed cache policy and forwards the viewer's headers"
  }

  assert {
    condition     = aws_cloudfront_cache_policy.origin_controlled.default_ttl == 0 && aws_cloudfront_cache_policy.origin_controlled.min_ttl == 0
    error_message = "nothing is cached unless the origin says s-maxage"
  }
}

run "public_edge_cached_paths_forward_no_credentials" {
  command = apply

  variables {
    edge_cache_query_strings = { "/api/polls" = ["page"] }
  }

  assert {
    condition = alltrue([
      for b in aws_cloudfront_distribution.this.ordered_cache_behavior :
      b.cache_policy_id == aws_cloudfront_cache_policy.edge_public[b.path_pattern].id && toset(b.allowed_methods) == toset(["GET", "HEAD", "OPTIONS"])
    ])
    error_message = "each shared-cache path is GET-only and uses its own cache policy"
  }

  assert {
    condition = alltrue([
      for b in aws_cloudfront_distribution.this.ordered_cache_behavior :
      b.origin_request_policy_id == aws_cloudfront_origin_request_policy.edge_public.id
    ])
    error_message = "the shared-cache paths forward through the edge-public origin request policy"
  }

  assert {
    condition = (
      one(aws_cloudfront_origin_request_policy.edge_public.headers_config).header_behavior == "whitelist" &&
      one(one(aws_cloudfront_origin_request_policy.edge_public.headers_config).headers).items == toset(["X-Qf-Viewer-Address"]) &&
      one(aws_cloudfront_origin_request_policy.edge_public.cookies_config).cookie_behavior == "none" &&
      one(aws_cloudfront_origin_request_policy.edge_public.query_strings_config).query_string_behavior == "none"
    )
    error_message = "the shared-cache paths send the viewer's address and nothing else (no credential, no cookie) beyond their cache key"
  }

  assert {
    condition     = alltrue([for p in aws_cloudfront_cache_policy.edge_public : one(one(p.parameters_in_cache_key_and_forwarded_to_origin).headers_config).header_behavior == "none"])
    error_message = "the shared cache is keyed on no header"
  }

  # random query strings neither split the cache nor reach the origin: only the ones the
  # route reads are in the key
  assert {
    condition = (
      one(one(aws_cloudfront_cache_policy.edge_public["/api/polls"].parameters_in_cache_key_and_forwarded_to_origin).query_strings_config).query_string_behavior == "whitelist" &&
      one(one(one(aws_cloudfront_cache_policy.edge_public["/api/polls"].parameters_in_cache_key_and_forwarded_to_origin).query_strings_config).query_strings).items == toset(["page"]) &&
      one(one(aws_cloudfront_cache_policy.edge_public["/api/polls/*/results"].parameters_in_cache_key_and_forwarded_to_origin).query_strings_config).query_string_behavior == "none"
    )
    error_message = "each edge-cached path keys on exactly the query strings its route reads (none when none is listed)"
  }

  assert {
    condition     = [for b in aws_cloudfront_distribution.this.ordered_cache_behavior : b.path_pattern] == ["/api/polls", "/api/polls/*/results"]
    error_message = "the edge-cached paths are the public GET routes with edge_ttl_s"
  }
}

# Every behaviour that reaches the origin: the function sets the viewer's address, an origin
# request policy forwards it, and no cache key holds it (it would split every cache entry
# per viewer).
run "every_behaviour_says_who_the_viewer_is" {
  command = apply

  assert {
    condition = length(output.behaviors) == 1 + length(var.edge_cached_paths) && alltrue([
      for b in output.behaviors : one([for f in b.function_association : f.function_arn if f.event_type == "viewer-request"]) == aws_cloudfront_function.viewer_address.arn
    ])
    error_message = "a behaviour reaches the origin without the viewer-address function"
  }

  assert {
    condition = alltrue([
      for b in output.behaviors : (
        b.origin_request_policy_id == aws_cloudfront_origin_request_policy.api.id ?
        one(aws_cloudfront_origin_request_policy.api.headers_config).header_behavior == "allExcept" && !contains(one(one(aws_cloudfront_origin_request_policy.api.headers_config).headers).items, "X-Qf-Viewer-Address") :
        b.origin_request_policy_id == aws_cloudfront_origin_request_policy.edge_public.id && contains(one(one(aws_cloudfront_origin_request_policy.edge_public.headers_config).headers).items, "X-Qf-Viewer-Address")
      )
    ])
    error_message = "a behaviour's origin request policy does not forward X-Qf-Viewer-Address"
  }

  assert {
    condition = alltrue(flatten([
      for p in concat([aws_cloudfront_cache_policy.origin_controlled], values(aws_cloudfront_cache_policy.edge_public)) : [
        for h in one(one(p.parameters_in_cache_key_and_forwarded_to_origin).headers_config).headers : !contains(h.items, "X-Qf-Viewer-Address")
      ]
    ]))
    error_message = "the viewer's address is part of a cache key"
  }
}

run "cloudfront_tells_the_api_who_the_viewer_is" {
  command = apply

  assert {
    condition     = one([for f in one(aws_cloudfront_distribution.this.default_cache_behavior).function_association : f.function_arn if f.event_type == "viewer-request"]) == aws_cloudfront_function.viewer_address.arn
    error_message = "the default behaviour runs the viewer-address function on every viewer request"
  }

  assert {
    condition     = strcontains(aws_cloudfront_function.viewer_address.code, "event.viewer.ip") && strcontains(aws_cloudfront_function.viewer_address.code, "x-qf-viewer-address")
    error_message = "the function sets x-qf-viewer-address from the address CloudFront saw"
  }

  assert {
    condition     = output.client_ip_header == "X-Qf-Viewer-Address"
    error_message = "the header the api is told to trust is the one the function sets"
  }
}

run "only_cloudfront_reaches_the_api" {
  command = apply

  assert {
    condition     = one(aws_cloudfront_distribution.this.origin).custom_header == toset([{ name = "X-Origin-Verify", value = "current-origin-secret-0123456789" }])
    error_message = "CloudFront adds the origin secret to every origin request"
  }

  assert {
    condition     = one(aws_cloudfront_distribution.this.origin).domain_name == "abcdef1234.execute-api.eu-west-1.amazonaws.com" && one(aws_cloudfront_distribution.this.origin).origin_path == "/live"
    error_message = "CloudFront's origin is the REST API's stage"
  }

  assert {
    condition     = aws_cloudfront_distribution.this.web_acl_id == "arn:aws:wafv2:us-east-1:123456789012:global/webacl/queuefront/00000000-0000-0000-0000-000000000000"
    error_message = "CloudFront's WAF sits on the distribution"
  }

  # the first hop after CloudFront: the API's stage carries a WAF that blocks (403) whatever
  # lacks the origin secret, before API Gateway throttles, bills or integrates anything
  assert {
    condition = (
      aws_wafv2_web_acl.api.scope == "REGIONAL" &&
      aws_wafv2_web_acl_association.api.resource_arn == aws_api_gateway_stage.live.arn &&
      aws_wafv2_web_acl_association.api.web_acl_arn == aws_wafv2_web_acl.api.arn
    )
    error_message = "the API's stage has the regional WAF"
  }

  assert {
    condition     = length(one(aws_wafv2_web_acl.api.default_action).block) == 1 && one(one(one(aws_wafv2_web_acl.api.default_action).block).custom_response).response_code == 403
    error_message = "the API's WAF blocks by default (403)"
  }

  assert {
    condition = alltrue([
      for r in aws_wafv2_web_acl.api.rule :
      length(one(r.action).allow) == 1 &&
      one(one(r.statement).byte_match_statement).positional_constraint == "EXACTLY" &&
      one(one(one(r.statement).byte_match_statement).field_to_match).single_header[0].name == "x-origin-verify"
    ]) && toset([for r in aws_wafv2_web_acl.api.rule : one(one(r.statement).byte_match_statement).search_string]) == toset(["current-origin-secret-0123456789"])
    error_message = "the API's WAF allows exactly the requests whose X-Origin-Verify is the current secret, and no other rule allows anything"
  }

  assert {
    condition     = one(aws_api_gateway_rest_api.this.endpoint_configuration).types == tolist(["REGIONAL"])
    error_message = "a regional API (the WAF association needs one; CloudFront is the edge)"
  }

  # behind the WAF: every integration goes through the VPC link to the internal NLB
  assert {
    condition = alltrue(flatten([
      for path, ops in output.openapi.paths : [
        for m, op in ops : op["x-amazon-apigateway-integration"].connectionType == "VPC_LINK" && op["x-amazon-apigateway-integration"].connectionId == aws_api_gateway_vpc_link.this.id
      ]
    ]))
    error_message = "every route goes to the ALB through the VPC link (ingest_direct is off)"
  }

  assert {
    condition     = aws_lb.nlb.internal && aws_lb.api.internal && aws_api_gateway_vpc_link.this.target_arns == tolist([aws_lb.nlb.arn]) && aws_lb_target_group.alb.target_type == "alb" && aws_lb_target_group_attachment.alb.target_id == aws_lb.api.arn
    error_message = "the VPC link reaches the internal NLB, which forwards to the internal ALB; neither is public"
  }

  assert {
    condition     = aws_vpc_security_group_ingress_rule.alb_from_nlb.referenced_security_group_id == aws_security_group.nlb.id && aws_vpc_security_group_egress_rule.nlb_to_alb.referenced_security_group_id == aws_security_group.alb.id
    error_message = "the ALB admits the NLB only"
  }

  # defence in depth: the ALB still forwards only what carries the secret
  assert {
    condition     = one(aws_lb_listener.api.default_action).type == "fixed-response" && one(one(aws_lb_listener.api.default_action).fixed_response).status_code == "403"
    error_message = "a request without the origin secret gets 403 at the ALB too"
  }

  assert {
    condition = (
      one(aws_lb_listener_rule.from_cloudfront.action).type == "forward" &&
      one(one(aws_lb_listener_rule.from_cloudfront.condition).http_header).http_header_name == "X-Origin-Verify" &&
      one(one(aws_lb_listener_rule.from_cloudfront.condition).http_header).values == toset(["current-origin-secret-0123456789"])
    )
    error_message = "only requests carrying the current secret are forwarded to the api"
  }

  # every rule that forwards anything to the api requires the secret (a forward rule
  # without the header condition would open the ALB to whatever reaches it)
  assert {
    condition = alltrue([
      for r in [aws_lb_listener_rule.from_cloudfront, aws_lb_listener_rule.probes_not_public] :
      one(r.action).type != "forward" || anytrue(flatten([
        for c in r.condition : [for h in c.http_header : h.http_header_name == "X-Origin-Verify" && !contains(h.values, "*")]
      ]))
    ]) && one(aws_lb_listener.api.default_action).type != "forward"
    error_message = "a listener rule (or the default action) forwards to the api without requiring the origin secret"
  }

  # CloudFront's WAF: the per-IP rule blocks, and no managed rule group is set to count only
  assert {
    condition = (
      [for r in aws_wafv2_web_acl.this.rule : length(one(r.action).block) if r.name == "rate-per-ip"] == [1] &&
      alltrue([for r in aws_wafv2_web_acl.this.rule : length(one(r.override_action).none) == 1 if r.name != "rate-per-ip"]) &&
      length(one(aws_wafv2_web_acl.this.default_action).allow) == 1
    )
    error_message = "the edge WAF's rules must act: the rate rule blocks, the managed groups keep their own actions"
  }

  assert {
    condition = (
      one(aws_lb_listener_rule.probes_not_public.action).type == "fixed-response" &&
      aws_lb_listener_rule.probes_not_public.priority < aws_lb_listener_rule.from_cloudfront.priority &&
      length(setintersection(one(one(aws_lb_listener_rule.probes_not_public.condition).path_pattern).values, toset(["/metrics", "/readyz"]))) == 2
    )
    error_message = "/metrics and /readyz are refused at the edge before anything is forwarded"
  }
}

run "each_throttled_route_is_its_own_method_with_its_own_throttle" {
  command = apply

  variables {
    default_throttle = { burst = 2000, rate = 1000 }
    route_throttles = {
      "POST /api/login"                 = { burst = 200, rate = 100 }
      "POST /api/polls/{poll_id}/votes" = { burst = 5000, rate = 2000 }
    }
  }

  assert {
    condition     = aws_api_gateway_method_settings.all.method_path == "*/*" && one(aws_api_gateway_method_settings.all.settings).throttling_burst_limit == 2000 && one(aws_api_gateway_method_settings.all.settings).throttling_rate_limit == 1000
    error_message = "the stage-wide throttle"
  }

  assert {
    condition = (
      aws_api_gateway_method_settings.route["POST /api/polls/{poll_id}/votes"].method_path == "api/polls/{poll_id}/votes/POST" &&
      one(aws_api_gateway_method_settings.route["POST /api/polls/{poll_id}/votes"].settings).throttling_rate_limit == 2000 &&
      aws_api_gateway_method_settings.route["POST /api/login"].method_path == "api/login/POST" &&
      one(aws_api_gateway_method_settings.route["POST /api/login"].settings).throttling_burst_limit == 200
    )
    error_message = "each route's throttle applies to its own method"
  }

  assert {
    condition = (
      output.openapi.paths["/api/polls/{poll_id}/votes"].post["x-amazon-apigateway-integration"].requestParameters == { "integration.request.path.poll_id" = "method.request.path.poll_id" } &&
      output.openapi.paths["/api/polls/{poll_id}/votes"].post["x-amazon-apigateway-integration"].uri == "http://qf-api-link-0123.elb.eu-west-1.amazonaws.com:80/api/polls/{poll_id}/votes" &&
      output.openapi.paths["/{proxy+}"]["x-amazon-apigateway-any-method"]["x-amazon-apigateway-integration"].uri == "http://qf-api-link-0123.elb.eu-west-1.amazonaws.com:80/{proxy}"
    )
    error_message = "the routes forward their path (and its parameters) to the ALB"
  }
}

run "the_alb_health_checks_liveness_on_the_probe_port" {
  command = apply

  assert {
    condition     = aws_lb_target_group.api.health_check[0].port == "9100" && aws_lb_target_group.api.health_check[0].path == "/healthz"
    error_message = "the ALB health-checks /healthz on the api's probe port, not the public one"
  }
}

run "rotation_accepts_both_secrets_for_one_apply" {
  command = apply

  variables {
    origin_secret_accept_previous = true
  }

  assert {
    condition     = toset([for r in aws_wafv2_web_acl.api.rule : one(one(r.statement).byte_match_statement).search_string]) == toset(["current-origin-secret-0123456789", "previous-origin-secret-012345678"])
    error_message = "while rotating, the API's WAF lets the previous secret in too"
  }

  assert {
    condition     = one(one(aws_lb_listener_rule.from_cloudfront.condition).http_header).values == toset(["current-origin-secret-0123456789", "previous-origin-secret-012345678"])
    error_message = "while rotating, the ALB accepts the previous secret too"
  }
}

run "ingest_direct_sends_the_votes_route_to_the_ingest_queue" {
  command = apply

  variables {
    route_throttles = {
      "POST /api/login"                 = { burst = 200, rate = 100 }
      "POST /api/polls/{poll_id}/votes" = { burst = 5000, rate = 2000 }
    }
    ingest_direct = {
      route_key  = "POST /api/polls/{poll_id}/votes"
      route_name = "vote"
      queue_name = "qf-ingest"
      queue_arn  = "arn:aws:sqs:eu-west-1:123456789012:qf-ingest"
    }
  }

  assert {
    condition = (
      output.openapi.paths["/api/polls/{poll_id}/votes"].post["x-amazon-apigateway-integration"].type == "aws" &&
      output.openapi.paths["/api/polls/{poll_id}/votes"].post["x-amazon-apigateway-integration"].uri == "arn:aws:apigateway:eu-west-1:sqs:path/123456789012/qf-ingest" &&
      output.openapi.paths["/api/polls/{poll_id}/votes"].post["x-amazon-apigateway-integration"].credentials == aws_iam_role.ingest_direct[0].arn &&
      output.openapi.paths["/api/polls/{poll_id}/votes"].post["x-amazon-apigateway-integration"].passthroughBehavior == "never"
    )
    error_message = "the votes route is an SQS integration on the ingest queue, signed with its own role; non-JSON bodies are refused"
  }

  assert {
    condition = output.openapi.paths["/api/polls/{poll_id}/votes"].post["x-amazon-apigateway-integration"].requestTemplates["application/json"] == join("&", [
      "Action=SendMessage",
      "MessageBody=$util.urlEncode($input.body)",
      "MessageAttribute.1.Name=route", "MessageAttribute.1.Value.DataType=String", "MessageAttribute.1.Value.StringValue=vote",
      "MessageAttribute.2.Name=request_id", "MessageAttribute.2.Value.DataType=String", "MessageAttribute.2.Value.StringValue=$util.urlEncode($context.requestId)",
      "MessageAttribute.3.Name=received_at_ms", "MessageAttribute.3.Value.DataType=Number", "MessageAttribute.3.Value.StringValue=$util.urlEncode($context.requestTimeEpoch)",
      "MessageAttribute.4.Name=path.poll_id", "MessageAttribute.4.Value.DataType=String", "MessageAttribute.4.Value.StringValue=$util.urlEncode($input.params().path.get('poll_id'))",
    ])
    error_message = "SendMessage with the body as the message and the route, API Gateway's request id, the time and the path parameters as attributes (the shape workers/writer/direct.py reads)"
  }

  assert {
    condition     = output.openapi.paths["/api/polls/{poll_id}/votes"].post["x-amazon-apigateway-integration"].requestParameters == { "integration.request.header.Content-Type" = "'application/x-www-form-urlencoded'" }
    error_message = "the query API's form encoding"
  }

  assert {
    condition = (
      output.openapi.paths["/api/polls/{poll_id}/votes"].post["x-amazon-apigateway-integration"].responses["default"].statusCode == "202" &&
      output.openapi.paths["/api/polls/{poll_id}/votes"].post["x-amazon-apigateway-integration"].responses["5\\d{2}"].statusCode == "503"
    )
    error_message = "202 when SQS has the vote, 503 when it does not"
  }

  assert {
    condition     = output.openapi.paths["/api/login"].post["x-amazon-apigateway-integration"].connectionType == "VPC_LINK"
    error_message = "the other routes still go to the api"
  }

  assert {
    condition = jsondecode(aws_iam_role_policy.ingest_direct[0].policy).Statement == [
      { Sid = "SendToIngest", Effect = "Allow", Action = ["sqs:SendMessage"], Resource = ["arn:aws:sqs:eu-west-1:123456789012:qf-ingest"] },
      { Sid = "IngestQueueEncryption", Effect = "Allow", Action = ["kms:GenerateDataKey", "kms:Decrypt"], Resource = [var.kms_key_arn], Condition = { StringEquals = { "kms:ViaService" = "sqs.eu-west-1.amazonaws.com" } } },
    ]
    error_message = "the integration's role may send to the ingest queue (and use its key through SQS), nothing else"
  }

  assert {
    condition     = jsondecode(aws_iam_role.ingest_direct[0].assume_role_policy).Statement[0].Principal.Service == "apigateway.amazonaws.com"
    error_message = "only API Gateway assumes it"
  }
}

run "ingest_direct_needs_a_throttled_route" {
  command = plan

  variables {
    route_throttles = {}
    ingest_direct = {
      route_key  = "POST /api/polls/{poll_id}/votes"
      route_name = "vote"
      queue_name = "qf-ingest"
      queue_arn  = "arn:aws:sqs:eu-west-1:123456789012:qf-ingest"
    }
  }

  expect_failures = [aws_api_gateway_rest_api.this]
}
