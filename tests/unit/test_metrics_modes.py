"""Every gauge says how several api processes' values combine (QF_API_PROCESSES > 1).

prometheus_client's default for a gauge in multiprocess mode is ``all``: one series per
pid, kept after the process died, so a dashboard summing ``queuefront_pending_replies``
would count a dead process's requests forever and a restart would add series.
"""

from __future__ import annotations

from prometheus_client import Gauge

from queuefront import metrics

GAUGES = {name: value for name, value in vars(metrics).items() if isinstance(value, Gauge)}


def test_every_gauge_has_a_live_mode() -> None:
    assert GAUGES
    modes = {name: gauge._multiprocess_mode for name, gauge in GAUGES.items()}
    assert {name for name, mode in modes.items() if not mode.startswith("live")} == set(), modes


def test_counts_are_summed_and_readings_are_the_latest() -> None:
    modes = {name: gauge._multiprocess_mode for name, gauge in GAUGES.items()}
    assert modes["PENDING_REPLIES"] == "livesum"  # the task's requests waiting
    assert modes["WORKER_BUSY"] == "livesum"
    for reading in ("QUEUE_BACKLOG", "DRAIN_RATE", "ADMISSION_PREDICTED_WAIT", "DLQ_DEPTH"):
        assert modes[reading] == "livemostrecent", reading
