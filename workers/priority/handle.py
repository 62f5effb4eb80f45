"""One message, from receipt to its end: checked, claimed, the backend called once (or, when
its window cannot fit the backend's current pace, or no lease of the shared backend limit
comes while it still could, answered 503 at once), the reply handed back; then deleted,
given back, or left to reach its DLQ."""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections.abc import Callable, Coroutine
from typing import Any

import msgspec
import structlog
from redis.exceptions import RedisError

from queuefront import clock, drain, metrics
from queuefront.consumer import Held, VisibilityKeeper
from queuefront.drain import DrainReporter
from queuefront.envelope import Reply, RequestEnvelope, decode_request
from queuefront.failures import FailureLog
from queuefront.telemetry import get_logger
from workers.priority.backend import Backend, error_reply
from workers.priority.handback import Expired, HandBack
from workers.priority.leases import BackendLeases
from workers.priority.pace import REFUSE_MARGIN_S, Judgement, RoutePaces
from workers.priority.trust import MessageCheck, Refused

log = get_logger(__name__)
FAILURES = FailureLog(log)

FAILED_RETRY_S = 5
"""Visibility given back to a message whose handling failed unexpectedly: it is retried
soon, and after maxReceiveCount it is in the DLQ for an operator."""
CLAIMED_RECHECK_S = 5
"""When a request is claimed by another worker, its duplicate looks again this much later."""
ANSWER_INSTEAD_S = 2.0
"""How long a 502 sent in place of a reply that could not be handed back may take."""
WORKER_OUTCOMES = (
    "ok",
    "backend_error",
    "expired",
    "released",
    "duplicate",
    "in_progress_elsewhere",
    "publish_failed",
    "failed",
    "invalid",
    "undeliverable",
    "refused_late",
    "backend_busy",
)
LEASE_REFUSAL_REASONS = ("limit", "redis_away")
BUSY_RETRY_AFTER_S = 1
"""``Retry-After`` of a 503 backend_busy: the limit frees as calls end, within a call's time."""
LEASE_TRY_S = 0.05
"""The shortest a slot waits for a lease (a round trip to Redis), within its window: a free
lease is worth asking for even when the route's typical call looks longer than what is left
(the pace judged the call worth making)."""

REFUSE_RETRY_MARGIN_S = 1.0
"""Seconds a whole window must hold beyond the backend's pace for a refused request's
retry to be worth sending at once (``Retry-After: 1``): its own queue wait."""

Spawn = Callable[[Coroutine[Any, Any, Any]], None]
"""Runs a coroutine in the background, awaited by the worker before it stops."""


class Handler:
    """Handles one held message at a time per call; the worker's loop calls it per slot."""

    def __init__(
        self,
        check: MessageCheck,
        handback: HandBack,
        backend: Backend,
        reporter: DrainReporter,
        keeper: VisibilityKeeper,
        spawn: Spawn,
        pace: RoutePaces | None = None,
        leases: BackendLeases | None = None,
    ) -> None:
        self._check = check
        self._pace = pace
        """None: every message is called, whatever its window (``QF_WORKER_REFUSE_LATE``)."""
        self._leases = leases
        """None: no shared backend limit (``QF_BACKEND_MAX_CONCURRENCY`` 0)."""
        self._handback = handback
        self._backend = backend
        self._reporter = reporter
        self._keeper = keeper
        self._spawn = spawn
        self.claimed: dict[Held, RequestEnvelope] = {}
        """Messages whose claim is this worker's: the loop unclaims them when it cuts one
        short before its backend call."""

    async def handle(self, held: Held) -> None:
        """Whatever happens, the message ends deleted (after its reply), released, or
        left to reach its DLQ — never held without an owner."""
        queue_name = held.queue.name
        try:
            env = self._check.check(decode_request(held.message.body))
        except Exception as exc:
            # never executed; left undeleted: after maxReceiveCount receives SQS moves it
            # to the DLQ, where an operator finds it
            self._keeper.untrack(held)
            reason = exc.reason if isinstance(exc, Refused) else "undecodable"
            FAILURES.note(f"message refused ({reason})", exc, message_id=held.message.message_id)
            metrics.WORKER_MESSAGES.labels(queue_name, "invalid").inc()
            metrics.REFUSED_MESSAGES.labels(queue_name, reason).inc()
            return
        structlog.contextvars.bind_contextvars(request_id=env.id, route=env.route)
        try:
            await self._process(held, env)
        except asyncio.CancelledError:
            raise  # shutdown: the loop releases what it cancels
        except Exception as exc:
            # decided on whether the backend call *started*, never on what it returned:
            # once it has, the backend may have acted, and a second call may act twice
            if held.backend_started:
                await self._answer_instead(held, env, exc)
                return
            FAILURES.note("message handling failed", exc, traceback=True)
            metrics.WORKER_MESSAGES.labels(queue_name, "failed").inc()
            if self.claimed.pop(held, None) is not None:
                await self._handback.unclaim(env)  # ours only: never another worker's
            self._keeper.untrack(held)
            # visible again soon: retried, and after maxReceiveCount in the DLQ
            self._spawn(held.release(FAILED_RETRY_S))

    async def _answer_instead(self, held: Held, env: RequestEnvelope, exc: Exception) -> None:
        """After the backend call, a reply that cannot be handed back as it is (it cannot
        be encoded, Redis refuses to store it): the client gets a 502 naming the problem
        at once, instead of a 504 at its deadline, and the message is deleted — a second
        delivery could only call the backend again."""
        FAILURES.note("reply not handed back, 502 sent instead", exc, traceback=True)
        metrics.WORKER_MESSAGES.labels(held.queue.name, "undeliverable").inc()
        problem = "Redis refused it" if isinstance(exc, RedisError) else type(exc).__name__
        reply = error_reply(
            env.id,
            502,
            "bad_gateway",
            f"the backend answered, but its answer could not be passed on ({problem})",
        )
        try:
            async with asyncio.timeout(max(0.05, min(ANSWER_INSTEAD_S, env.seconds_left()))):
                # hand_back, not publish: a cached route's waiting pods are released too
                await self._handback.hand_back(env, reply)
        except Exception as again:  # Redis away or refusing: nothing more can reach the pod
            FAILURES.note("502 instead of the reply not delivered either", again)
        self._done(held)

    async def _process(self, held: Held, env: RequestEnvelope) -> None:
        """Handles one decoded message. ``held.backend_started`` is set before the call."""
        queue_name = held.queue.name
        metrics.MESSAGE_AGE.labels(queue_name).observe(max(0.0, clock.now() - env.enqueued_at))
        if env.seconds_left() <= 0:
            # the client already has its 504: calling the backend would only add load
            self._expired(held, env)
            return
        try:
            claim = await self._handback.claim(env)
        except Expired:
            self._expired(held, env)
            return
        if claim.outcome == "replied":
            # settled already (a duplicate delivery, or the api's tombstone): no second
            # backend call; publishing again costs nothing and may still reach its pod
            assert claim.stored is not None
            metrics.WORKER_MESSAGES.labels(queue_name, "duplicate").inc()
            with contextlib.suppress(Expired, RedisError):  # Redis away, or refusing
                await self._handback.publish(env, claim.stored)
            self._done(held)
            return
        if claim.outcome == "elsewhere":
            # another worker calls (or called) the backend for it: look again later;
            # after the deadline the copy is dropped as expired
            metrics.WORKER_MESSAGES.labels(queue_name, "in_progress_elsewhere").inc()
            self._keeper.untrack(held)
            self._spawn(held.release(min(CLAIMED_RECHECK_S, max(1, int(env.seconds_left())))))
            return
        self.claimed[held] = env
        # judged once the claim is ours: a 503 sent without it could race a duplicate
        # delivery that another worker claimed and calls (the client told "not run" while
        # the backend runs it); with it, the 503 settles the request id like any reply
        judgement = self._judge(env)
        if not judgement.call:
            await self._refuse_late(held, env, judgement.service_s)
            return
        lease: str | None = None
        if self._leases is not None:
            lease = await self._lease(self._leases, env, judgement)
            if lease is None:
                await self._refuse_busy(held, env)
                return
            # the message aged while it waited: judged again as if it had just come
            judgement = self._judge(env)
            if not judgement.call:
                self._leases.release(lease)
                await self._refuse_late(held, env, judgement.service_s)
                return
        # the lease (if any) is taken before the call starts and given back once it ends
        held.backend_started = True
        started = time.monotonic()
        try:
            reply = await self._call(env)
        finally:
            if lease is not None and self._leases is not None:
                self._leases.release(lease)
        try:
            await self._handback.hand_back(env, reply)
        except Expired:
            # the deadline passed with Redis unavailable: nobody waits for it any more
            self._keeper.untrack(held)
            metrics.WORKER_MESSAGES.labels(queue_name, "publish_failed").inc()
            self._done(held)
            return
        self._reporter.record(time.monotonic() - started)
        outcome = "ok" if reply.status < 500 else "backend_error"
        metrics.WORKER_MESSAGES.labels(queue_name, outcome).inc()
        log.debug("replied", status=reply.status)
        self._done(held)

    def _judge(self, env: RequestEnvelope) -> Judgement:
        if self._pace is None:
            return Judgement(True, 0.0)
        return self._pace.of(env.route).judge(env.seconds_left())

    async def _lease(
        self, leases: BackendLeases, env: RequestEnvelope, judgement: Judgement
    ) -> str | None:
        """A lease of the shared backend limit, waited for only while the message's window
        can still fit a call: its remaining window less the reply's way back
        (``REFUSE_MARGIN_S``) and the route's typical call now (the judgement's median; 0
        when nothing was measured), but a round trip at least while any window is left."""
        left_s = env.seconds_left() - REFUSE_MARGIN_S
        wait_s = max(left_s - judgement.service_s, min(LEASE_TRY_S, left_s))
        started = time.monotonic()
        lease = await leases.acquire(wait_s)
        outcome = "refused" if lease is None else "granted"
        metrics.BACKEND_LEASE_WAIT.labels(outcome).observe(time.monotonic() - started)
        return lease

    async def _refuse_busy(self, held: Held, env: RequestEnvelope) -> None:
        """No lease of the shared backend limit came while the message's window could fit
        a call: a 503 at once, nothing called, the message deleted (as ``_refuse_late``).
        With Redis away the answer waits for Redis like any reply, until the deadline."""
        assert self._leases is not None
        queue_name = held.queue.name
        reason = "limit" if self._leases.redis_ok else "redis_away"
        metrics.BACKEND_LEASE_REFUSALS.labels(queue_name, reason).inc()
        metrics.WORKER_MESSAGES.labels(queue_name, "backend_busy").inc()
        log.info("refused: no backend lease within the window", reason=reason)
        reply = busy_reply(env.id, self._leases.limit, reason)
        with contextlib.suppress(Expired):  # Redis away until the deadline: nobody waits
            await self._handback.hand_back(env, reply)
        self._done(held)

    async def _call(self, env: RequestEnvelope) -> Reply:
        """The backend call, counted in flight for the pace (its age shows a slowdown)."""
        if self._pace is None:
            return await self._backend.call(env)
        with self._pace.of(env.route).calling():
            return await self._backend.call(env)

    async def _refuse_late(self, held: Held, env: RequestEnvelope, service_s: float) -> None:
        """A message whose window is shorter than a backend call takes now: a 503 at once
        (a fast refusal the client can retry) instead of a call into a 504 at its deadline.
        Never called, so nothing ran: the idempotency key is released (a 503 is never
        replayed, ``service.idempotency``) and a retry runs afresh. Deleted like any
        answered message; the claim stays, so a duplicate delivery finds this reply."""
        queue_name = held.queue.name
        left_s = env.seconds_left()
        window_s = env.deadline - env.enqueued_at
        # a fresh request gets its whole window again: worth retrying at once if that holds
        # a call; if not, only a faster backend helps, seen once the estimate's window
        # has turned over
        fits = window_s >= service_s + REFUSE_RETRY_MARGIN_S
        retry_after_s = 1 if fits else max(1, math.ceil(drain.SERVICE_WINDOW_S))
        reply = late_reply(env.id, service_s, left_s, retry_after_s)
        metrics.WORKER_REFUSED_LATE.labels(queue_name).inc()
        metrics.WORKER_MESSAGES.labels(queue_name, "refused_late").inc()
        log.info(
            "refused late: window shorter than the backend's pace",
            service_s=round(service_s, 3),
            seconds_left=round(left_s, 3),
        )
        with contextlib.suppress(Expired):  # Redis away until the deadline: nobody waits
            # hand_back, not publish: a cached route's waiting pods are released too
            await self._handback.hand_back(env, reply)
        self._done(held)

    def _expired(self, held: Held, env: RequestEnvelope) -> None:
        metrics.EXPIRED_MESSAGES.labels(held.queue.name).inc()
        metrics.WORKER_MESSAGES.labels(held.queue.name, "expired").inc()
        # counted in queuefront_expired_messages_total; logged once per interval
        FAILURES.note("expired message dropped", late_by_s=round(-env.seconds_left(), 3))
        self._done(held)

    def _done(self, held: Held) -> None:
        """Deleted in the background: the slot is free as soon as the reply is out."""
        self.claimed.pop(held, None)
        self._keeper.untrack(held)
        self._spawn(held.delete())


def late_reply(request_id: str, service_s: float, seconds_left: float, retry_after_s: int) -> Reply:
    """The 503 of a message refused late: the problem named (``backend_slow``), the two
    numbers that decided it, and when to retry."""
    body = msgspec.json.encode(
        {
            "error": "backend_slow",
            "message": (
                f"the backend takes about {service_s:.1f} s per request at the moment, more "
                f"than the {max(0.0, seconds_left):.1f} s left of this request's window; "
                "it was not sent; retry later"
            ),
            "request_id": request_id,
            "service_s": round(service_s, 3),
            "seconds_left": round(max(0.0, seconds_left), 3),
        }
    )
    headers = [("Content-Type", "application/json"), ("Retry-After", str(retry_after_s))]
    return Reply(id=request_id, status=503, headers=headers, body=body)


def busy_reply(request_id: str, limit: int, reason: str) -> Reply:
    """The 503 of a message that got no lease of the shared backend limit in time."""
    why = (
        f"all {limit} backend calls the workers may make at once (QF_BACKEND_MAX_CONCURRENCY) "
        "stayed taken"
        if reason == "limit"
        else "the shared backend limit could not be checked (Redis did not answer)"
    )
    body = msgspec.json.encode(
        {
            "error": "backend_busy",
            "message": f"{why} for as long as this request's window could fit a call; "
            "it was not sent; retry later",
            "request_id": request_id,
        }
    )
    headers = [("Content-Type", "application/json"), ("Retry-After", str(BUSY_RETRY_AFTER_S))]
    return Reply(id=request_id, status=503, headers=headers, body=body)
