"""The ingest queue and the writer tasks.

Accepted votes are packed into SQS messages by each api process (``service/packer.py``:
group commit — items that arrive while the previous send is in flight share the next
message, up to ``QF_INGEST_PACK_MAX``), so a message holds about ``1 + rate x send time``
items. A writer gathers a batch for up to ``QF_BATCH_MAX_WAIT_S`` or until it has
``QF_BATCH_SIZE`` items (workers/writer/gather.py), holding its messages in flight
meanwhile, then stores at the speed its CPU allows (the measured writer CPU per stored
vote). A message older than the queue's retention is dropped by SQS: the only loss.
"""

from __future__ import annotations

import math
from collections import deque


class IngestQueue:
    def __init__(
        self, pack_max: int, batch_size: int, batch_wait_s: float, retention_s: float
    ) -> None:
        self.pack_max = pack_max
        self.batch_size = batch_size
        self.batch_wait_s = batch_wait_s
        self.retention_s = retention_s
        self.entries: deque[list[float]] = deque()  # [items, messages, accepted_at, ready_at]
        self.items = 0
        self.messages = 0
        self.max_messages = 0
        self.max_oldest_age_s = 0.0
        self.stored = 0
        self.lost = 0
        self.tasks = 0
        self.cpu_s_per_item = 0.0
        self.cpu_per_task = 1.0
        self._carry = 0.0
        self._through = 0.0
        """Messages a writer held during the last step although they are deleted by its end
        (Little's law: messages/s x seconds each is held), for SQS's in-flight count."""

    def accept(self, items: int, now: float, items_per_message: float, rate: float) -> None:
        """``items`` accepted at ``now``; ``rate`` items/s arrive (a batch fills sooner)."""
        if items <= 0:
            return
        per_msg = min(float(self.pack_max), max(1.0, items_per_message))
        msgs = math.ceil(items / per_msg)
        gather = min(self.batch_wait_s, self.batch_size / max(rate, 1e-9))
        self.entries.append([float(items), float(msgs), now, now + gather])
        self.items += items
        self.messages += msgs
        self.max_messages = max(self.max_messages, self.messages)

    def run(self, now: float, dt: float) -> int:
        """Stores what the running writers can in dt; returns the items stored."""
        while self.entries and now - self.entries[0][2] > self.retention_s:
            items, msgs, _, _ = self.entries.popleft()
            self.items -= int(items)
            self.messages -= int(msgs)
            self.lost += int(items)
        if self.tasks == 0:
            self._carry = 0.0
            return 0
        self._carry += self.tasks * self.cpu_per_task * dt / max(self.cpu_s_per_item, 1e-9)
        budget = int(self._carry)
        done = 0
        self._through = 0.0
        while budget > 0 and self.entries and self.entries[0][3] <= now + dt:
            entry = self.entries[0]
            items, msgs = int(entry[0]), int(entry[1])
            k = min(items, budget)
            m = msgs if k == items else min(msgs - 1, math.floor(msgs * k / items))
            self._through += m / dt * (entry[3] - entry[2])
            entry[0], entry[1] = items - k, msgs - m
            if k == items:
                self.entries.popleft()
            self.items -= k
            self.messages -= m
            budget -= k
            done += k
        self._carry -= done
        if not self.entries:
            self._carry = min(self._carry, 1.0)  # idle capacity is not saved up
        self.stored += done
        return done

    def held(self) -> int:
        """Messages of the queue the writers have received: a batch's worth per writer."""
        if not self.tasks or not self.messages:
            return 0
        per_msg = max(1.0, self.items / self.messages)
        return min(self.messages, self.tasks * math.ceil(self.batch_size / per_msg))

    def in_flight(self) -> int:
        """SQS's in-flight count: what the writers hold, and what passed through them
        during the step (received and deleted within it)."""
        return self.held() + (round(self._through) if self.tasks else 0)

    def oldest_age_s(self, now: float) -> float:
        return now - self.entries[0][2] if self.entries else 0.0
