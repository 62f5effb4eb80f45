"""The priority worker: ``python -m workers.priority``.

Drains the high and normal queues, calls the backend and hands each reply back to the
pod that waits for it. One module per step, read in this order:

- ``loop``: the receive loops → dispatcher → shutdown (below: priority and prefetch);
- ``trust``: a message is checked against the route table before anything runs;
- ``handle``: one message — claim, backend call, hand-back, delete or give back;
- ``backend``: the backend call, its reply bounded and its errors answered;
- ``handback``: the Redis side — claims, replies kept until stored, the publish;
- ``run``: the process wiring (SQS, Redis, HTTP session) and ``main``.

Strict priority. One receive loop per queue feeds a dispatcher that always starts
buffered high work first. The normal loop fetches only while the high loop is idle
(its last receive came back short) and slots are free, so a long poll on the high
queue never holds normal work back and normal work never crowds out high work.

Receiving follows ``queuefront.consumer.Poller`` (drain with short polls, long-poll for
one message when empty). A worker with many slots runs several loops per queue (one
per ``RECEIVERS_PER_SLOTS`` slots): one loop's round trips would otherwise cap intake.

Prefetch. A slot that frees up would sit idle for a whole receive round trip (10-15 ms
on the emulator, which answers a poll no sooner than its first 10 ms check, and about
as much on SQS) if the next message were fetched only then; with a 20 ms backend that
idles a third of the slots. So the loops keep up to ``PREFETCH_PER_RECEIVER`` messages
per loop (never more than the slots) received ahead, ready for the next free slot.
Measured (wrk -c64, 32 slots, 20 ms backend, 2 cores): 622-705 req/s without prefetch,
963-1,025 with 20-32 ready; messages waited 66 ms in the queue before, 16-26 ms after.
Receives already in flight count against the limit, so several loops never overshoot.
A prefetched message is held like a running one (its visibility is kept, a stopping
worker still handles it); high work still starts before any buffered normal work.
"""


def main() -> None:
    """The priority worker process, as ``python -m workers.priority`` and ``queuefront worker``
    run it.

    Imported when called: the step modules import this package, so it imports none of them.
    """
    from workers.priority.run import main as run

    run()
