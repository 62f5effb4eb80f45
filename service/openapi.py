"""``GET /openapi.json``: an OpenAPI 3.1 description generated from the route table.

Generated, not written: the route table is what the pod serves, so the description can
never drift from it. It says what each route takes (path parameters, ingest bodies
from their sinks, ``Idempotency-Key``) and everything it can answer — our own errors
with their JSON body, and for proxy routes "whatever the backend answers" — which is
what lets a fuzzer (schemathesis, in ``make test``) hold the api to it.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from queuefront.envelope import encode_json
from queuefront.routes import Route, RouteTable, SinkField
from queuefront.settings import Settings
from queuefront.sink import INT_RANGE, MAX_JSON_DEPTH
from service.idempotency import MAX_KEY_LENGTH, UNSAFE_METHODS

DOCUMENT: web.AppKey[bytes] = web.AppKey("openapi_document", bytes)

Schema = dict[str, Any]

ERROR_TEXT = {
    400: "Bad input: body or schema, or a path/query that cannot be forwarded "
    "(control characters, dot segments)",
    401: "Missing or bad credentials",
    403: "Credentials without the permission this route needs",
    404: "No route matches (for example an empty path parameter)",
    409: "A request with this Idempotency-Key is still in progress",
    408: "The request body did not arrive within the route's window",
    413: "Body over the route's max_body_bytes, or larger than one queue message "
    "(QF_MAX_MESSAGE_BYTES)",
    422: "This Idempotency-Key was used for a different request",
    429: "Rate limited; see Retry-After",
    503: "Overloaded or a dependency is unavailable; see Retry-After",
    504: "No reply within the route's window",
}
NO_CONTROLS = "^[^\\u0000-\\u001f\\u007f-\\u009f]+$"
"""No control characters (C0, DEL, C1): such a parameter is refused with 400."""
RETRY_AFTER = {"Retry-After": {"schema": {"type": "string"}, "description": "seconds"}}


def _request_id_header() -> Schema:
    return {
        "X-Request-Id": {
            "required": True,
            "schema": {"type": "string"},
            "description": "this request's id (also in error bodies)",
        }
    }


def _error(status: int) -> Schema:
    headers = _request_id_header()
    if status in (429, 503):
        headers |= RETRY_AFTER
    return {
        "description": ERROR_TEXT[status],
        "headers": headers,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
    }


def field_schema(spec: SinkField) -> Schema:
    """A sink field as JSON Schema (2020-12, as OpenAPI 3.1 uses it)."""
    if spec.type in INT_RANGE:
        low, high = INT_RANGE[spec.type]
        return {
            "type": "integer",
            "format": "int32" if spec.type == "int" else "int64",
            "minimum": low if spec.min is None else spec.min,
            "maximum": high if spec.max is None else spec.max,
        }
    if spec.type == "text":
        out: Schema = {"type": "string"}
        if spec.max_length is not None:
            out["maxLength"] = spec.max_length
        return out
    if spec.type == "bool":
        return {"type": "boolean"}
    if spec.type == "uuid":
        return {"type": "string", "format": "uuid"}
    if spec.type == "timestamptz":
        return {"type": "string", "format": "date-time"}
    return {"description": f"any JSON value, nested at most {MAX_JSON_DEPTH} levels"}


def _path_parameters(route: Route, table: RouteTable) -> list[Schema]:
    fields: dict[str, SinkField] = {}
    if route.sink is not None:
        fields = {n: f for n, f in route.sink.fields.items() if f.source == "path"}
    elif route.source is not None:
        source = table.get(route.source)
        assert source.sink is not None
        fields = dict(source.sink.fields)
    params = []
    for name in route.params:
        schema: Schema = {"type": "string"}
        if name in fields:
            schema = field_schema(fields[name])
        if schema.get("type") == "string":
            # what the api can forward; dot segments ('.', '..') are refused too (400)
            schema |= {"minLength": 1, "pattern": NO_CONTROLS}
        params.append({"name": name, "in": "path", "required": True, "schema": schema})
    return params


def _operation(route: Route, table: RouteTable, settings: Settings) -> Schema:
    op: Schema = {
        "operationId": route.name,
        "summary": f"{route.kind} route {route.name!r}",
        "parameters": _path_parameters(route, table),
        "responses": {},
    }
    statuses = [400, 404, 429, 503]
    if settings.auth_enabled and not route.public:
        op["security"] = [{"ApiKey": []}, {"Bearer": []}]
        statuses += [401, 403]
    elif settings.auth_enabled:
        statuses += [401]  # bad credentials are refused on public routes too
    if route.method in UNSAFE_METHODS and route.kind != "tally":
        op["parameters"].append(
            {
                "name": "Idempotency-Key",
                "in": "header",
                "required": False,
                "schema": {"type": "string", "minLength": 1, "maxLength": MAX_KEY_LENGTH},
                "description": "the same key with the same request: the first answer again",
            }
        )
        statuses += [409, 422]
    responses = op["responses"]
    if route.kind == "proxy":
        statuses += [413, 504]
        if route.method in ("POST", "PUT", "PATCH", "DELETE"):
            statuses += [408]
            ceiling = settings.max_message_bytes
            limit = min(route.max_body_bytes or ceiling, ceiling)
            op["requestBody"] = {
                "required": False,
                "content": {"*/*": {"schema": {}}},
                "description": f"forwarded to the backend as it is; at most {limit} bytes",
            }
        for status in sorted(set(statuses)):
            responses[str(status)] = _error(status)
        responses["default"] = {
            "description": "the backend's own answer (any status, headers and body)",
            "headers": _request_id_header(),
            "content": {"*/*": {"schema": {}}},
        }
    elif route.kind == "ingest":
        assert route.sink is not None
        body_fields = {n: f for n, f in route.sink.fields.items() if f.source == "body"}
        op["requestBody"] = {
            "required": True,
            "content": {
                "application/json": {
                    "schema": {
                        "type": "object",
                        "properties": {n: field_schema(f) for n, f in body_fields.items()},
                        "required": [n for n, f in body_fields.items() if f.required],
                        "additionalProperties": False,
                    }
                }
            },
        }
        statuses += [408, 413]
        for status in sorted(set(statuses)):
            responses[str(status)] = _error(status)
        responses["202"] = {
            "description": "accepted: queued, stored within seconds",
            "headers": _request_id_header(),
            "content": {
                "application/json": {"schema": {"$ref": "#/components/schemas/Accepted"}}
            },
        }
    else:
        source = table.get(route.source or "")
        assert source.sink is not None and source.tally is not None
        rule = source.tally
        for status in sorted(set(statuses)):
            responses[str(status)] = _error(status)
        responses["200"] = {
            "description": "the live tally",
            "headers": _request_id_header(),
            "content": {
                "application/json": {
                    "schema": {
                        "type": "object",
                        "required": [rule.group, "results"],
                        "properties": {
                            rule.group: field_schema(source.sink.fields[rule.group]),
                            "results": {
                                "type": "array",
                                "items": {
                                    "type": "object",
                                    "required": [rule.count, rule.label],
                                    "properties": {
                                        rule.count: field_schema(source.sink.fields[rule.count]),
                                        rule.label: {"type": "integer", "minimum": 0},
                                    },
                                },
                            },
                        },
                    }
                }
            },
        }
    return op


def _builtins(settings: Settings) -> dict[str, Schema]:
    invalidate_statuses = [400, 429, 503] + ([401, 403] if settings.auth_enabled else [])
    invalidate: Schema = {
        "operationId": "invalidate_data",
        "summary": "drop every cached response derived from a serial",
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {
                    "schema": {
                        "type": "object",
                        "properties": {"serial": {"type": "string", "minLength": 1}},
                        "required": ["serial"],
                        "additionalProperties": False,
                    }
                }
            },
        },
        "responses": {str(s): _error(s) for s in sorted(invalidate_statuses)}
        | {
            "200": {
                "description": "invalidated (false: nothing was cached)",
                "headers": _request_id_header(),
                "content": {
                    "application/json": {
                        "schema": {
                            "type": "object",
                            "required": ["serial", "invalidated"],
                            "properties": {
                                "serial": {"type": "string"},
                                "invalidated": {"type": "boolean"},
                            },
                        }
                    }
                },
            }
        },
    }
    if settings.auth_enabled:
        invalidate["security"] = [{"ApiKey": []}, {"Bearer": []}]
    return {
        "/healthz": {
            "get": {
                "operationId": "healthz",
                "summary": "liveness",
                "responses": {
                    "200": {
                        "description": "the process runs",
                        "headers": _request_id_header(),
                        "content": {
                            "application/json": {
                                "schema": {
                                    "type": "object",
                                    "properties": {"status": {"const": "ok"}},
                                }
                            }
                        },
                    }
                },
            }
        },
        "/api/cache/invalidate": {"post": invalidate},
    }


def build(table: RouteTable, settings: Settings) -> Schema:
    paths: dict[str, Schema] = _builtins(settings)
    for route in table.routes:
        paths.setdefault(route.path, {})[route.method.lower()] = _operation(route, table, settings)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "queuefront",
            "version": "1",
            "description": "A queue-fronted API tier; this document is generated from the "
            "route table the pod serves.",
        },
        "paths": paths,
        "components": {
            "schemas": {
                "Error": {
                    "type": "object",
                    "required": ["error", "message", "request_id"],
                    "properties": {
                        "error": {"type": "string"},
                        "message": {"type": "string"},
                        "request_id": {"type": "string"},
                    },
                },
                "Accepted": {
                    "type": "object",
                    "required": ["id", "status"],
                    "properties": {
                        "id": {"type": "string", "format": "uuid"},
                        "status": {"const": "accepted"},
                    },
                },
            },
            "securitySchemes": {
                "ApiKey": {"type": "apiKey", "in": "header", "name": "X-Api-Key"},
                "Bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"},
            },
        },
    }


async def serve(request: web.Request) -> web.Response:
    return web.Response(body=request.app[DOCUMENT], content_type="application/json")


def install(app: web.Application, table: RouteTable, settings: Settings) -> None:
    """Builds the document once (the route table is fixed for the pod's life) and serves it."""
    app[DOCUMENT] = encode_json(build(table, settings))
    app.router.add_get("/openapi.json", serve, name="openapi")
