"""What the writer reports about each batch: per-table counts, commit time, ingest lag.

Kept out of the store so the insert transaction reads as SQL and nothing else.
"""

from __future__ import annotations

import time
from collections.abc import Iterable

from queuefront import clock, metrics
from queuefront.item import IngestItem


def table_outcome(table: str, *, inserted: int, duplicates: int, rejected: int) -> None:
    metrics.ROWS_INSERTED.labels(table).inc(inserted)
    metrics.DUPLICATES_SKIPPED.labels(table).inc(duplicates)
    metrics.POISON_ROWS.labels(table).inc(rejected)


def committed(started: float, items: Iterable[list[IngestItem]]) -> None:
    """After a commit: its duration, its size and each item's time since the api took it."""
    metrics.COMMITS.inc()
    metrics.INSERT_DURATION.observe(time.perf_counter() - started)
    committed_at = clock.now()  # received_at is on the reference clock too
    total = 0
    for group in items:
        total += len(group)
        for item in group:
            metrics.INGEST_LAG.observe(max(0.0, committed_at - item.received_at))
    metrics.BATCH_ROWS.observe(total)
