"""Versioned SQL migrations: ``python -m queuefront.migrate``.

Creates the database if it is missing, then applies every ``migrations/NNNN_*.sql`` not
yet recorded in ``schema_migrations``, in order, in one transaction, under an advisory
lock — so two containers starting at once cannot apply a migration twice, and running
it again changes nothing.
"""

from __future__ import annotations

import asyncio
import re
from importlib import resources
from urllib.parse import urlsplit, urlunsplit

import asyncpg

from queuefront.settings import Settings
from queuefront.telemetry import configure_logging, get_logger

log = get_logger(__name__)

MIGRATION_LOCK = 0x716D6967  # pg_advisory_xact_lock key of migrations ("qmig")
_DB_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_\-]{0,62}$")


def migrations() -> list[tuple[str, str]]:
    """(version, sql) pairs in order; the version is the file name without ``.sql``."""
    folder = resources.files("queuefront") / "migrations"
    files = sorted((f for f in folder.iterdir() if f.name.endswith(".sql")), key=lambda f: f.name)
    return [(f.name.removesuffix(".sql"), f.read_text()) for f in files]


async def ensure_database(url: str) -> bool:
    """Creates the URL's database if missing; True when it was created."""
    parts = urlsplit(url)
    name = parts.path.lstrip("/")
    if not _DB_NAME.match(name):
        raise ValueError(f"refusing to create a database named {name!r}")
    admin_url = urlunsplit(parts._replace(path="/postgres"))
    conn = await asyncpg.connect(admin_url)
    try:
        if await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name):
            return False
        try:
            await conn.execute(f'CREATE DATABASE "{name}"')
        except asyncpg.DuplicateDatabaseError:  # created meanwhile by another starter
            return False
        return True
    finally:
        await conn.close()


async def migrate(url: str) -> list[str]:
    """Applies pending migrations; returns the versions applied now."""
    if await ensure_database(url):
        log.info("database created", database=urlsplit(url).path.lstrip("/"))
    conn = await asyncpg.connect(url)
    try:
        async with conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock($1)", MIGRATION_LOCK)
            await conn.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations ("
                " version text PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())"
            )
            done = {r["version"] for r in await conn.fetch("SELECT version FROM schema_migrations")}
            applied = []
            for version, sql in migrations():
                if version in done:
                    continue
                await conn.execute(sql)
                await conn.execute("INSERT INTO schema_migrations (version) VALUES ($1)", version)
                applied.append(version)
    finally:
        await conn.close()
    log.info("migrations applied", applied=applied)
    return applied


def main() -> None:
    settings = Settings()
    configure_logging(settings.log_level, settings.log_format)
    asyncio.run(migrate(settings.database_url))


if __name__ == "__main__":
    main()
