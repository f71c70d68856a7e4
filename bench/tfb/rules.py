"""TechEmpower test rules shared by every implementation that can import them."""

import os
import random

ADDED_FORTUNE = "Additional fortune added at request time."
DATABASE_URL = os.environ.get("TFB_DATABASE_URL", "postgresql://root@127.0.0.1:5432/hello_world")
POOL_SIZE = int(os.environ.get("TFB_POOL_SIZE", "8"))

WORLD_ROWS = 10_000
MAX_QUERIES = 500


def queries_param(raw: str | None) -> int:
    """Clamp the `queries` parameter: missing or not an integer -> 1, else into 1..500."""
    try:
        count = int(raw) if raw else 1
    except ValueError:
        return 1
    return min(max(count, 1), MAX_QUERIES)


def random_id() -> int:
    """A random world id (also used as a random number); benchmark data, not security."""
    return random.randint(1, WORLD_ROWS)  # noqa: S311


def random_ids(n: int) -> list[int]:
    """`n` distinct world ids, so an update never writes the same row twice."""
    return random.sample(range(1, WORLD_ROWS + 1), n)
