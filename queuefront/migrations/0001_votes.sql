-- The voting system's sink: one row per vote, keyed by the item id the api assigned
-- (derived from the Idempotency-Key when there is one), so a redelivered message or a
-- client's retry can never store a vote twice.
CREATE TABLE votes (
    id          uuid        PRIMARY KEY,
    received_at timestamptz NOT NULL,
    poll_id     text        NOT NULL CHECK (length(poll_id) <= 64),
    choice      integer     NOT NULL,
    voter       text        NOT NULL CHECK (length(voter) <= 128),
    stored_at   timestamptz NOT NULL DEFAULT now()
);

-- reconcile counts per poll and choice
CREATE INDEX votes_poll_choice ON votes (poll_id, choice);
