"""Create TechEmpower's hello_world database: `python -m tfb.database` (idempotent)."""

import asyncio
from urllib.parse import urlsplit, urlunsplit

import asyncpg

from tfb import rules

FORTUNES = [
    (1, "fortune: No such file or directory"),
    (2, "A computer scientist is someone who fixes things that aren't broken."),
    (3, "After enough decimal places, nobody gives a damn."),
    (4, "A bad random number generator: 1, 1, 1, 1, 1, 4.33e+67, 1, 1, 1"),
    (5, "A computer program does what you tell it to do, not what you want it to do."),
    (6, "Emacs is a nice operating system, but I prefer UNIX. — Tom Christaensen"),
    (7, "Any program that runs right is obsolete."),
    (8, "A list is only as strong as its weakest link. — Donald Knuth"),
    (9, "Feature: A bug with seniority."),
    (10, "Computers make very fast, very accurate mistakes."),
    (11, '<script>alert("This should not be displayed in a browser alert box.");</script>'),
    (12, "フレームワークのベンチマーク"),
]

SCHEMA = """
DROP TABLE IF EXISTS world;
DROP TABLE IF EXISTS fortune;
CREATE TABLE world (id integer PRIMARY KEY, randomnumber integer NOT NULL DEFAULT 0);
CREATE TABLE fortune (id integer PRIMARY KEY, message varchar(2048) NOT NULL);
"""

# Databases that exist on a fresh server, to connect to while creating the target one.
MAINTENANCE_DBS = ("postgres", "test")


def _with_database(dsn: str, name: str) -> str:
    parts = urlsplit(dsn)
    return urlunsplit(parts._replace(path="/" + name))


async def _ensure_database(dsn: str) -> None:
    name = urlsplit(dsn).path.lstrip("/")
    last_error: Exception | None = None
    for maintenance_db in MAINTENANCE_DBS:
        try:
            conn = await asyncpg.connect(_with_database(dsn, maintenance_db))
        except (OSError, asyncpg.PostgresError) as exc:
            last_error = exc
            continue
        try:
            exists = await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name)
            if not exists:
                quoted = '"' + name.replace('"', '""') + '"'
                await conn.execute(f"CREATE DATABASE {quoted}")
        finally:
            await conn.close()
        return
    raise RuntimeError(f"cannot reach a maintenance database to create {name!r}") from last_error


async def create(dsn: str = rules.DATABASE_URL) -> None:
    """Create the database if missing, then (re)create and fill world and fortune."""
    await _ensure_database(dsn)
    conn = await asyncpg.connect(dsn)
    try:
        async with conn.transaction():
            await conn.execute(SCHEMA)
            worlds = [(i, rules.random_id()) for i in range(1, rules.WORLD_ROWS + 1)]
            copy = conn.copy_records_to_table
            await copy("world", records=worlds, columns=("id", "randomnumber"))
            await copy("fortune", records=FORTUNES, columns=("id", "message"))
        await conn.execute("ANALYZE world; ANALYZE fortune")
    finally:
        await conn.close()


if __name__ == "__main__":
    asyncio.run(create())
    print(f"created {rules.DATABASE_URL}")
