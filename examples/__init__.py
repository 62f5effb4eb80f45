"""Demo pieces: the legacy backend stand-in (its route table is config/routes.toml)."""
