"""The route table: a TOML file with one ``[[routes]]`` entry per route.

Parsed into typed, validated models at start-up, so a typo in the table stops the pod
with a message naming the route and the field instead of failing on the first request.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from queuefront.headers import NEVER_FORWARDED, is_token
from queuefront.item import RESERVED_KEYS

_PARAM = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")

API_GATEWAY_TIMEOUT_S = 29.0
"""API Gateway's hard integration timeout: a reply window past it could never be seen."""


def _check_header_names(names: list[str], where: str) -> None:
    """Header names a route may forward: tokens, and none that the api withholds for
    good (hop-by-hop, credentials, framing, or the forwarding headers it writes)."""
    for name in names:
        if not is_token(name):
            raise ValueError(f"{where}: {name!r} is not a header name")
        if name.lower() in NEVER_FORWARDED:
            raise ValueError(
                f"{where}: {name!r} is never forwarded (hop-by-hop, credentials, framing, "
                "or a forwarding header the api writes itself)"
            )


class CacheRule(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    key: str = Field(description="the path parameter whose value keys the cache (the serial)")
    ttl_s: int = Field(gt=0)
    stale_while_revalidate_s: int = Field(
        default=0, ge=0, description="serve an expired entry this long while one refresh runs"
    )
    headers: list[str] = Field(
        default_factory=list,
        description="request headers forwarded to the backend; their values are part of "
        "the cache key (no other header reaches the backend on a cached route)",
    )

    @property
    def forwarded(self) -> frozenset[str]:
        return frozenset(h.lower() for h in self.headers)

    @model_validator(mode="after")
    def _check(self) -> CacheRule:
        _check_header_names(self.headers, "cache.headers")
        return self


FieldType = Literal["int", "bigint", "text", "bool", "uuid", "timestamptz", "jsonb"]
IDENTIFIER = r"^[a-z_][a-z0-9_]{0,62}$"
"""SQL identifiers a sink may name: plain lower-case Postgres names, nothing to escape."""

MAX_TALLY_VALUES = 1000
"""Most distinct values a tallied field may take: the fields of one tally hash."""

RESERVED_COLUMNS = RESERVED_KEYS
"""Every sink table has them: the item id (primary key) and the api's arrival time."""


class SinkField(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    type: FieldType
    required: bool = True
    max_length: int | None = Field(default=None, gt=0, description="text only")
    min: int | None = Field(default=None, description="int and bigint only: smallest value")
    max: int | None = Field(default=None, description="int and bigint only: largest value")
    source: Literal["body", "path"] = "body"

    @model_validator(mode="after")
    def _check(self) -> SinkField:
        if self.max_length is not None and self.type != "text":
            raise ValueError("max_length applies to text fields only")
        if (self.min is not None or self.max is not None) and self.type not in ("int", "bigint"):
            raise ValueError("min and max apply to int and bigint fields only")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError("min is larger than max")
        return self

    def distinct_values(self) -> int | None:
        """How many values the field can take, when that is bounded (tallies need it)."""
        if self.type == "bool":
            return 2
        if self.type in ("int", "bigint") and self.min is not None and self.max is not None:
            return self.max - self.min + 1
        return None


class Sink(BaseModel):
    """Where an ingest route's items are stored: a table and its typed columns."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    table: str = Field(pattern=IDENTIFIER)
    fields: dict[str, SinkField]

    @model_validator(mode="after")
    def _check(self) -> Sink:
        for name in self.fields:
            if not re.match(IDENTIFIER, name) or name in RESERVED_COLUMNS:
                raise ValueError(f"field name {name!r} is not a usable column name")
        return self


class TallyRule(BaseModel):
    """Which rows of an ingest route count: per ``group`` value, per ``count`` value."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    group: str
    count: str
    label: str = "votes"


class Route(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    method: Literal["GET", "POST", "PUT", "PATCH", "DELETE"]
    path: str = Field(pattern=r"^/")
    kind: Literal["proxy", "ingest", "tally"] = "proxy"
    sink: Sink | None = Field(default=None, description="ingest: where items are stored")
    tally: TallyRule | None = Field(default=None, description="ingest: which fields count")
    source: str | None = Field(default=None, description="tally: the ingest route it reads")
    priority: Literal["high", "normal"] = "normal"
    timeout_s: float = Field(default=20.0, gt=0, le=API_GATEWAY_TIMEOUT_S)
    upstream: str | None = Field(
        default=None, description="backend path template; default: the path without /api"
    )
    cache: CacheRule | None = None
    edge_ttl_s: int | None = Field(default=None, ge=0)
    public: bool = Field(default=False, description="served without credentials")
    max_body_bytes: int | None = Field(
        default=None,
        gt=0,
        description="largest request body the route accepts (413 beyond, before it is "
        "read); default and ceiling: QF_MAX_MESSAGE_BYTES",
    )
    forward_headers: list[str] = Field(
        default_factory=list,
        description="client headers withheld by default (method override, URL rewrite: "
        "X-HTTP-Method-Override, X-Original-URL, X-Rewrite-URL…) that this route passes on",
    )

    @property
    def named_forwards(self) -> frozenset[str]:
        """``forward_headers``, lower-case."""
        return frozenset(h.lower() for h in self.forward_headers)

    @property
    def params(self) -> list[str]:
        return _PARAM.findall(self.path)

    @model_validator(mode="after")
    def _check(self) -> Route:
        if (self.kind == "ingest") != (self.sink is not None):
            raise ValueError("an ingest route needs a sink, and only an ingest route has one")
        if self.tally is not None:
            if self.sink is None:
                raise ValueError("tally belongs to an ingest route")
            for counted in (self.tally.group, self.tally.count):
                if counted not in self.sink.fields:
                    raise ValueError(f"tally field {counted!r} is not a sink field")
            # every counted value is a field of a Redis hash: arbitrary values would let
            # any client grow a hash without end
            values = self.sink.fields[self.tally.count].distinct_values()
            if values is None or values > MAX_TALLY_VALUES:
                raise ValueError(
                    f"tally count field {self.tally.count!r} needs a bounded domain: bool, or "
                    f"int with min and max at most {MAX_TALLY_VALUES} values apart"
                )
        if self.sink is not None:
            for name, f in self.sink.fields.items():
                if f.source == "path" and name not in self.params:
                    raise ValueError(f"sink field {name!r} comes from the path but is no param")
        if (self.kind == "tally") != (self.source is not None):
            raise ValueError("a tally route needs a source, and only a tally route has one")
        if self.cache is not None and self.cache.key not in self.params:
            raise ValueError(f"cache.key {self.cache.key!r} is not a parameter of {self.path}")
        if self.cache is not None and self.method != "GET":
            raise ValueError("only GET routes can be cached (a body is not part of the key)")
        _check_header_names(self.forward_headers, "forward_headers")
        if self.forward_headers and self.kind != "proxy":
            raise ValueError("forward_headers belongs to a proxy route")
        if self.forward_headers and self.cache is not None:
            raise ValueError(
                "a cached route forwards exactly its cache.headers: name them there"
            )
        if self.upstream is not None:
            unknown = set(_PARAM.findall(self.upstream)) - set(self.params)
            if unknown:
                raise ValueError(f"upstream uses unknown parameters {sorted(unknown)}")
        return self


class RouteTable(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    routes: list[Route]

    @model_validator(mode="after")
    def _unique(self) -> RouteTable:
        names = [r.name for r in self.routes]
        dupes = {n for n in names if names.count(n) > 1}
        if dupes:
            raise ValueError(f"duplicate route names: {sorted(dupes)}")
        by_name = {r.name: r for r in self.routes}
        for route in self.routes:
            if route.source is None:
                continue
            source = by_name.get(route.source)
            if source is None or source.tally is None:
                raise ValueError(
                    f"{route.name}: source {route.source!r} is no tallied ingest route"
                )
            if source.tally.group not in route.params:
                raise ValueError(f"{route.name}: path must have the {{{source.tally.group}}} param")
        return self

    def get(self, name: str) -> Route:
        return next(r for r in self.routes if r.name == name)

    @property
    def sinks(self) -> dict[str, Route]:
        """Ingest routes by name (the writer needs only these)."""
        return {r.name: r for r in self.routes if r.sink is not None}


def load_routes(path: str | Path) -> RouteTable:
    with open(path, "rb") as f:
        return RouteTable.model_validate(tomllib.load(f))
