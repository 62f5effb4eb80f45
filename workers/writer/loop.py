"""The writer's loop: gather → store → settle, until stopped; then give back what it holds."""

from __future__ import annotations

import asyncio

from queuefront import tasks
from queuefront.consumer import Poller, VisibilityKeeper
from queuefront.outbox import TallyOutbox
from queuefront.routes import RouteTable
from queuefront.settings import Settings
from queuefront.sqs import QueueOps
from queuefront.telemetry import get_logger
from workers.writer import settle
from workers.writer.gather import Gatherer, Parsed
from workers.writer.store import BatchStore, CredentialsRefused, Unstorable

log = get_logger(__name__)


class Writer:
    def __init__(
        self,
        settings: Settings,
        queue: QueueOps,
        store: BatchStore,
        outbox: TallyOutbox,
        routes: RouteTable,
        keeper: VisibilityKeeper,
        dlq: QueueOps | None = None,
    ) -> None:
        self._settings = settings
        self._queue = queue
        self._dlq = dlq
        self.credentials_refused: CredentialsRefused | None = None
        """Set when the writer stopped because Postgres refused its credentials."""
        self._store = store
        self._outbox = outbox
        self._keeper = keeper
        self._poller = Poller(queue, settings.receive_wait_s)
        self._stopping = asyncio.Event()
        self._gatherer = Gatherer(
            self._poller,
            keeper,
            routes.sinks,
            batch_size=settings.batch_size,
            max_wait_s=settings.batch_max_wait_s,
            stopping=self._stopping,
        )

    @property
    def last_receive_ok(self) -> float:
        return self._poller.last_ok

    def down(self) -> list[str]:
        return self._store.down()

    def stop(self) -> None:
        self._stopping.set()

    async def _store_batch(self, batch: list[Parsed]) -> bool:
        """Stores and settles one batch; False when stopping with the batch given back
        (Postgres down at shutdown), so the loop ends."""
        try:
            result = await self._store.store_until_done(batch, self._stopping)
        except CredentialsRefused as exc:
            log.error(
                "the database refused the writer's credentials (rotated password?): giving"
                " the batch back and exiting, so that a new task reads the current secret",
                error=repr(exc.__cause__),
            )
            self.credentials_refused = exc
            self._stopping.set()
            await settle.release((p.held for p in batch), self._keeper)
            return False
        except Unstorable as exc:
            await settle.give_back(batch, self._keeper, error=repr(exc.__cause__))
            return True
        if result is None:  # stopping while Postgres is down: give the batch back
            await settle.release((p.held for p in batch), self._keeper)
            return False
        await settle.settle(
            batch, result, self._keeper, self._settings.max_receive_count, self._dlq
        )
        log.debug(
            "batch stored",
            messages=len(batch),
            rows=result.new_rows,
            duplicates=result.duplicates,
            poison=len(result.bad_ids),
        )
        return True

    async def run(self) -> None:
        background = tasks.TaskSet("writer")
        background.spawn(self._keeper.run(), name="visibility")
        # at start-up, everything in the outbox is a leftover: apply it now
        try:
            await self._outbox.sweep(older_than_s=0)
        except Exception as exc:
            log.warning("start-up outbox sweep failed", error=str(exc))
        background.spawn(self._outbox.sweep_forever(), name="outbox-sweep")
        log.info("writer started", batch_size=self._settings.batch_size)
        # pipelined: the next batch is gathered while the current one is stored, so
        # receiving and inserting overlap; stores stay one at a time and in order
        storing: asyncio.Task[bool] | None = None
        while not self._stopping.is_set():
            batch = await self._gatherer.gather()
            if storing is not None and not await storing:
                storing = None
                await settle.release((p.held for p in batch), self._keeper)
                break
            storing = asyncio.create_task(self._store_batch(batch), name="store") if batch else None
        if storing is not None:
            await storing
        await settle.release(self._gatherer.carried(), self._keeper)
        await background.stop()
        await self._queue.close()
        log.info("writer stopped")
