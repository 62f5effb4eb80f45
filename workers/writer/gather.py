"""Gathering a batch: up to ``QF_BATCH_SIZE`` items, or what came within
``QF_BATCH_MAX_WAIT_S`` of the first.

Receiving goes through ``queuefront.consumer.Poller`` like every consumer: its receive
(short polls while there is work, one long poll when idle) starts a batch, and its
fan-out (several short polls at once) fills it — one receive call brings at most 10
messages, so a 300-item batch of small messages would otherwise take many round trips.
A message is never split between batches: one that does not fit waits for the next.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field

import msgspec

from queuefront import metrics, sink
from queuefront.consumer import Held, Poller, VisibilityKeeper
from queuefront.envelope import decode_ingest
from queuefront.failures import FailureLog
from queuefront.item import IngestItem
from queuefront.limits import MAX_RECEIVE_MESSAGES
from queuefront.routes import Route
from queuefront.telemetry import get_logger
from workers.writer import direct

log = get_logger(__name__)
FAILURES = FailureLog(log)

MAX_RECEIVE_FANOUT = 4
"""ReceiveMessage calls in flight at once while a batch fills."""
EMPTY_POLL_PAUSE_S = 0.1
"""Pause after an empty poll while a batch waits for company (bounded by its max wait)."""


@dataclass(eq=False)
class Parsed:
    """A received message and its items; ``poison`` when it cannot be read at all,
    ``refused`` when some of its items cannot be stored (they are left out of the
    batch; the message is kept for the DLQ once its other items are stored);
    ``dead_letter`` (the DLQ body) when it is refused to the DLQ at once (a direct
    message from API Gateway that does not fit its sink)."""

    held: Held
    route: Route | None
    items: list[IngestItem] = field(default_factory=list)
    poison: str = ""
    refused: list[str] = field(default_factory=list)
    dead_letter: str = ""

    @property
    def count(self) -> int:
        return max(1, len(self.items))


def parse(held: Held, sinks: dict[str, Route]) -> Parsed:
    came_direct = direct.attributes_of(held)
    if came_direct is not None:
        return parse_direct(held, sinks, *came_direct)
    try:
        message = decode_ingest(held.message.body)
    except msgspec.DecodeError as exc:
        return Parsed(held, None, poison=f"undecodable: {exc}")
    route = sinks.get(message.route)
    if route is None:
        return Parsed(held, None, poison=f"no ingest route {message.route!r}")
    metrics.ITEMS_PER_MESSAGE.observe(len(message.items))
    assert route.sink is not None
    items, refused = [], []
    for item in message.items:
        try:
            sink.check_item(route.sink, item)
        except sink.Invalid as exc:
            refused.append(str(exc))
            continue
        items.append(sink.item_of(route.sink, item))
    if refused:
        metrics.POISON_ROWS.labels(route.sink.table).inc(len(refused))
        FAILURES.note("items refused", table=route.sink.table, reason=refused[0])
    return Parsed(held, route, items, refused=refused)


def parse_direct(
    held: Held, sinks: dict[str, Route], attributes: Mapping[str, str], body: str
) -> Parsed:
    """A single vote from API Gateway: validated here, refused to the DLQ when it does
    not fit (``workers.writer.direct``)."""
    try:
        route, item = direct.parse(attributes, body, sinks, sent_at=held.message.sent_at)
    except direct.Refused as exc:
        reason = f"{exc.reason}: {exc}"
        direct.count_refusal(attributes.get(direct.ROUTE_ATTRIBUTE, ""), exc.reason)
        log.warning(
            "direct message refused to the DLQ",
            reason=reason,
            request_id=attributes.get(direct.REQUEST_ID_ATTRIBUTE, ""),
            message_id=held.message.message_id,
        )
        return Parsed(
            held,
            None,
            poison=reason,
            dead_letter=direct.dead_letter_body(attributes, body, reason),
        )
    metrics.ITEMS_PER_MESSAGE.observe(1)
    return Parsed(held, route, [item])


class Gatherer:
    """Fills batches from one queue; keeps what did not fit for the next batch."""

    def __init__(
        self,
        poller: Poller,
        keeper: VisibilityKeeper,
        sinks: dict[str, Route],
        *,
        batch_size: int,
        max_wait_s: float,
        stopping: asyncio.Event,
    ) -> None:
        self._poller = poller
        self._keeper = keeper
        self._sinks = sinks
        self._limit = batch_size
        self._max_wait_s = max_wait_s
        self._stopping = stopping
        self._carry: deque[Parsed] = deque()
        self._items_per_message = 1.0

    def carried(self) -> list[Held]:
        """Messages received but in no batch yet (released at shutdown)."""
        return [p.held for p in self._carry]

    async def gather(self) -> list[Parsed]:
        """Up to ``batch_size`` items, or what came within ``max_wait_s``."""
        limit = self._limit
        batch: list[Parsed] = []
        items = 0

        def take(parsed: Parsed) -> None:
            nonlocal items
            if batch and items + parsed.count > limit:
                self._carry.append(parsed)  # next batch: a message is never split
            else:
                batch.append(parsed)
                items += parsed.count

        while self._carry and (not batch or items + self._carry[0].count <= limit):
            take(self._carry.popleft())
        if not batch:
            first = await self._poller.receive(MAX_RECEIVE_MESSAGES)
            if not first:
                return []
            self._keeper.track(*first)
            for held in first:
                take(parse(held, self._sinks))
        deadline = time.monotonic() + self._max_wait_s
        while items < limit and not self._carry and not self._stopping.is_set():
            left = deadline - time.monotonic()
            if left <= 0:
                break
            wanted = (limit - items) / (MAX_RECEIVE_MESSAGES * self._items_per_message)
            fanout = max(1, min(MAX_RECEIVE_FANOUT, math.ceil(wanted)))
            received = await self._poller.receive_fanout(fanout)
            if not received:
                await asyncio.sleep(min(EMPTY_POLL_PAUSE_S, left))
                continue
            self._keeper.track(*received)
            for held in received:
                parsed = parse(held, self._sinks)
                self._items_per_message = 0.9 * self._items_per_message + 0.1 * parsed.count
                take(parsed)
        return batch
