"""Every Prometheus metric, defined once; names carry the ``queuefront_`` prefix and units.

Each process exports the default registry, so a metric that a process never touches
is simply absent (labelled) or zero (unlabelled) in its output.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

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
    "queuefront_cache_requests_total", "Response cache look-ups.", ["route", "result"]
)
CACHE_INVALIDATIONS = Counter(
    "queuefront_cache_invalidations_total", "Serials whose cached responses were dropped."
)
REPLIES = Counter(
    "queuefront_replies_total",
    "Replies awaited by the api, by outcome (ok, timeout, late).",
    ["outcome"],
)
PUBSUB_RESUBSCRIBES = Counter(
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
QUEUE_BACKLOG = Gauge(
    "queuefront_queue_backlog_messages",
    "ApproximateNumberOfMessages of a queue, as last read.",
    ["queue"],
)
ADMISSION_REJECTIONS = Counter(
    "queuefront_admission_rejections_total",
    "Normal-priority requests refused with 503 because the high queue was backed up.",
    ["route"],
)
RATE_LIMITED = Counter("queuefront_rate_limited_total", "Requests refused with 429.", ["route"])
WORKER_MESSAGES = Counter(
    "queuefront_worker_messages_total",
    "Messages handled by workers, by outcome (ok, backend_error, expired, released, invalid).",
    ["queue", "outcome"],
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
MESSAGE_AGE = Histogram(
    "queuefront_message_age_seconds",
    "Age of a message (since the api enqueued it) when a worker picks it up.",
    ["queue"],
    buckets=LATENCY_BUCKETS,
)
VISIBILITY_EXTENSIONS = Counter(
    "queuefront_visibility_extensions_total", "Messages whose visibility timeout was extended."
)
WORKER_BUSY = Gauge("queuefront_worker_busy_slots", "Backend calls in progress in this worker.")
