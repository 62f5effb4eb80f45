"""All runtime settings in one typed object, read from ``QF_*`` environment variables.

One object (rather than settings scattered through modules) is what lets the README,
the Terraform task definitions and the tests agree on a single list of names.
"""

from __future__ import annotations

from functools import cached_property
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Settings shared by every process; each process reads the fields it needs."""

    model_config = SettingsConfigDict(env_prefix="QF_", extra="ignore", frozen=True)

    # --- connections -------------------------------------------------------------------
    redis_url: str = "redis://127.0.0.1:6379/0"
    redis_max_connections: int = Field(default=64, ge=4)
    database_url: str = "postgresql://postgres@127.0.0.1:5432/queuefront"
    sqs_endpoint_url: str = ""  # empty: real AWS, endpoint from the region
    aws_region: str = "us-east-1"
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

    # --- api ---------------------------------------------------------------------------------
    http_port: int = 8080
    routes_file: str = "examples/routes.toml"
    pod_id: str = ""  # empty: a random id per process start
    key_prefix: str = ""  # prepended to every Redis key and channel (tests isolate with it)
    send_linger_ms: float = Field(default=2.0, ge=0)
    admission_threshold: int = Field(default=100, ge=1)
    admission_wait_s: float = Field(default=5.0, ge=0)
    backlog_poll_s: float = Field(default=1.0, gt=0)
    auth_api_keys: str = ""  # comma-separated; empty with no JWT secret: auth off
    auth_jwt_secret: str = ""  # HS256 bearer tokens
    auth_jwt_audience: str = ""
    rate_limit_rps: float = Field(default=0.0, ge=0)  # per client; 0: off
    rate_limit_burst: int = Field(default=20, ge=1)
    idempotency_ttl_s: int = Field(default=86_400, ge=60)
    ingest_pack_max: int = Field(default=50, ge=1, le=1000)  # items per SQS message; 1: off

    # --- worker ------------------------------------------------------------------------------
    worker_concurrency: int = Field(default=32, ge=1)
    reply_ttl_s: int = Field(default=120, ge=1)
    shutdown_timeout_s: float = Field(default=20.0, ge=0)
    metrics_port: int = 9100

    # --- writer (ingest) -------------------------------------------------------------------------
    batch_size: int = Field(default=300, ge=1, le=10_000)
    batch_max_wait_s: float = Field(default=1.0, gt=0)

    # --- telemetry ---------------------------------------------------------------------------
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    log_format: Literal["json", "console"] = "json"

    @cached_property
    def api_keys(self) -> frozenset[str]:
        return frozenset(k.strip() for k in self.auth_api_keys.split(",") if k.strip())

    @property
    def auth_enabled(self) -> bool:
        return bool(self.api_keys or self.auth_jwt_secret)

    def dlq_name(self, queue: str) -> str:
        return f"{queue}{self.dlq_suffix}"
