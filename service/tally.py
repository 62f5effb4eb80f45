"""Tally reads at the api: a tally route answers a group's live counts from Redis.

The writer keeps them (``queuefront.tally``); this reads the group's hash and answers
with typed values (``queuefront.tallytext``), sorted, cacheable at the edge for the
route's ``edge_ttl_s``.
"""

from __future__ import annotations

from aiohttp import web

from queuefront import sink, tallytext
from queuefront.routes import Route
from service.context import ROUTES, TALLIES
from service.errors import ApiError
from service.gates import check_access


async def handle_tally(request: web.Request, route: Route) -> web.Response:
    """``{"<group>": …, "results": [{"<count>": …, "<label>": n}]}`` from Redis."""
    await check_access(request, route.name, public=route.public)
    assert route.source is not None
    source = request.app[ROUTES].get(route.source)
    assert source.tally is not None and source.sink is not None
    rule = source.tally
    group_value = request.match_info[rule.group]
    try:
        group = sink.path_value(rule.group, source.sink.fields[rule.group], group_value)
    except sink.Invalid as exc:
        raise ApiError(400, "bad_request", str(exc)) from None
    counts = await request.app[TALLIES].results(source, tallytext.encode(group))
    kind = source.sink.fields[rule.count].type
    numeric = kind in ("int", "bigint")
    results = sorted(
        ((tallytext.decode(k, kind), n) for k, n in counts),
        key=lambda kv: kv[0] if numeric else str(kv[0]),
    )
    body = {
        rule.group: group,
        "results": [{rule.count: k, rule.label: n} for k, n in results],
    }
    response = web.json_response(body)
    if route.edge_ttl_s is not None:
        response.headers["Cache-Control"] = f"public, s-maxage={route.edge_ttl_s}"
    return response
