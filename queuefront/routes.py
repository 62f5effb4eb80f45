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

_PARAM = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")

API_GATEWAY_TIMEOUT_S = 29.0
"""API Gateway's hard integration timeout: a reply window past it could never be seen."""


class CacheRule(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    key: str = Field(description="the path parameter whose value keys the cache (the serial)")
    ttl_s: int = Field(gt=0)


class Route(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    method: Literal["GET", "POST", "PUT", "PATCH", "DELETE"]
    path: str = Field(pattern=r"^/")
    kind: Literal["proxy"] = "proxy"
    priority: Literal["high", "normal"] = "normal"
    timeout_s: float = Field(default=20.0, gt=0, le=API_GATEWAY_TIMEOUT_S)
    upstream: str | None = Field(
        default=None, description="backend path template; default: the path without /api"
    )
    cache: CacheRule | None = None
    edge_ttl_s: int | None = Field(default=None, ge=0)
    public: bool = Field(default=False, description="served without credentials")

    @property
    def params(self) -> list[str]:
        return _PARAM.findall(self.path)

    @model_validator(mode="after")
    def _check(self) -> Route:
        if self.cache is not None and self.cache.key not in self.params:
            raise ValueError(f"cache.key {self.cache.key!r} is not a parameter of {self.path}")
        if self.upstream is not None:
            unknown = set(_PARAM.findall(self.upstream)) - set(self.params)
            if unknown:
                raise ValueError(f"upstream uses unknown parameters {sorted(unknown)}")
        return self

    def upstream_path(self, params: dict[str, str], request_path: str) -> str:
        if self.upstream is None:
            return request_path.removeprefix("/api") or "/"
        return _PARAM.sub(lambda m: params[m.group(1)], self.upstream)


class RouteTable(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    routes: list[Route]

    @model_validator(mode="after")
    def _unique(self) -> RouteTable:
        names = [r.name for r in self.routes]
        dupes = {n for n in names if names.count(n) > 1}
        if dupes:
            raise ValueError(f"duplicate route names: {sorted(dupes)}")
        return self


def load_routes(path: str | Path) -> RouteTable:
    with open(path, "rb") as f:
        return RouteTable.model_validate(tomllib.load(f))
