"""What the edge module (``deploy/terraform/modules/edge``) puts in front of the api, read
as Terraform would plan it: which API Gateway (a REST API or an HTTP API), its throttles
by route, how long it waits for an integration, which route (if any) sends straight to
SQS (``ingest_direct``), the WAF web ACLs and what each inspects, and the Network Load
Balancers on the way.

**REST API** (``aws_api_gateway_rest_api``): the API is its OpenAPI document
(``local.operations``: path -> method -> ``x-amazon-apigateway-integration``). Throttles
are ``aws_api_gateway_method_settings``: ``*/*`` is the stage's default, which API Gateway
applies to *each method* on its own ("per-API, per-stage throttling limits are applied at
the API method level", API Gateway developer guide, "Throttle requests to your REST
APIs"); ``<path>/<METHOD>`` overrides one method. A request is routed on the
resource-and-method pair: a path and verb the document names explicitly take that method
(and its bucket), everything else falls through to the greedy ``ANY /{proxy+}`` — also on
a path whose resource exists with other verbs only (measured on API Gateway and reported
in ministackorg/ministack#1423). The simulator names that catch-all ``$default``. Whether
the ``ANY`` method's bucket is one for all verbs is not documented; it is taken as one.

**HTTP API** (``aws_apigatewayv2_*``, the edge before the REST API): throttles are the
stage's ``default_route_settings`` (the ``$default`` route) and ``route_settings``.

Anything else — both kinds at once, neither, an integration that is neither a proxy to
the VPC link nor a send to the ingest queue, a throttle on a method the API does not have
— fails the read with :class:`~bench.scaling.hcl.TerraformError`, so a change to the edge
shows up in the simulator's tests instead of being simulated as something else.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from bench.scaling.hcl import (
    Symbol,
    TerraformError,
    Value,
    blocks,
    expand_blocks,
    one_block,
)

if TYPE_CHECKING:  # the scope type only: bench.scaling.terraform imports this module
    from bench.scaling.terraform import Scope

DEFAULT_ROUTE = "$default"
"""The requests no throttled route takes: HTTP API's ``$default`` route, the REST API's
``ANY /{proxy+}`` method."""


@dataclass(frozen=True)
class Throttle:
    rate: float
    burst: float


@dataclass(frozen=True)
class WebAcl:
    """A WAF web ACL of the edge: what it is attached to and how many rules it bills."""

    name: str
    scope: str
    """CLOUDFRONT (every viewer request) or REGIONAL."""
    attached_to: str
    """``cloudfront``, ``api_gateway`` (a REST stage), ``alb`` or ``""`` (nothing)."""
    rules: int
    """Rules and rule groups (each counts once for the monthly fee); a dynamic rule block
    whose ``for_each`` is only known at apply time counts once."""


@dataclass(frozen=True)
class EdgeSpec:
    api_kind: str
    """``rest`` or ``http``."""
    default_throttle: Throttle
    route_throttles: Mapping[str, Throttle]
    """``"METHOD /path"`` (API Gateway's syntax) -> its own bucket."""
    integration_timeout_s: float
    """How long API Gateway waits for the api before it answers 504 itself."""
    direct_routes: Mapping[str, str] = field(default_factory=dict)
    """Routes whose integration sends the request to an SQS queue (``ingest_direct``):
    route key -> queue (``ingest``)."""
    web_acls: tuple[WebAcl, ...] = ()
    network_load_balancers: int = 0
    """Internal NLBs (a REST API's VPC link needs one in front of the ALB)."""


def _entity(value: Value) -> str:
    text = value.ref if isinstance(value, Symbol) else str(value)
    m = re.search(r'queue_names\["(\w+)"\]', text)
    return m.group(1) if m else text


def _instances(
    scope: Scope, body: Mapping[str, Value], where: str
) -> list[dict[str, Value] | None]:
    """``each`` of a resource's instances (``for_each`` expanded); ``[None]`` for a single
    one, ``[]`` for ``count = 0``."""
    if "for_each" in body:
        items = scope.value(body["for_each"])
        pairs = items.items() if isinstance(items, Mapping) else enumerate(items)
        return [{"key": k, "value": v} for k, v in pairs]
    if "count" in body:
        n = int(scope.number(body["count"], f"{where}.count"))
        if n > 1:
            raise TerraformError(f"{where}: count = {n} is not simulated")
        return [None] * n
    return [None]


class EdgeReader:
    """Reads :class:`EdgeSpec` from the edge module's scope."""

    def __init__(self, edge: Scope) -> None:
        self.edge = edge
        self.resources = edge.files.resources

    def _of(self, rtype: str) -> list[tuple[str, dict[str, Value]]]:
        return [(name, body) for (t, name), body in self.resources.items() if t == rtype]

    def read(self) -> EdgeSpec:
        rest = self._of("aws_api_gateway_rest_api")
        http = self._of("aws_apigatewayv2_api")
        if len(rest) + len(http) != 1:
            raise TerraformError(
                f"module.edge: expected one API Gateway API (aws_api_gateway_rest_api or "
                f"aws_apigatewayv2_api), found {len(rest)} REST and {len(http)} HTTP"
            )
        common = {
            "web_acls": self._web_acls(),
            "network_load_balancers": sum(
                len(_instances(self.edge, body, f"aws_lb.{name}"))
                for name, body in self._of("aws_lb")
                if str(self.edge.value(body.get("load_balancer_type", '"application"')))
                == "network"
            ),
        }
        return self._rest(**common) if rest else self._http(**common)

    # --- REST API ------------------------------------------------------------------------

    def _rest(self, **common: object) -> EdgeSpec:
        ops = self.edge.local("operations")
        methods: dict[str, dict[str, Value]] = {}
        for path, by_method in ops.items():
            for verb, op in by_method.items():
                method = "ANY" if verb == "x-amazon-apigateway-any-method" else verb.upper()
                methods[f"{method} {path}"] = op.get("x-amazon-apigateway-integration") or {}
        timeouts: set[float] = set()
        direct: dict[str, str] = {}
        for key, integ in methods.items():
            kind = str(integ.get("type", ""))
            where = f"module.edge: the REST API's {key}"
            if kind == "http_proxy" and integ.get("connectionType") == "VPC_LINK":
                pass
            elif kind == "aws" and ":sqs:path/" in str(integ.get("uri", "")):
                queue = _entity(self.edge.var("ingest_direct")["queue_name"])
                if queue != "ingest":
                    raise TerraformError(f"{where} sends to {queue}: only ingest is simulated")
                direct[key] = queue
            else:
                raise TerraformError(f"{where}: integration {kind or '?'} is not simulated")
            timeouts.add(float(integ["timeoutInMillis"]) / 1000)
        if "ANY /{proxy+}" not in methods:
            raise TerraformError("module.edge: the REST API has no ANY /{proxy+} catch-all")
        default: Throttle | None = None
        routes: dict[str, Throttle] = {}
        for name, body in self._of("aws_api_gateway_method_settings"):
            where = f"aws_api_gateway_method_settings.{name}"
            for each in _instances(self.edge, body, where):
                extra = {"each": each} if each is not None else {}
                path = str(self.edge.value(body["method_path"], **extra))
                settings = one_block(body, "settings", where)
                throttle = Throttle(
                    rate=self.edge.number(settings["throttling_rate_limit"], where, **extra),
                    burst=self.edge.number(settings["throttling_burst_limit"], where, **extra),
                )
                if path == "*/*":
                    default = throttle
                    continue
                resource, _, verb = path.rpartition("/")
                key = f"{verb} /{resource}"
                if key not in methods:
                    raise TerraformError(f"{where}: {path} throttles no method of the REST API")
                routes[key] = throttle
        if default is None:
            raise TerraformError("module.edge: no method settings for */* (the stage default)")
        return EdgeSpec(
            api_kind="rest",
            default_throttle=default,
            route_throttles=routes,
            integration_timeout_s=max(timeouts),
            direct_routes=direct,
            **common,  # type: ignore[arg-type]
        )

    # --- HTTP API --------------------------------------------------------------------------

    def _http(self, **common: object) -> EdgeSpec:
        stages = self._of("aws_apigatewayv2_stage")
        if len(stages) != 1:
            raise TerraformError(f"module.edge: expected one HTTP API stage, found {len(stages)}")
        name, stage = stages[0]
        where = f"aws_apigatewayv2_stage.{name}"
        d = one_block(stage, "default_route_settings", where)
        default = Throttle(
            rate=self.edge.number(d["throttling_rate_limit"], where),
            burst=self.edge.number(d["throttling_burst_limit"], where),
        )
        routes: dict[str, Throttle] = {}
        saved = dict(self.edge.extra)
        try:
            for block, extra in expand_blocks(self.edge, stage, "route_settings"):
                key = str(self.edge.value(block["route_key"], **extra))
                routes[key] = Throttle(
                    rate=self.edge.number(block["throttling_rate_limit"], where, **extra),
                    burst=self.edge.number(block["throttling_burst_limit"], where, **extra),
                )
        finally:
            self.edge.extra = saved
        timeouts = {
            self.edge.number(body["timeout_milliseconds"], f"aws_apigatewayv2_integration.{n}")
            / 1000
            for n, body in self._of("aws_apigatewayv2_integration")
            if "timeout_milliseconds" in body
        }
        if not timeouts:
            raise TerraformError("module.edge: no HTTP API integration with a timeout")
        return EdgeSpec(
            api_kind="http",
            default_throttle=default,
            route_throttles=routes,
            integration_timeout_s=max(timeouts),
            **common,  # type: ignore[arg-type]
        )

    # --- WAF ---------------------------------------------------------------------------------

    def _web_acls(self) -> tuple[WebAcl, ...]:
        attached: dict[str, str] = {}
        for _, body in self._of("aws_wafv2_web_acl_association"):
            acl = self.edge.value(body["web_acl_arn"])
            target = self.edge.value(body["resource_arn"])
            ref = target.ref if isinstance(target, Symbol) else str(target)
            where = "api_gateway" if "aws_api_gateway_stage" in ref else "alb"
            if isinstance(acl, Symbol):
                attached[acl.ref.split(".")[1]] = where
        for _, body in self._of("aws_cloudfront_distribution"):
            acl = self.edge.value(body.get("web_acl_id"))
            if isinstance(acl, Symbol):
                attached[acl.ref.split(".")[1]] = "cloudfront"
        out = []
        for name, body in self._of("aws_wafv2_web_acl"):
            rules = len(blocks(body.get("rule")))
            for dyn in blocks(body.get("dynamic")):
                for key, spec in dyn.items():
                    if key.strip('"') != "rule":
                        continue
                    try:
                        rules += len(self.edge.value(spec["for_each"]))
                    except TerraformError:  # only known at apply time (the origin secret)
                        rules += 1
            out.append(
                WebAcl(
                    name=name,
                    scope=str(self.edge.value(body["scope"])),
                    attached_to=attached.get(name, ""),
                    rules=rules,
                )
            )
        return tuple(out)
