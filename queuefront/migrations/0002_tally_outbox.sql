-- Tally deltas of a batch, committed in the same transaction as its rows. The writer
-- applies them to Redis (idempotently, once per batch id) and then deletes them; a
-- writer killed in between leaves the row here and the next sweep applies it. This is
-- what keeps the live tallies equal to the table across crashes.
CREATE TABLE tally_outbox (
    batch_id   uuid        PRIMARY KEY,
    deltas     jsonb       NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
