"""``python -m bench.scaling.sqs_delivery [--rates PER_S ...] [--seconds S]``: how long a
message takes on this machine's SQS emulator from the api's send to the worker's receive.

The simulator's ``sqs_delivery_s`` is this delay. This starts the local emulator on a free
port and a queue of its own, and receives from it as a worker of the SLA benchmark does:
its receive loops per queue (``receivers_per_queue`` of the benchmark's worker
concurrency), each a ``queuefront.consumer.Poller`` (one message on a long poll, up to ten
on the short polls that follow a receive that brought some). It sends at an even rate
through ``QueueOps.send`` (the api's send, with its default linger) and prints, per rate,
the median and p99 from the send's start to the receive's return, in one process and
clock. Seconds per rate; 127.0.0.1 only; the emulator and the queue are removed at the end.

What it shows on local-aws-sqs 2.0.2 (deploy/local/sqs): a receive returns when it has as
many messages as it asked for, or when its wait ends — a long poll checks every 10 ms,
and a short poll (WaitTimeSeconds 0) still waits 40 ms for company. Below ten messages per
40 ms per receive loop, a message waits for the short poll's end.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import statistics
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from bench import sla
from bench.measure import percentile
from bench.scaling.workers import receivers_per_queue
from devstack import new_stack_env, start_emulator
from queuefront.consumer import Poller
from queuefront.limits import MAX_RECEIVE_MESSAGES
from queuefront.queues import delete_queues, ensure_queues
from queuefront.settings import Settings
from queuefront.sqs import QueueOps, open_client
from queuefront.telemetry import configure_logging

RECEIVE_WAIT_S = Settings.model_fields["receive_wait_s"].default
"""A worker's long poll (QF_RECEIVE_WAIT_S's default)."""
DEFAULT_RATES = [level / 60 for level in (3_500, 20_000, 35_000)]
"""Messages per second: the recorded SLA levels below the backend's capacity."""


async def measure(messages: int, rate_per_s: float, receivers: int) -> list[float]:
    """Seconds from each send's start to the receive that returned it."""
    procs = []
    log_dir = Path(tempfile.mkdtemp(prefix="qf-sqs-delivery-"))
    try:
        url, proc = await start_emulator(log_dir)
        procs.append(proc)
        # queue names of its own (the tag new_stack_env draws), as the benchmarks' stacks
        env = new_stack_env({"QF_SQS_ENDPOINT_URL": url})
        settings = Settings(
            sqs_endpoint_url=url,
            queue_high=env["QF_QUEUE_HIGH"],
            queue_normal=env["QF_QUEUE_NORMAL"],
            queue_ingest=env["QF_QUEUE_INGEST"],
        )
        await ensure_queues(settings, wait_s=10)
        sent_at: dict[str, float] = {}
        delays: list[float] = []
        try:
            async with open_client(settings) as client:
                ops = await QueueOps.open(
                    client, settings.queue_normal, settings.send_linger_ms / 1000
                )
                # the worker's receive loops on one queue, each a Poller asking for its
                # free slots (one message on a long poll: the emulator answers a long poll
                # only once it has as many as asked, or at its end)
                pollers = [Poller(ops, RECEIVE_WAIT_S) for _ in range(receivers)]
                deletes: set[asyncio.Task[None]] = set()
                all_in = asyncio.Event()

                async def receive(poller: Poller) -> None:
                    while len(delays) < messages:
                        for held in await poller.receive(MAX_RECEIVE_MESSAGES) or []:
                            delays.append(time.perf_counter() - sent_at[held.message.body])
                            if len(delays) >= messages:
                                all_in.set()
                            task = asyncio.create_task(held.delete())
                            deletes.add(task)
                            task.add_done_callback(deletes.discard)

                loops = [asyncio.create_task(receive(p)) for p in pollers]
                await asyncio.sleep(0.5)  # the long polls wait before the first send
                sends = []
                start = time.perf_counter()
                for i in range(messages):  # open loop: message i leaves at i / rate
                    await asyncio.sleep(max(0.0, start + i / rate_per_s - time.perf_counter()))
                    body = f"m{i}"
                    sent_at[body] = time.perf_counter()
                    sends.append(asyncio.create_task(ops.send(body)))
                await asyncio.gather(*sends)
                with contextlib.suppress(TimeoutError):  # counted: the report shows how many
                    await asyncio.wait_for(all_in.wait(), RECEIVE_WAIT_S)
                for loop in loops:  # a loop may be in a long poll: nothing left to bring
                    loop.cancel()
                await asyncio.gather(*loops, return_exceptions=True)
                await asyncio.gather(*deletes, return_exceptions=True)
                await ops.close()
        finally:
            await delete_queues(settings)
    finally:
        for proc in procs:
            proc.stop()
    return delays


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.scaling.sqs_delivery", description=__doc__.split("\n\n")[1]
    )
    parser.add_argument(
        "--rates",
        type=float,
        nargs="+",
        default=DEFAULT_RATES,
        help="messages per second (default: the SLA levels below capacity)",
    )
    parser.add_argument("--seconds", type=float, default=5.0, help="per rate")
    args = parser.parse_args(argv)
    configure_logging("WARNING")  # not a line per queue created
    receivers = receivers_per_queue(sla.parse_args([]).worker_concurrency)
    print(f"{receivers} receive loops (the SLA benchmark's worker)")
    for rate in args.rates:
        n = max(1, round(rate * args.seconds))
        ms = [d * 1000 for d in asyncio.run(measure(n, rate, receivers))]
        print(
            f"{rate:>6,.0f}/s, {len(ms):,} messages: send to receive median "
            f"{statistics.median(ms):.1f} ms, p99 {percentile(ms, 0.99):.1f} ms, "
            f"max {max(ms):.1f} ms"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
