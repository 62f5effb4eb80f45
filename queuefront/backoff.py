"""How long to wait before the next try: one exponential back-off for every retry loop.

The step doubles with each failure in a row, from ``first_s`` up to ``cap_s``. What is
drawn within the step depends on who else is retrying:

- ``"full"``: anywhere in ``[0, step]``. Many clients that failed at the same moment (every
  pod when SQS or Redis goes away) come back spread out, not in one burst per round —
  the AWS Architecture Blog's "Exponential Backoff And Jitter", and botocore's standard
  retry mode.
- ``"equal"``: in ``[step / 2, step]``: spread out too, but no retry comes sooner than
  half the step (a consumer's receive errors: an immediate retry would only fail again).
- ``"none"``: the step itself, for a single process restarting its own child: nobody
  else retries with it, and a fixed delay is what its log promises.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

Jitter = Literal["full", "equal", "none"]

MAX_DOUBLINGS = 64
"""Beyond this the cap has long been reached; a float power would overflow at 1024."""


def backoff(
    attempt: int,
    *,
    first_s: float,
    cap_s: float,
    jitter: Jitter,
    rand: Callable[[], float] | None = None,
) -> float:
    """The pause before try ``attempt + 1``, after ``attempt`` failures in a row (from 1).

    ``rand`` draws in ``[0, 1)`` (``random.random``, looked up at each call).
    """
    step = min(cap_s, first_s * 2.0 ** min(max(0, attempt - 1), MAX_DOUBLINGS))
    if jitter == "none":
        return step
    drawn = (rand or random.random)()
    if jitter == "equal":
        return step / 2 + drawn * step / 2
    return drawn * step


@dataclass(frozen=True)
class Backoff:
    """One retry loop's back-off, named once beside the loop's other constants."""

    first_s: float
    """The step after the first failure."""
    cap_s: float
    """The longest step."""
    jitter: Jitter

    def __call__(self, attempt: int, rand: Callable[[], float] | None = None) -> float:
        return backoff(
            attempt, first_s=self.first_s, cap_s=self.cap_s, jitter=self.jitter, rand=rand
        )
