"""The writer: ``python -m workers.writer``.

Drains the ingest queue into Postgres in batches: up to ``QF_BATCH_SIZE`` items, or what
has come within ``QF_BATCH_MAX_WAIT_S`` of the first. Per batch: ONE
``INSERT … SELECT * FROM unnest(…) ON CONFLICT (id) DO NOTHING RETURNING id`` per sink
table and one commit; then the tally deltas of the rows RETURNING reported as new;
then the deletes. One module per step, read in this order:

- ``gather``: receive through ``queuefront.consumer.Poller`` and fill a batch;
- ``store``: the insert transaction, a rejected row isolated by splitting;
- ``queuefront.outbox``: the batch's tally deltas, committed with its rows, applied once;
- ``settle``: delete what is stored, give back what is not;
- ``loop``: the three in a loop, and shutdown; ``observe``: the batch metrics.

Guarantees, and where they come from:
- a message is deleted only after every item in it is committed (settle);
- a redelivered message or a client's retry stores nothing twice (the item id is the
  primary key) and counts nothing twice (only new rows make deltas);
- a writer killed at any point leaves tallies equal to the table: the deltas commit in
  ``tally_outbox`` with the rows, and are applied once per batch id (``queuefront.tally``);
- Postgres down: the batch stays in hand, visibility extended, retried with jittered
  back-off; nothing is received meanwhile, so no receive count climbs towards the DLQ;
- a row the database rejects is isolated by splitting the batch: the rest commits, and
  its message is retried until SQS moves it to the DLQ after ``maxReceiveCount``.
"""


def main() -> None:
    """The writer process, as ``python -m workers.writer`` and ``queuefront writer`` run it.

    Imported when called: the step modules import this package, so it imports none of them.
    """
    from workers.writer.run import main as run

    run()
