"""Background processes: the priority worker (request/reply) and the writer (ingest)."""
