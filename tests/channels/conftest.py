"""Fixtures of the channels tests."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tests.channels.support import own_database


@pytest.fixture
async def pg_url() -> AsyncIterator[str]:
    """A PostgreSQL database of the test's own, dropped after it."""
    async with own_database() as url:
        yield url
