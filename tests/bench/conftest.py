"""The benchmark suite's checker under test: bench/ on sys.path, a hello_world of our own."""

from __future__ import annotations

import asyncio
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import pytest

from tests.conftest import require_service

BENCH = Path(__file__).resolve().parents[2] / "bench"
if str(BENCH) not in sys.path:
    sys.path.insert(0, str(BENCH))

SERVER = "postgresql://root@127.0.0.1:5432"


@pytest.fixture(scope="session")
def tfb_dsn() -> Iterator[str]:
    """A fresh TechEmpower database for this session (never the benchmark's hello_world)."""
    require_service("PostgreSQL", "127.0.0.1", 5432)
    from tfb import database

    name = f"tfb_test_{uuid.uuid4().hex[:12]}"
    dsn = f"{SERVER}/{name}"
    asyncio.run(database.create(dsn))
    yield dsn
    asyncio.run(_drop(name))


async def _drop(name: str) -> None:
    conn = await asyncpg.connect(f"{SERVER}/test")
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()
