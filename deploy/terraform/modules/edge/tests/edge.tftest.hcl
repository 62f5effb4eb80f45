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
    condition     = one(aws_lb_listener.api.default_action).type == "fixed-response" && one(one(aws_lb_listener.api.default_action).fixed_response).status_code == "403"
    error_message = "a request without the origin secret (straight to execute-api) gets 403"
  }

  assert {
    condition = (
      one(aws_lb_listener_rule.from_cloudfront.action).type == "forward" &&
      one(one(aws_lb_listener_rule.from_cloudfront.condition).http_header).http_header_name == "X-Origin-Verify" &&
      one(one(aws_lb_listener_rule.from_cloudfront.condition).http_header).values == toset(["current-origin-secret-0123456789"])
    )
    error_message = "only requests carrying the current secret are forwarded to the api"
  }

  assert {
    condition = (
      one(aws_lb_listener_rule.probes_not_public.action).type == "fixed-response" &&
      aws_lb_listener_rule.probes_not_public.priority < aws_lb_listener_rule.from_cloudfront.priority &&
      length(setintersection(one(one(aws_lb_listener_rule.probes_not_public.condition).path_pattern).values, toset(["/metrics", "/readyz"]))) == 2
    )
    error_message = "/metrics and /readyz are refused at the edge before anything is forwarded"
  }

  assert {
    condition     = aws_cloudfront_distribution.this.web_acl_id == "arn:aws:wafv2:us-east-1:123456789012:global/webacl/queuefront/00000000-0000-0000-0000-000000000000"
    error_message = "the WAF sits on the distribution"
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
    condition     = one(one(aws_lb_listener_rule.from_cloudfront.condition).http_header).values == toset(["current-origin-secret-0123456789", "previous-origin-secret-012345678"])
    error_message = "while rotating, the ALB accepts the previous secret too"
  }
}
