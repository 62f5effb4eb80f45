"""All runtime settings in one typed object, read from ``QF_*`` environment variables.

One object (rather than settings scattered through modules) is what lets the README,
the Terraform task definitions and the tests agree on a single list of names.
"""

from __future__ import annotations

from functools import cached_property
from typing import Literal

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from queuefront import ports
from queuefront.limits import MAX_MESSAGE_BYTES

MAX_PENDING_BYTES = 64 * 1024 * 1024
"""Request bodies one api process holds at once. A body counts while it is read and
encoded (about three copies at that moment: bytes, text, envelope), not while its reply
is awaited, so 64 MiB is 64 bodies of the largest size in flight at once — far more
than one core encodes in the time a body takes to arrive — and under 200 MiB of peak
memory on top of the process's own 80 MiB, in a task of 2 GiB."""

TALLY_TTL_S = 7 * 24 * 3600
"""A poll's live tally outlives its last vote by a week: results are read during a show
and in the days after it. What bounds the memory of tallies is this TTL times the rate
at which new polls are voted in — with every client able to invent poll ids, a key
without expiry would fill Redis in the end (and with ``noeviction`` refuse writes)."""

ANON_RATE_LIMIT_RPS = 50.0
"""Anonymous requests per second one address may make on one route. A person makes
well under one; a shared address (a carrier-grade NAT, a store's egress with all its
kiosks) at the peak of a TV vote or at opening time stays below about 20 — the kiosk
fleet of the seed peaked at 1,200 requests a minute in all — so 50 leaves a margin of
2.5. A script flooding from one address sends hundreds to thousands a second: it is
refused after its burst."""
ANON_RATE_LIMIT_BURST = 200
"""Requests above that rate one address may send at once (a NAT's simultaneous votes)."""


class Settings(BaseSettings):
    """Settings shared by every process; each process reads the fields it needs."""

    model_config = SettingsConfigDict(env_prefix="QF_", extra="ignore", frozen=True)

    # --- connections -------------------------------------------------------------------
    redis_url: str = "redis://127.0.0.1:6379/0"
    redis_max_connections: int = Field(default=64, ge=4)
    database_url: str = "postgresql://postgres@127.0.0.1:5432/queuefront"
    sqs_endpoint_url: str = ""  # empty: real AWS, endpoint from the region
    aws_region: str = "us-east-1"
    # the per-message SQS calls: "lean" (queuefront.sqswire, JSON over aiohttp, signed with
    # botocore's SigV4) or "botocore" (aiobotocore's pipeline, several times the CPU)
    sqs_data_plane: Literal["lean", "botocore"] = "lean"
    backend_url: str = "http://127.0.0.1:9000"

    # --- queues --------------------------------------------------------------------------
    queue_high: str = "queuefront-high"
    queue_normal: str = "queuefront-normal"
    queue_ingest: str = "queuefront-ingest"
    dlq_suffix: str = "-dlq"
    max_receive_count: int = Field(default=3, ge=1, le=1000)
    visibility_timeout_s: int = Field(default=30, ge=1, le=43_200)
    # an idle loop's long poll; a stopping worker waits for it, so it bounds the drain
    receive_wait_s: int = Field(default=10, ge=0, le=20)
    # the queues' MaximumMessageSize (created so by queuefront.queues and Terraform); larger
    # request bodies and ingest items get 413
    max_message_bytes: int = Field(default=MAX_MESSAGE_BYTES, ge=1024, le=MAX_MESSAGE_BYTES)

    # --- api ---------------------------------------------------------------------------------
    http_port: int = ports.HTTP_PORT
    # every process's probe port: /healthz, /readyz, /metrics (the api's public port
    # serves /healthz only)
    metrics_port: int = ports.METRICS_PORT
    # where the demo backend (examples.legacy_backend, not in the production image) listens
    demo_port: int = ports.DEMO_PORT
    routes_file: str = "config/routes.toml"  # production table; make run and compose: the demo one
    pod_id: str = ""  # empty: a random id per process start
    key_prefix: str = ""  # prepended to every Redis key and channel (tests isolate with it)
    send_linger_ms: float = Field(default=2.0, ge=0)
    admission_threshold: int = Field(default=100, ge=1)
    admission_wait_s: float = Field(default=5.0, ge=0)
    backlog_poll_s: float = Field(default=1.0, gt=0)
    # refuse (503) what could not be answered in its window: backlog / workers' drain rate
    admission_predictive: bool = True
    max_pending_replies: int = Field(default=4096, ge=1)  # per pod; beyond: 503 at once
    max_pending_bytes: int = Field(
        default=MAX_PENDING_BYTES,
        ge=1024,
        description="request body bytes one api process may hold at once (read, not yet "
        "queued or answered); a request that would pass it gets 503 before its body is read",
    )
    listen_backlog: int = Field(default=4096, ge=128)  # the kernel caps it at somaxconn
    # api processes sharing the public port (SO_REUSEPORT), each with its own reply
    # subscription; 0: one per CPU this container may use (its cgroup quota and CPU
    # affinity); 1: one process and no supervisor (make run, the tests)
    api_processes: int = Field(default=0, ge=0, le=64)
    local_cache_entries: int = Field(default=10_000, ge=0)  # in-process tier; 0: off
    local_cache_bytes: int = Field(default=64 * 1024 * 1024, ge=0)
    auth_api_keys: str = ""  # comma-separated; keys that may call the non-public routes
    auth_invalidate_keys: str = ""  # comma-separated; keys that may invalidate the cache
    auth_jwt_secret: str = ""  # HS256 bearer tokens (claims sub and exp required)
    auth_jwt_audience: str = ""  # when set, the aud claim is required and must match
    auth_jwt_invalidate_scope: str = "cache:invalidate"  # JWT scope that may invalidate
    # with no credentials configured the api refuses to start unless this is true;
    # configured credentials are enforced whatever it says
    auth_disabled: bool = False
    # proxies in front of the api that append to X-Forwarded-For (compose's edge: 1);
    # 0: the TCP peer is the client
    trusted_proxy_hops: int = Field(default=0, ge=0, le=10)
    # a header a trusted edge writes with the viewer's address (CloudFront-Viewer-Address);
    # set only when the api cannot be reached without passing that edge
    client_ip_header: str = ""
    rate_limit_rps: float = Field(
        default=0.0,
        ge=0,
        description="per credentialed client (API key or JWT subject) and route; 0: off "
        "(one key may serve a whole fleet: API Gateway throttles per route in production)",
    )
    rate_limit_burst: int = Field(default=20, ge=1)
    anon_rate_limit_rps: float = Field(
        default=ANON_RATE_LIMIT_RPS,
        ge=0,
        description="per anonymous client (its address) and route, and every request whose "
        "credentials fail (charged to its address, never to the identity it claims); 0: off",
    )
    anon_rate_limit_burst: int = Field(default=ANON_RATE_LIMIT_BURST, ge=1)
    idempotency_ttl_s: int = Field(default=86_400, ge=60)
    # records of anonymous clients (public routes without credentials): a shorter life,
    # since anyone can create them
    idempotency_anon_ttl_s: int = Field(default=600, ge=60)
    ingest_pack_max: int = Field(default=50, ge=1, le=1000)  # items per SQS message; 1: off

    # --- worker ------------------------------------------------------------------------------
    worker_concurrency: int = Field(default=32, ge=1)
    reply_ttl_s: int = Field(default=120, ge=1)
    shutdown_timeout_s: float = Field(default=20.0, ge=0)

    # --- writer (ingest) -------------------------------------------------------------------------
    batch_size: int = Field(default=300, ge=1, le=10_000)
    batch_max_wait_s: float = Field(default=1.0, gt=0)
    tally_ttl_s: int = Field(
        default=TALLY_TTL_S,
        ge=1,
        description="a live tally (one Redis hash per poll) expires this long after its "
        "last vote; the votes stay in Postgres and the next vote rebuilds it from there",
    )
    db_command_timeout_s: float = Field(
        default=30.0,
        gt=0,
        description="writer: longest one Postgres statement may run; a hung one is cancelled "
        "and the batch retried (its messages are never deleted before their rows commit)",
    )

    # --- telemetry ---------------------------------------------------------------------------
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    log_format: Literal["json", "console"] = "json"

    @cached_property
    def api_keys(self) -> frozenset[str]:
        return frozenset(k.strip() for k in self.auth_api_keys.split(",") if k.strip())

    @cached_property
    def invalidate_keys(self) -> frozenset[str]:
        return frozenset(k.strip() for k in self.auth_invalidate_keys.split(",") if k.strip())

    @property
    def auth_enabled(self) -> bool:
        """Any credential configured: auth is on (``QF_AUTH_DISABLED`` cannot turn it off)."""
        return bool(self.api_keys or self.invalidate_keys or self.auth_jwt_secret)

    @model_validator(mode="after")
    def _one_body_fits(self) -> Settings:
        if self.max_pending_bytes < self.max_message_bytes:
            raise ValueError(
                "QF_MAX_PENDING_BYTES must be at least QF_MAX_MESSAGE_BYTES: otherwise the "
                "largest body a route accepts could never be admitted"
            )
        return self

    def dlq_name(self, queue: str) -> str:
        return f"{queue}{self.dlq_suffix}"
