"""All runtime settings in one typed object, read from ``QF_*`` environment variables.

One object (rather than settings scattered through modules) is what lets the docs, the
Terraform task definitions and the tests agree on a single list of names.
"""

from __future__ import annotations

import uuid
from functools import cached_property
from typing import Any, Literal

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from queuefront import ports
from queuefront.keys import Keys
from queuefront.limits import (
    MAX_MESSAGE_BYTES,
    MAX_RECEIVE_COUNT,
    MAX_VISIBILITY_TIMEOUT_S,
    MAX_WAIT_TIME_S,
)

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

CACHE_LEASE_S = 5.0
"""A lease a dead holder leaves behind delays the others this long at most; a live
holder renews it, so it need not cover the backend's slowest answer."""

ANON_RATE_LIMIT_RPS = 50.0
"""Anonymous requests per second one address may make on one route. A person makes
well under one; a shared address (a carrier-grade NAT, a store's egress with all its
kiosks) at the peak of a TV vote or at opening time stays below about 20 — the kiosk
fleet of the seed peaked at 1,200 requests a minute in all — so 50 leaves a margin of
2.5. A script flooding from one address sends hundreds to thousands a second: it is
refused after its burst."""
ANON_RATE_LIMIT_BURST = 200
"""Requests above that rate one address may send at once (a NAT's simultaneous votes)."""
POD_ID_HEX_CHARS = 12
"""A random pod id's length: 48 bits, no collision among the pods of one Redis."""



class Settings(BaseSettings):
    """Settings shared by every process; each process reads the fields it needs.

    Every field carries its own ``description``: the settings table of
    docs/configuration.md is generated from them (``python -m queuefront.docgen``), so a
    setting is explained in one place, here, next to its default and its bounds.
    """

    model_config = SettingsConfigDict(env_prefix="QF_", extra="ignore", frozen=True)

    # --- connections -------------------------------------------------------------------
    redis_url: str = Field(
        default="redis://127.0.0.1:6379/0",
        description="Redis for replies, the cache, tallies, rate limits and idempotency "
        "records (`rediss://` for TLS).",
    )
    redis_max_connections: int = Field(
        default=64,
        ge=4,
        description="Connections in each process's Redis pool. A caller past it waits up "
        "to 1 s for a free connection, then fails fast (the api answers 503) instead of "
        "piling up behind the pool.",
    )
    database_url: str = Field(
        default="postgresql://postgres@127.0.0.1:5432/queuefront",
        description="Postgres of the write path (the writer, `migrate`, `admin reconcile`).",
    )
    sqs_endpoint_url: str = Field(
        default="",
        description="SQS endpoint. Empty: real AWS, the endpoint following from the region "
        "(`make run` and the tests: the local emulator).",
    )
    aws_region: str = Field(default="us-east-1", description="AWS region.")
    sqs_data_plane: Literal["lean", "botocore"] = Field(
        default="lean",
        description="How send, receive, delete, visibility and attribute calls reach SQS: "
        "`lean` (`queuefront/sqswire.py`: the JSON protocol over aiohttp, signed with "
        "botocore's SigV4 and the same credentials, about a third of the client CPU per "
        "call) or `botocore` (aiobotocore's full pipeline). Queues are created and looked "
        "up through aiobotocore either way.",
    )
    backend_url: str = Field(
        default="http://127.0.0.1:9000",
        description="Base URL of the legacy backend the worker calls.",
    )

    # --- queues --------------------------------------------------------------------------
    queue_high: str = Field(default="queuefront-high", description="High-priority queue.")
    queue_normal: str = Field(
        default="queuefront-normal", description="Normal-priority queue."
    )
    queue_ingest: str = Field(
        default="queuefront-ingest", description="Ingest (write path) queue."
    )
    dlq_suffix: str = Field(
        default="-dlq", description="A queue's dead-letter queue is named `<queue><suffix>`."
    )
    max_receive_count: int = Field(
        default=3,
        ge=1,
        le=MAX_RECEIVE_COUNT,
        description="Receives before SQS moves a message to its DLQ (the redrive policy of "
        "the queues this project creates).",
    )
    visibility_timeout_s: int = Field(
        default=30,
        ge=1,
        le=MAX_VISIBILITY_TIMEOUT_S,
        description="Visibility timeout of the queues this project creates (Terraform sets "
        "its own per queue); a worker extends it for work that takes longer.",
    )
    receive_wait_s: int = Field(
        default=10,
        ge=0,
        le=MAX_WAIT_TIME_S,
        description="Long-poll wait of an idle receive loop. A stopping worker waits for "
        "its polls to return, so this bounds how long a drain takes.",
    )
    max_message_bytes: int = Field(
        default=MAX_MESSAGE_BYTES,
        ge=1024,
        le=MAX_MESSAGE_BYTES,
        description="The queues' `MaximumMessageSize` (they are created so, by "
        "`queuefront.queues` and by Terraform); larger request bodies and ingest items "
        "get 413.",
    )

    # --- api ---------------------------------------------------------------------------------
    http_port: int = Field(
        default=ports.HTTP_PORT,
        description="The api's public port: the routes and `/healthz`.",
    )
    metrics_port: int = Field(
        default=ports.METRICS_PORT,
        description="Every process's probe port: `/metrics`, `/healthz`, `/readyz`; never "
        "public (`make run`: api 9102, worker 9100, writer 9101).",
    )
    demo_port: int = Field(
        default=ports.DEMO_PORT,
        description="Where the demo backend (`examples.legacy_backend`, not in the "
        "production image) listens; `queuefront healthcheck` asks it too.",
    )
    routes_file: str = Field(
        default="config/routes.toml",
        description="The route table: `config/routes.toml`, the image's and Terraform's, "
        "which `make run` and compose serve too.",
    )
    pod_id: str = Field(
        default="",
        description="The pod's id, which names its reply channel `replies:<pod id>`. "
        "Empty: a random id per process start.",
    )
    key_prefix: str = Field(
        default="",
        description="Prepended to every Redis key and channel: isolates stacks that share "
        "a Redis (the tests and benchmarks do).",
    )
    send_linger_ms: float = Field(
        default=2.0,
        ge=0,
        description="How long a send batch waits for company before it is flushed "
        "(`SendMessageBatch` carries up to 10 entries).",
    )
    admission_threshold: int = Field(
        default=100,
        ge=1,
        description="High-queue backlog at which normal requests wait (up to "
        "`QF_ADMISSION_WAIT_S`) before they are queued.",
    )
    admission_wait_s: float = Field(
        default=5.0,
        ge=0,
        description="How long a normal request waits for the high backlog to drop below "
        "`QF_ADMISSION_THRESHOLD` before it gets 503.",
    )
    backlog_poll_s: float = Field(
        default=1.0,
        gt=0,
        description="How often a pod reads the queues' backlog and the workers' drain "
        "reports.",
    )
    admission_predictive: bool = Field(
        default=True,
        description="Refuse at once (503 + `Retry-After`) a request that could not be "
        "answered in its window: its predicted wait (backlog ÷ the workers' drain rate) "
        "plus the service time exceeds the window less 1 s (less a fifth of a window "
        "shorter than 5 s). `false` keeps only the threshold rule.",
    )
    max_pending_replies: int = Field(
        default=4096,
        ge=1,
        description="Requests one pod (one api process) may have waiting for replies; "
        "beyond it, 503 at once.",
    )
    max_pending_bytes: int = Field(
        default=MAX_PENDING_BYTES,
        ge=1024,
        description="Request body bytes one api process may hold at once (read, not yet "
        "queued or answered; a request waiting for its reply holds none). A request that "
        "would pass it gets 503 at once, before its body is read. At least "
        "`QF_MAX_MESSAGE_BYTES`.",
    )
    listen_backlog: int = Field(
        default=4096,
        ge=128,
        description="The api's accept queue (the kernel caps it at `somaxconn`).",
    )
    api_processes: int = Field(
        default=0,
        ge=0,
        le=64,
        description="api processes in one container, sharing the public port "
        "(`SO_REUSEPORT`), each a whole pod with its own reply subscription. 0: one per "
        "CPU the container may use (its cgroup quota rounded up, its CPU affinity); 1: "
        "one process and no supervisor (`make run`, the tests); Terraform: the api task's "
        "vCPUs. See [every CPU of a task](how-it-works.md#every-cpu-of-a-task).",
    )
    scaling_signal_interval_s: float = Field(
        default=0.0,
        ge=0,
        le=60,
        description="How often each api process writes its scaling signal (queue backlog, "
        "drain rate and capacity, predicted wait, refusals, pending replies, CPU) as one "
        "CloudWatch embedded-metric-format line on stdout, which the autoscaling alarms "
        "read at 10 s resolution. 0: never (`make run`, the tests); Terraform: 5.",
    )
    scaling_signal_namespace: str = Field(
        default="queuefront/scaling",
        min_length=1,
        max_length=255,
        description="CloudWatch namespace of the scaling signal (Terraform sets it from "
        "deploy/terraform/scaling_signal.json).",
    )
    scaling_signal_dimensions: str = Field(
        default="",
        description="Dimensions of the scaling signal, `Name=value` pairs separated by "
        "commas (Terraform: `Stack=<stack name>`): one series per stack, never per task.",
    )
    local_cache_entries: int = Field(
        default=10_000,
        ge=0,
        description="Cached responses each pod keeps in memory in front of Redis (least "
        "recently used first out); 0: no in-process tier.",
    )
    local_cache_bytes: int = Field(
        default=64 * 1024 * 1024,
        ge=0,
        description="Bytes each pod's in-process cache tier may hold.",
    )
    cache_lease_s: float = Field(
        default=CACHE_LEASE_S,
        gt=0,
        description="How long one pod's right to fetch a missing cached answer lasts "
        "unrenewed. The pod renews it every third of that while its fetch runs, so the "
        "others wait for its answer however slow the backend; if it dies, another takes "
        "over after this long.",
    )
    auth_api_keys: str = Field(
        default="",
        description="Comma-separated API keys accepted in `X-Api-Key` for the non-public "
        "routes.",
    )
    auth_invalidate_keys: str = Field(
        default="",
        description="Comma-separated API keys that may call `POST /api/cache/invalidate` "
        "(and nothing else, unless also in `QF_AUTH_API_KEYS`).",
    )
    auth_jwt_secret: str = Field(
        default="",
        description="HS256 secret of `Authorization: Bearer` tokens (claims `sub` and "
        "`exp` required).",
    )
    auth_jwt_audience: str = Field(
        default="", description="When set, the `aud` claim is required and must match."
    )
    auth_jwt_invalidate_scope: str = Field(
        default="cache:invalidate",
        description="The JWT scope (`scope`, space-separated, or `scp`, a list) that may "
        "invalidate the cache.",
    )
    auth_disabled: bool = Field(
        default=False,
        description="Auth fails closed: with no credentials configured the api refuses to "
        "start unless this is `true` (`make run` and the compose demo set it when no "
        "credentials are given). Configured credentials are enforced whatever it says.",
    )
    trusted_proxy_hops: int = Field(
        default=0,
        ge=0,
        le=10,
        description="Proxies in front of the api that append to `X-Forwarded-For`; the "
        "entry the outermost of them wrote is the client's address. 0: the TCP peer is "
        "the client (compose's edge: 1).",
    )
    client_ip_header: str = Field(
        default="",
        description="A header a trusted edge writes with the viewer's `address:port`, e.g. "
        "`CloudFront-Viewer-Address`. Set it only when the api cannot be reached without "
        "passing that edge (an IPv6 client is identified by its /64).",
    )
    rate_limit_rps: float = Field(
        default=0.0,
        ge=0,
        description="Requests per second per credentialed client (API key or JWT subject) "
        "and route (a GCRA in Redis); 0: off. Off by default: one key may serve a whole "
        "fleet, and API Gateway throttles per route in production.",
    )
    rate_limit_burst: int = Field(
        default=20, ge=1, description="Burst allowed above `QF_RATE_LIMIT_RPS`."
    )
    anon_rate_limit_rps: float = Field(
        default=ANON_RATE_LIMIT_RPS,
        ge=0,
        description="Requests per second per anonymous client (its address) and route; a "
        "request whose credentials fail is charged here too, to its address (never to "
        "the identity it claims). 0: off.",
    )
    anon_rate_limit_burst: int = Field(
        default=ANON_RATE_LIMIT_BURST,
        ge=1,
        description="Burst allowed above `QF_ANON_RATE_LIMIT_RPS`.",
    )
    idempotency_ttl_s: int = Field(
        default=86_400,
        ge=60,
        description="How long the answer to an `Idempotency-Key` is kept and replayed.",
    )
    idempotency_anon_ttl_s: int = Field(
        default=600,
        ge=60,
        description="The same for anonymous clients (public routes without credentials): "
        "anyone can create these records, so they live shorter.",
    )
    ingest_pack_max: int = Field(
        default=50,
        ge=1,
        le=1000,
        description="Ingest items packed into one SQS message (1: one message per item).",
    )

    # --- worker ------------------------------------------------------------------------------
    worker_concurrency: int = Field(
        default=32,
        ge=1,
        description="Backend calls one worker makes at once: the backend never sees more "
        "than this times the number of workers (`make run`: 64, as many as its demo "
        "backend serves), nor, when `QF_BACKEND_MAX_CONCURRENCY` is set, more than that.",
    )
    backend_max_concurrency: int = Field(
        default=0,
        ge=0,
        description="Backend calls all the workers sharing the Redis make at once, "
        "enforced at run time with leases in Redis (a worker killed holding some frees "
        "them within 10 s). A message that gets no lease before its window can no longer "
        "fit a call is answered `503 backend_busy` at once, uncalled. 0: no shared limit, "
        "each worker bounded by `QF_WORKER_CONCURRENCY` alone.",
    )
    worker_refuse_late: bool = Field(
        default=True,
        description="A worker answers `503 backend_slow` (with `Retry-After`) at once, "
        "without calling the backend, a message whose remaining window (less 0.1 s for the "
        "reply) a backend call of its route would not fit now: at least a tenth of the "
        "route's calls, and at least two of them, are estimated to take longer — from its "
        "calls that ended in the last 5 s and those still running, each 'at least its "
        "age' (a Kaplan-Meier estimate) — and at least two could: calls running may go on "
        "as the route's last 64 calls that lasted as long did, or past the slowest tenth "
        "of those, as long as their age stretched by the route's spread. One call "
        "that ran long is no evidence. Such a call would likely end in a 504 at the "
        "deadline. A worker that has completed no call of the route yet "
        "never refuses. `false`: every message in its window is called.",
    )
    reply_ttl_s: int = Field(
        default=120,
        ge=1,
        description="How long `reply:<id>` is kept: a reconnecting pod and a client's retry "
        "with the same `Idempotency-Key` find the answer there.",
    )
    shutdown_timeout_s: float = Field(
        default=20.0,
        ge=0,
        description="How long a stopping worker lets the work in hand finish (keep it "
        "under the container's stop timeout).",
    )
    max_reply_bytes: int = Field(
        default=8 * 1024 * 1024,
        ge=1024,
        le=256 * 1024 * 1024,
        description="Largest backend answer body the worker reads; a larger one is answered "
        "502 `reply_too_large`. A reply is held by the worker, stored in Redis, pushed "
        "through pub/sub (a subscriber more than 8 MiB behind for a minute, or 32 MiB at "
        "once, is disconnected by Redis's default limits) and held again by the pod.",
    )

    # --- writer (ingest) -------------------------------------------------------------------------
    batch_size: int = Field(
        default=300,
        ge=1,
        le=10_000,
        description="Writer: items per batch, stored with one INSERT and one commit.",
    )
    batch_max_wait_s: float = Field(
        default=1.0,
        gt=0,
        description="Writer: the longest a batch waits to fill after its first item.",
    )
    db_command_timeout_s: float = Field(
        default=30.0,
        gt=0,
        description="Writer: the longest one Postgres statement may run. A hung statement "
        "(a lock never granted, a connection gone silent) is cancelled and its batch "
        "retried; its messages are never deleted before their rows commit.",
    )
    tally_ttl_s: int = Field(
        default=TALLY_TTL_S,
        ge=1,
        description="A live tally (one Redis hash per poll) expires this long after its "
        "last vote. The votes stay in Postgres: the next vote rebuilds the tally from "
        "there, and `queuefront.admin reconcile` rebuilds every tally voted in within it.",
    )

    # --- telemetry ---------------------------------------------------------------------------
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field(
        default="INFO", description="Log level of every process."
    )
    log_format: Literal["json", "console"] = Field(
        default="json",
        description="`json` (one object per line, for log shippers) or `console` (for a "
        "terminal).",
    )

    @cached_property
    def api_keys(self) -> frozenset[str]:
        return frozenset(k.strip() for k in self.auth_api_keys.split(",") if k.strip())

    @cached_property
    def invalidate_keys(self) -> frozenset[str]:
        return frozenset(k.strip() for k in self.auth_invalidate_keys.split(",") if k.strip())

    @property
    def send_linger_s(self) -> float:
        """``QF_SEND_LINGER_MS`` in seconds, as the senders' batchers take it."""
        return self.send_linger_ms / 1000

    @cached_property
    def keys(self) -> Keys:
        """Every Redis key and channel name, under ``QF_KEY_PREFIX``."""
        return Keys(self.key_prefix)

    @property
    def auth_enabled(self) -> bool:
        """Any credential configured: auth is on (``QF_AUTH_DISABLED`` cannot turn it off)."""
        return bool(self.api_keys or self.invalidate_keys or self.auth_jwt_secret)

    @model_validator(mode="before")
    @classmethod
    def _a_pod_id(cls, data: Any) -> Any:
        """An empty ``QF_POD_ID`` is a random id, drawn once per process start here, so
        every part of the process (and a supervisor's children, ``<pod id>-<n>``) names
        the same pod."""
        if isinstance(data, dict) and not data.get("pod_id"):
            data = {**data, "pod_id": uuid.uuid4().hex[:POD_ID_HEX_CHARS]}
        return data

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
