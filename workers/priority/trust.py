"""What the worker takes from a message: only what the route table allows.

Anyone who may send to a queue can write a message, so the worker treats each one as a
claim to check, not as instructions. It acts on a message only if it describes a
request the api could have built from the route table (``QF_ROUTES_FILE``, the same
file the api reads):

- the route exists, is a proxy route, and the method is the route's;
- the path is one the route's upstream template can produce (no other backend path,
  no dot segment or control character);
- the reply goes to a pod's reply channel (``<prefix>replies:…``), never to another
  channel (the cache's invalidations, say);
- the deadline is a time within the route's window, give or take clock skew;
- the id is a plain token (it names Redis keys);
- a cache instruction belongs to a cached route, names a serial's hash under the cache
  prefix, and a field that is the one the api derives from this very request. The
  generation key, TTLs and forwarded headers are derived from the route table here,
  whatever the message says — so a message can neither write an arbitrary Redis key
  nor store one path's answer where another path's is looked up.

Headers: what the api would never forward (hop-by-hop, credentials, framing, override
and rewrite headers the route does not name) is dropped here too.

A message that fails is refused: never executed, left for the DLQ, counted by reason
(``queuefront_worker_refused_messages_total``) and logged once per interval.
"""

from __future__ import annotations

import math
import re

import msgspec

from queuefront import cache
from queuefront.envelope import CacheSpec, RequestEnvelope
from queuefront.headers import (
    CREDENTIALS,
    FRAMING,
    HOP_BY_HOP,
    OVERRIDES,
    named_headers,
)
from queuefront.keys import Keys
from queuefront.routes import Route, RouteTable
from queuefront.upstream import (
    Unforwardable,
    check_path,
    check_query,
    target_pattern,
    upstream_template,
)

CLOCK_SKEW_ALLOWANCE_S = 300.0
"""How far past its route's window a deadline may lie: clocks of pods and workers may
disagree, but a deadline hours away is no request the api made (it would hold a claim
and a slot for as long)."""
_ID = re.compile(r"[A-Za-z0-9_-]{1,128}")
_CHANNEL_TAIL = re.compile(r"[\x21-\x7e]{1,200}")
REASONS = (
    "undecodable",
    "route",
    "method",
    "path",
    "id",
    "reply_to",
    "deadline",
    "cache",
)


class Refused(Exception):
    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


class MessageCheck:
    def __init__(self, routes: RouteTable, keys: Keys) -> None:
        self._routes = {r.name: r for r in routes.routes if r.kind == "proxy"}
        self._keys = keys
        self._reply_prefix = keys.reply_channel("")
        self._cache_prefix = keys.cache("")

    def check(self, env: RequestEnvelope) -> RequestEnvelope:
        """``env`` as the worker may act on it (headers filtered, cache instruction
        derived from the route table), or ``Refused`` naming why not."""
        route = self._routes.get(env.route)
        if route is None:
            raise Refused("route", f"no proxy route {env.route[:64]!r} in the route table")
        if env.method != route.method:
            raise Refused("method", f"{env.method[:16]!r} is not {route.name}'s method")
        self._check_path(route, env.path)
        if not _ID.fullmatch(env.id):
            raise Refused("id", "the request id is not a plain token")
        tail = env.reply_to.removeprefix(self._reply_prefix)
        if tail == env.reply_to or not _CHANNEL_TAIL.fullmatch(tail):
            raise Refused("reply_to", "the reply channel is not a pod's reply channel")
        left = env.seconds_left()
        if not (math.isfinite(left) and math.isfinite(env.enqueued_at)):
            raise Refused("deadline", "the deadline is not a number")
        if left > route.timeout_s + CLOCK_SKEW_ALLOWANCE_S:
            raise Refused("deadline", f"the deadline is {left:.0f} s away")
        if route.cache is None:
            if env.cache is not None:
                raise Refused("cache", f"{route.name} is not a cached route")
            headers = _forwardable(route, env.headers)
            return msgspec.structs.replace(env, headers=headers)
        named = route.cache.forwarded
        headers = named_headers(env.headers, named)
        if len(headers) != len(env.headers):
            raise Refused("cache", "a cached route's request carries headers it does not name")
        if env.cache is None:
            return env
        return msgspec.structs.replace(env, cache=self._cache_spec(route, env, env.cache))

    def _check_path(self, route: Route, path: str) -> None:
        raw_path, _, raw_query = path.partition("?")
        try:
            check_path(raw_path)
            check_query(raw_query)
        except Unforwardable as exc:
            raise Refused("path", str(exc)) from None
        if not target_pattern(upstream_template(route)).fullmatch(path):
            raise Refused("path", f"not a target of {route.name}'s upstream template")

    def _cache_spec(self, route: Route, env: RequestEnvelope, spec: CacheSpec) -> CacheSpec:
        assert route.cache is not None
        serial = spec.key.removeprefix(self._cache_prefix)
        if serial == spec.key or not serial:
            raise Refused("cache", "the cache key is not a serial's hash")
        vary = sorted((k.lower(), v) for k, v in env.headers)
        if spec.field != cache.field(route.name, env.path, vary):
            raise Refused("cache", "the cache field is not this request's")
        return CacheSpec(
            key=self._keys.cache(serial),
            field=spec.field,
            ttl_s=route.cache.ttl_s,
            stale_s=route.cache.stale_while_revalidate_s,
            generation_key=self._keys.cache_generation(serial),
            generation=spec.generation,
            forwarded=sorted(route.cache.forwarded),
        )


_ALWAYS_DROPPED = HOP_BY_HOP | CREDENTIALS | FRAMING


def _forwardable(route: Route, headers: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """The message's headers less what the api never forwards on this route. The
    forwarding headers stay: the api wrote them, and without a signature on the
    envelope they cannot be told from a forger's."""
    drop = _ALWAYS_DROPPED | (OVERRIDES - route.named_forwards)
    return [(k, v) for k, v in headers if k.lower() not in drop]
