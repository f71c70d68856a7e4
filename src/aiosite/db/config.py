"""The ``database:`` settings section."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from pydantic import Field, field_validator, model_validator

from aiosite.settings import Section, hide_password


class DatabaseSettings(Section):
    """The site's database: SQLite (aiosqlite) by default, PostgreSQL (asyncpg) for real.

    A relative SQLite path is relative to the project directory. ``postgresql://`` and
    ``sqlite://`` URLs get their async driver; other drivers must be async ones.
    """

    url: str = "sqlite+aiosqlite:///var/db.sqlite3"
    # PostgreSQL only: the schema the site's tables live in (its search_path);
    # `aiosite db migrate` creates it when missing.
    # Lower case: PostgreSQL folds unquoted names, as in search_path, to lower case.
    schema_name: str | None = Field(default=None, pattern=r"^[a-z_][a-z0-9_]*$")
    pool_size: int = Field(default=5, ge=1)
    max_overflow: int = Field(default=10, ge=0)
    # Seconds a request waits for a free pooled connection before a 503.
    pool_timeout: float = Field(default=10.0, gt=0)
    # Seconds after which a pooled connection is replaced; -1 keeps them.
    pool_recycle: int = Field(default=-1, ge=-1)
    # Test each connection with a round trip before use (costs one per request).
    pool_pre_ping: bool = False
    # Seconds to wait for a new connection (PostgreSQL) or a lock (SQLite).
    connect_timeout: float = Field(default=5.0, gt=0)
    # PostgreSQL: BEGIN at the first statement that needs a transaction, not the first
    # statement (docs/postgresql.md); false for a pooler that needs every statement in
    # a transaction, or views whose functions have side effects.
    begin_at_first_write: bool = True
    echo: bool = False

    @field_validator("url")
    @classmethod
    def _async_driver(cls, value: str) -> str:
        return normalize_database_url(value)

    @model_validator(mode="after")
    def _schema_on_postgresql(self) -> DatabaseSettings:
        if self.schema_name is not None and not self.url.startswith("postgresql"):
            raise ValueError("schema_name is a PostgreSQL setting; remove it for this database")
        return self

    def __repr_args__(self) -> Iterator[tuple[str | None, Any]]:
        # Settings show up in debug pages and logs; the password must not.
        for name, value in super().__repr_args__():
            yield name, hide_password(value) if name == "url" else value


# Drivers aiosite picks when a URL names none; `postgres://` is Heroku's spelling.
_DEFAULT_DRIVERS = {
    "sqlite": "sqlite+aiosqlite",
    "postgresql": "postgresql+asyncpg",
    "postgres": "postgresql+asyncpg",
}


def normalize_database_url(value: str) -> str:
    """The URL with an async driver; ValueError says what is wrong with it."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError, NoSuchModuleError

    scheme, sep, rest = value.partition("://")
    if not sep:
        raise ValueError("not a database URL; expected e.g. sqlite+aiosqlite:///var/db.sqlite3")
    scheme = _DEFAULT_DRIVERS.get(scheme, scheme)
    value = f"{scheme}://{rest}"
    try:
        dialect = make_url(value).get_dialect()
    except NoSuchModuleError:
        raise ValueError(
            f"unknown database driver {scheme!r}; use sqlite+aiosqlite:// or postgresql+asyncpg://"
        ) from None
    except (ArgumentError, ValueError) as exc:  # ValueError: a port that is no number
        raise ValueError(f"cannot parse the database URL ({exc})") from None
    if not getattr(dialect, "is_async", False):
        raise ValueError(
            f"the driver {scheme!r} is not async; use sqlite+aiosqlite:// or postgresql+asyncpg://"
        )
    return value
