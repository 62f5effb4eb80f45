"""In front of the api: CloudFront (edge-cached answers) and API Gateway (throttles and
its 30 s integration limit).

API Gateway throttles with token buckets (API Gateway developer guide, "Throttling
requests to your HTTP API"): one for the account in the Region (AWS's quota), one per
route — the routes of ``route_throttles`` have their own rate and burst, every other
request goes through the ``$default`` route, throttled by the stage's default route
settings (``default_throttle``). A request must get a token from its route's bucket and
from the account's; the rest are 429s.

CloudFront answers an edge-cached URL from its cache and asks the origin once per
``s-maxage``; when that refresh fails with a 503 or a 504, CloudFront caches the error for
its error-caching TTL and every viewer of the URL meanwhile gets it. A 429 is not among
the codes CloudFront caches (CloudFront Developer Guide, "HTTP 4xx and 5xx status codes
that CloudFront caches"): the URL stays stale, its viewers get the 429 and their requests
go to the origin again — modelled as one retry per step, with every viewer of the URL in
that step failing (the origin requests of a real stale URL are more: one per collapsed
round trip).
"""

from __future__ import annotations

import math
from collections.abc import Mapping

from bench.scaling.terraform import Policy
from bench.scaling.tfedge import Throttle

DEFAULT_ROUTE = "$default"
ROUTE_CLASS = {
    "high": "high",
    "normal": "normal",
    "cached_hit": "cached",
    "cached_miss": "cached",
    "ingest": "ingest",
    "edge_origin": "normal",
    "edge_direct": "normal",
}
"""Which of the scenario's ``[routes]`` a flow of requests takes."""


class TokenBucket:
    """Requests arrive spread over a step while tokens flow in at ``rate``: a step passes
    what the bucket held plus what flowed in meanwhile, and only what is left over is
    capped at ``burst``. (Capping before taking would hold a route whose rate exceeds its
    burst, 15,000/s with a 5,000 bucket say, to ``burst`` per step.)"""

    def __init__(self, throttle: Throttle) -> None:
        self.rate = throttle.rate
        self.burst = throttle.burst
        self.tokens = throttle.burst
        self._available = throttle.burst

    def refill(self, dt: float) -> None:
        self._available = self.tokens + self.rate * dt

    def take(self, n: int) -> int:
        granted = min(n, int(self._available))
        self._available -= granted
        self.tokens = min(self.burst, self._available)
        return granted


def split(total: int, wants: Mapping[str, int]) -> dict[str, int]:
    """``total`` shared in proportion to ``wants`` (largest remainders), never above them."""
    asked = sum(wants.values())
    if total >= asked:
        return dict(wants)
    if asked == 0:
        return {k: 0 for k in wants}
    exact = {k: total * v / asked for k, v in wants.items()}
    out = {k: math.floor(v) for k, v in exact.items()}
    rest = total - sum(out.values())
    for k in sorted(exact, key=lambda k: exact[k] - out[k], reverse=True)[:rest]:
        out[k] += 1
    return out


class ApiGateway:
    """The account's and the routes' buckets; ``admit`` says how many requests pass."""

    def __init__(
        self, policy: Policy, account: Throttle, routes: Mapping[str, str], enabled: bool
    ) -> None:
        self.enabled = enabled
        self.account = TokenBucket(account)
        self.route_of = dict(routes)
        self.buckets: dict[str, TokenBucket] = {DEFAULT_ROUTE: TokenBucket(policy.default_throttle)}
        for key, throttle in policy.route_throttles.items():
            self.buckets[key] = TokenBucket(throttle)

    def bucket(self, flow: str) -> str:
        key = self.route_of.get(ROUTE_CLASS.get(flow, flow), DEFAULT_ROUTE)
        return key if key in self.buckets else DEFAULT_ROUTE

    def admit(self, dt: float, wants: Mapping[str, int]) -> dict[str, int]:
        """Requests per flow (high, normal, cached, ingest, edge refreshes) → how many
        pass; the rest are throttled (429)."""
        if not self.enabled:
            return dict(wants)
        self.account.refill(dt)
        for b in self.buckets.values():
            b.refill(dt)
        passed: dict[str, int] = {}
        by_bucket: dict[str, dict[str, int]] = {}
        for flow, n in wants.items():
            by_bucket.setdefault(self.bucket(flow), {})[flow] = n
        for key, flows in by_bucket.items():
            granted = self.buckets[key].take(sum(flows.values()))
            passed.update(split(granted, flows))
        return split(self.account.take(sum(passed.values())), passed)


class EdgeCache:
    """CloudFront's copies of the edge-cached URLs: how many viewers get an error because
    a refresh failed."""

    def __init__(self, objects: int, ttl_s: float, error_ttl_s: float, step_s: float) -> None:
        self.objects = max(1, objects)
        self.ttl_s = ttl_s
        self.error_ttl_s = error_ttl_s
        self.step_s = step_s
        self.failing: list[float] = []
        """Until when each URL whose refresh failed serves an error."""
        self._due = 0.0
        self._retry = 0

    def refreshes_due(self, t: float, dt: float) -> int:
        """Origin requests CloudFront makes in [t, t + dt): each URL once per TTL, and
        again for those whose last attempt was throttled."""
        self._due += self.objects * dt / self.ttl_s
        n = int(self._due)
        self._due -= n
        n, self._retry = n + self._retry, 0
        return n

    def refresh_failed(self, n: int, now: float, *, cached: bool = True) -> None:
        if cached:
            self.failing.extend([now + self.error_ttl_s] * n)
        else:
            self.failing.extend([now + 1.5 * self.step_s] * n)  # the next step, until a retry
            self._retry += n

    def error_share(self, now: float) -> float:
        """Share of the viewer requests at ``now`` that get an error."""
        self.failing = [u for u in self.failing if u > now]
        return min(1.0, len(self.failing) / self.objects)
