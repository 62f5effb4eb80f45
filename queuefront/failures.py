"""Failure logging that stays readable under load: one line per failure class per interval.

Under overload or with a dependency down, the same failure can happen thousands of
times a second; a log line (let alone a traceback) per occurrence would eat the CPU the
process needs to recover and bury everything else. Each *class* of failure — the event
name and the exception type — is logged at its first occurrence, then counted, and one
summary line with the count closes each interval in which it repeated. The counter
``queuefront_failures_total`` sees every occurrence, for alerting.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Any

from queuefront import metrics

SUMMARY_INTERVAL_S = 10.0
"""How long repeats of one failure class are counted before their summary line."""


@dataclass
class _Window:
    started: float
    repeats: int = 0
    flush: asyncio.TimerHandle | None = None


class FailureLog:
    """Logs ``note(event, exc)`` once per class per interval, with a count of repeats."""

    def __init__(self, logger: Any, *, interval_s: float = SUMMARY_INTERVAL_S) -> None:
        self._log = logger
        self._interval_s = interval_s
        self._windows: dict[tuple[str, str], _Window] = {}

    def note(
        self,
        event: str,
        exc: BaseException | None = None,
        *,
        traceback: bool = False,
        **fields: Any,
    ) -> None:
        """Records one failure. ``traceback``: log the stack with the first occurrence
        (for failures nobody expected; known dependency failures need no stack)."""
        kind = type(exc).__name__ if exc is not None else ""
        metrics.FAILURES.labels(event, kind or "none").inc()
        key = (event, kind)
        now = time.monotonic()
        window = self._windows.get(key)
        if window is not None and now - window.started < self._interval_s:
            window.repeats += 1
            if window.flush is None:
                window.flush = _call_later(
                    window.started + self._interval_s - now, self._summarise, key
                )
            return
        self._windows[key] = _Window(now)
        if exc is not None:
            fields["error"] = str(exc) or kind
            fields["error_type"] = kind
        if traceback and exc is not None:
            self._log.error(event, exc_info=exc, **fields)
        else:
            self._log.warning(event, **fields)

    def _summarise(self, key: tuple[str, str]) -> None:
        window = self._windows.pop(key, None)
        if window is None or not window.repeats:
            return
        event, kind = key
        self._log.warning(
            f"{event} (repeated)",
            error_type=kind or None,
            repeats=window.repeats,
            interval_s=self._interval_s,
        )


def _call_later(delay_s: float, fn: Any, *args: Any) -> asyncio.TimerHandle | None:
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:  # outside a loop (start-up code): the count goes with the next line
        return None
    return loop.call_later(max(0.0, delay_s), fn, *args)
