"""Every Prometheus metric, defined once; names carry the ``queuefront_`` prefix and units.

Each process exports the default registry, so a metric that a process never touches
is simply absent (labelled) or zero (unlabelled) in its output.

Several api processes in one container (``QF_API_PROCESSES`` > 1) run in
prometheus_client's multiprocess mode and their supervisor exports the sum: counters and
histograms add up (a dead process's files are kept, so totals never go back), and each
gauge says how its processes' values combine (``multiprocess_mode``; ignored by a
single process). Every mode is a ``live`` one, so the values of a process that died
leave the output with it: a count of what a task holds now is summed, a reading of
something the processes share (a queue's backlog, the drain rate) is the most recent.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 29, 60)

HTTP_REQUESTS = Counter(
    "queuefront_http_requests_total", "HTTP requests answered by the api.", ["route", "status"]
)
HTTP_DURATION = Histogram(
    "queuefront_http_request_duration_seconds",
    "Time from request to response at the api.",
    ["route", "priority"],
    buckets=LATENCY_BUCKETS,
)
CACHE_REQUESTS = Counter(
    "queuefront_cache_requests_total",
    "Response cache look-ups by result (hit, stale, miss, coalesced) and by the tier that "
    "answered (local: the pod's own, redis, none).",
    ["route", "result", "tier"],
)
CACHE_TIER_DROPS = Counter(
    "queuefront_cache_tier_drops_total",
    "Entries dropped from a pod's in-process tier (invalidation, resubscribe).",
    ["reason"],
)
CACHE_INVALIDATIONS = Counter(
    "queuefront_cache_invalidations_total", "Serials whose cached responses were dropped."
)
REPLIES = Counter(
    "queuefront_replies_total",
    "Replies awaited by the api, by outcome (ok, timeout, late, undecodable).",
    ["outcome"],
)
PUBSUB_SUBSCRIBES = Counter(
    "queuefront_pubsub_subscribes_total",
    "Subscriptions of the reply channel (1 at start, +1 per reconnect).",
)
REPLIES_RECOVERED = Counter(
    "queuefront_replies_recovered_total",
    "Replies fetched with MGET after a pub/sub reconnect instead of being pushed.",
)
SQS_CALLS = Counter("queuefront_sqs_calls_total", "SQS API calls.", ["operation"])
SQS_ENTRIES = Histogram(
    "queuefront_sqs_entries_per_call",
    "Entries (messages) carried by one SQS call.",
    ["operation"],
    buckets=(0, 1, 2, 3, 5, 8, 10),
)
SQS_FAILED_ENTRIES = Counter(
    "queuefront_sqs_failed_entries_total", "Batch entries SQS refused.", ["operation"]
)
SENDS_SETTLED = Counter(
    "queuefront_sends_settled_total",
    "Requests whose send failed or was not acknowledged in time, by how the api settled "
    "them: replied, claimed (a worker runs it: awaited), tombstoned (never runs: 503), "
    "unsettled (Redis did not answer).",
    ["outcome"],
)
SQS_UNKNOWN_SENDS = Counter(
    "queuefront_sqs_unknown_sends_total",
    "Messages whose SendMessageBatch answer was lost (read timeout, cut connection, 5xx): "
    "SQS may have them; never re-sent blindly.",
)
QUEUE_BACKLOG = Gauge(
    "queuefront_queue_backlog_messages",
    "ApproximateNumberOfMessages of a queue, as last read.",
    ["queue"],
    multiprocess_mode="livemostrecent",
)
ADMISSION_REJECTIONS = Counter(
    "queuefront_admission_rejections_total",
    "Requests refused with 503 before they were queued (reason: predicted_wait, "
    "high_backlog, pending_limit, pending_bytes, redis_full).",
    ["route", "reason"],
)
FAILURES = Counter(
    "queuefront_failures_total",
    "Failures by event and exception type (dependency down or slow, unexpected errors), "
    "each counted; logged once per class per 10 s.",
    ["event", "error_type"],
)
ADMISSION_PREDICTED_WAIT = Gauge(
    "queuefront_admission_predicted_wait_seconds",
    "Predicted queue wait of a newly admitted request, by priority (backlog / drain rate).",
    ["priority"],
    multiprocess_mode="livemostrecent",
)
DRAIN_RATE = Gauge(
    "queuefront_drain_rate_messages_per_second",
    "Messages per second the workers complete, as estimated by this pod.",
    multiprocess_mode="livemostrecent",
)
ADMISSION_SERVICE_TIME = Gauge(
    "queuefront_admission_service_seconds",
    "Mean time a worker takes per message (backend call and reply), from the completions "
    "this pod saw recently; admission keeps it free in every request's window.",
    multiprocess_mode="livemostrecent",
)
ADMISSION_PROBES = Counter(
    "queuefront_admission_probes_total",
    "Requests admitted although the estimate said no, because the estimate rested on old "
    "completions only (at most one per pod per window): they measure the workers again.",
)
CLOCK_OFFSET = Gauge(
    "queuefront_clock_offset_seconds",
    "How far this process's wall clock is ahead of the reference clock (Redis TIME) that "
    "cross-process times are written in; negative: behind.",
    multiprocess_mode="livemostrecent",
)
PENDING_REPLIES = Gauge(
    "queuefront_pending_replies",
    "Requests of this pod waiting for a reply.",
    multiprocess_mode="livesum",
)
REDIS_REFUSING_WRITES = Gauge(
    "queuefront_redis_refusing_writes",
    "1 while Redis refuses this api process's probe write for want of memory (maxmemory "
    "reached under noeviction): proxied requests get 503 at once.",
    multiprocess_mode="livemax",
)
PENDING_BYTES = Gauge(
    "queuefront_pending_request_bytes",
    "Bytes of request bodies this process holds (read, not yet queued or answered); "
    "bounded by QF_MAX_PENDING_BYTES.",
    multiprocess_mode="livesum",
)
RATE_LIMITED = Counter("queuefront_rate_limited_total", "Requests refused with 429.", ["route"])
WORKER_MESSAGES = Counter(
    "queuefront_worker_messages_total",
    "Messages handled by workers, by outcome (ok, backend_error, expired, released, "
    "invalid, publish_failed, duplicate, in_progress_elsewhere, failed, undeliverable: "
    "the backend answered but its reply could not be handed back, a 502 was sent instead; "
    "refused_late: answered 503 without a call, see queuefront_worker_refused_late_total; "
    "backend_busy: answered 503 without a call, no lease of the shared backend limit in "
    "time, see queuefront_backend_lease_refusals_total).",
    ["queue", "outcome"],
)
REFUSED_MESSAGES = Counter(
    "queuefront_worker_refused_messages_total",
    "Messages the worker refused to act on (left for the DLQ), by reason: undecodable, or "
    "not a request the route table allows (route, method, path, id, reply_to, deadline, cache).",
    ["queue", "reason"],
)
WORKER_REFUSED_LATE = Counter(
    "queuefront_worker_refused_late_total",
    "Messages a worker answered 503 backend_slow at once, without calling the backend: "
    "less of their window was left than the route's calls take now (its calls of the last "
    "5 s and those in flight). Each would otherwise have held a slot into a 504.",
    ["queue"],
)
BACKEND_LEASES_HELD = Gauge(
    "queuefront_backend_leases_held",
    "Leases of the shared backend limit (QF_BACKEND_MAX_CONCURRENCY) this worker holds: "
    "its backend calls in flight, and grants on their way to a waiting slot.",
    multiprocess_mode="livesum",
)
BACKEND_LEASE_WAIT = Histogram(
    "queuefront_backend_lease_wait_seconds",
    "Time a worker slot waited for a lease of the shared backend limit, by outcome "
    "(granted, refused: no lease before the message's window could no longer fit a call).",
    ["outcome"],
    buckets=LATENCY_BUCKETS,
)
BACKEND_LEASE_REFUSALS = Counter(
    "queuefront_backend_lease_refusals_total",
    "Messages answered 503 backend_busy without a call: no lease of the shared backend "
    "limit came while their window could still fit a call (reason: limit, the backend's "
    "calls were all taken; redis_away, Redis did not answer the worker's lease requests).",
    ["queue", "reason"],
)
EXPIRED_MESSAGES = Counter(
    "queuefront_expired_messages_total",
    "Messages deleted unprocessed because their reply deadline had passed.",
    ["queue"],
)
BACKEND_DURATION = Histogram(
    "queuefront_backend_request_duration_seconds",
    "Backend call duration seen by the worker.",
    ["route", "status_class"],
    buckets=LATENCY_BUCKETS,
)
GC_PAUSE = Histogram(
    "queuefront_gc_pause_seconds",
    "Pauses of the cyclic garbage collector, by generation (the event loop stands still).",
    ["generation"],
    buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0),
)
MESSAGE_AGE = Histogram(
    "queuefront_message_age_seconds",
    "Age of a message (since the api enqueued it) when a worker picks it up.",
    ["queue"],
    buckets=LATENCY_BUCKETS,
)
VISIBILITY_EXTENSIONS = Counter(
    "queuefront_visibility_extensions_total", "Messages whose visibility timeout was extended."
)
WORKER_BUSY = Gauge(
    "queuefront_worker_busy_slots",
    "Backend calls in progress in this worker.",
    multiprocess_mode="livesum",
)

# --- write path ------------------------------------------------------------------------

INGEST_ACCEPTED = Counter(
    "queuefront_ingest_accepted_total", "Ingest items acknowledged with 202.", ["route"]
)
INGEST_REJECTED = Counter(
    "queuefront_ingest_rejected_total", "Ingest bodies refused with 400.", ["route"]
)
INGEST_REFUSED = Counter(
    "queuefront_ingest_refused_total",
    "Messages from API Gateway's direct ingest integration the writer refused to the DLQ "
    "(reason: invalid, unknown_route, malformed).",
    ["route", "reason"],
)
ROWS_INSERTED = Counter(
    "queuefront_ingest_rows_inserted_total", "Rows the writer inserted.", ["table"]
)
DUPLICATES_SKIPPED = Counter(
    "queuefront_ingest_duplicates_total",
    "Items whose id was already stored (redelivery or client retry): skipped.",
    ["table"],
)
POISON_ROWS = Counter(
    "queuefront_ingest_poison_rows_total", "Rows the database rejected, isolated.", ["table"]
)
POISON_MESSAGES = Counter(
    "queuefront_ingest_poison_messages_total",
    "Messages left undeleted because an item in them could not be stored "
    "(final=true: at maxReceiveCount, bound for the DLQ).",
    ["final"],
)
BATCH_ROWS = Histogram(
    "queuefront_ingest_batch_rows",
    "Items per writer batch (one INSERT statement, one commit).",
    buckets=(1, 10, 25, 50, 100, 150, 200, 250, 300, 400),
)
COMMITS = Counter("queuefront_ingest_commits_total", "Writer transactions committed.")
INSERT_DURATION = Histogram(
    "queuefront_ingest_insert_duration_seconds",
    "Time to insert and commit one batch.",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
)
ITEMS_PER_MESSAGE = Histogram(
    "queuefront_ingest_items_per_message",
    "Ingest items per SQS message the writer receives.",
    buckets=(1, 2, 5, 10, 25, 50, 100, 200, 500),
)
DB_RETRIES = Counter(
    "queuefront_writer_db_retries_total", "Batch stores retried because Postgres failed."
)
WRITER_BATCH_FAILURES = Counter(
    "queuefront_writer_batch_failures_total",
    "Batches given back unstored after bounded retries of a database error that is neither "
    "a row's nor an outage's (missing table or column, privileges); alert on any.",
)
TALLY_UPDATES = Counter(
    "queuefront_tally_updates_total",
    "Tally batches applied to Redis (source=commit or source=sweep).",
    ["source"],
)
DLQ_DEPTH = Gauge(
    "queuefront_dlq_messages",
    "Messages in a dead-letter queue, as last read (worker: high, normal; writer: ingest).",
    ["queue"],
    multiprocess_mode="livemostrecent",
)
IDEMPOTENT_REPLAYS = Counter(
    "queuefront_idempotent_replays_total",
    "Requests answered from a stored response because their Idempotency-Key was seen.",
    ["route"],
)
INGEST_LAG = Histogram(
    "queuefront_ingest_lag_seconds",
    "Time from the api accepting an ingest item to the commit that stored it.",
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 300),
)


def api_process_restarts(registry: CollectorRegistry) -> Counter:
    """The api supervisor's own counter (``QF_API_PROCESSES`` > 1). It lives in the
    supervisor's registry, not the default one: it is no api process's, and it must count
    the processes that died. Defined here so that every metric is defined in this file."""
    return Counter(
        "queuefront_api_process_restarts_total",
        "api processes replaced by their supervisor (exited, or failed liveness: "
        "not_alive); only with QF_API_PROCESSES > 1.",
        ["reason"],
        registry=registry,
    )


def prime_api(routes: list[tuple[str, str, str, bool]]) -> None:
    """Creates the api's known label sets at 0 (route, kind, priority, cached).

    A labelled series appears only at its first increment; a burst that creates it
    within one scrape interval would be invisible to ``rate()``, which needs the 0.
    """
    for outcome in ("ok", "timeout", "late", "undecodable"):
        REPLIES.labels(outcome)
    for reason in ("invalidation", "resubscribe"):
        CACHE_TIER_DROPS.labels(reason)
    for outcome in ("replied", "claimed", "tombstoned", "unsettled"):
        SENDS_SETTLED.labels(outcome)
    for name, kind, priority, cached in routes:
        HTTP_DURATION.labels(name, priority if kind == "proxy" else "none")
        if cached:
            for result, tier in (
                ("hit", "local"),
                ("hit", "redis"),
                ("stale", "local"),
                ("stale", "redis"),
                ("miss", "none"),
                ("coalesced", "none"),
            ):
                CACHE_REQUESTS.labels(name, result, tier)
        if kind == "ingest":
            INGEST_ACCEPTED.labels(name)
            INGEST_REJECTED.labels(name)


def prime_consumer(
    queues: list[str], outcomes: tuple[str, ...], tables: tuple[str, ...] = ()
) -> None:
    """Same for a worker's or writer's queues and tables."""
    for queue in queues:
        for outcome in outcomes:
            WORKER_MESSAGES.labels(queue, outcome)
        MESSAGE_AGE.labels(queue)
    for table in tables:
        ROWS_INSERTED.labels(table)
        DUPLICATES_SKIPPED.labels(table)
        POISON_ROWS.labels(table)


def prime_refusals(queues: list[str], reasons: tuple[str, ...]) -> None:
    """Every refusal reason at 0, so an alert's rate() sees the first one."""
    for queue in queues:
        WORKER_REFUSED_LATE.labels(queue)
        for reason in reasons:
            REFUSED_MESSAGES.labels(queue, reason)


def prime_lease_refusals(queues: list[str], reasons: tuple[str, ...]) -> None:
    """The shared backend limit's refusals and waits at 0 (a worker with the limit on)."""
    for queue in queues:
        for reason in reasons:
            BACKEND_LEASE_REFUSALS.labels(queue, reason)
    for outcome in ("granted", "refused"):
        BACKEND_LEASE_WAIT.labels(outcome)
    BACKEND_LEASES_HELD.set(0)


@lru_cache(maxsize=4096)
def child(metric: Any, *labels: str) -> Any:
    """``metric.labels(*labels)``, looked up once: ``labels()`` takes a lock and converts
    every value on each call, which shows in the profile of a hot path served in 0.1 ms."""
    return metric.labels(*labels)
