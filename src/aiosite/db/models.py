"""The declarative ``Model`` base every app's models subclass, and the site's tables.

One base means one SQLAlchemy registry: relationships between apps' models resolve by
class name, and Alembic sees every table. Which tables belong to a site is decided by
the apps it lists (``site_metadata``), not by what happens to be imported.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import DateTime, MetaData, Table, inspect, text
from sqlalchemy.engine import Dialect
from sqlalchemy.ext.asyncio import AsyncAttrs
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator

from aiosite.apps import AppRegistry

# Deterministic constraint names, so that Alembic can drop and alter constraints
# (SQLite's batch mode needs names to recreate a table).
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

_REPR_COLUMNS = 3
_TIMESTAMPS = frozenset({"created", "updated"})
_REPR_TEXT = 40


class UtcDateTime(TypeDecorator[datetime]):
    """A timestamp stored in UTC and read back as an aware UTC ``datetime`` on every
    database (SQLite keeps no time zone, so plain ``DateTime`` comes back naive there).

    Naive values are taken to be UTC; ISO 8601 strings (from JSON fixtures) are parsed.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    @property
    def python_type(self) -> type[datetime]:
        return datetime

    def process_bind_param(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if isinstance(value, str):
            value = datetime.fromisoformat(value)
        if not isinstance(value, datetime):
            raise TypeError(f"expected a datetime, got {type(value).__name__}")
        utc: datetime = value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
        return utc.replace(tzinfo=None) if dialect.name == "sqlite" else utc

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if isinstance(value, str):  # pragma: no cover - SQLite rows written by hand
            value = datetime.fromisoformat(value)
        result: datetime = (
            value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
        )
        return result


def utcnow() -> datetime:
    return datetime.now(UTC)


class Model(AsyncAttrs, DeclarativeBase):
    """The base of every model: ``class Post(Model): __tablename__ = "blog_post"``.

    ``datetime`` annotations map to ``UtcDateTime``. ``AsyncAttrs`` gives
    ``await post.awaitable_attrs.comments`` for relationships not loaded eagerly.
    """

    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {datetime: UtcDateTime()}  # noqa: RUF012 - SQLAlchemy's hook

    def __repr__(self) -> str:
        # Loaded values only: a repr must never trigger a query.
        state = inspect(self)
        mapper = state.mapper
        loaded = state.dict
        keys = [mapper.get_property_by_column(column).key for column in mapper.primary_key]
        keys += [
            attr.key for attr in mapper.column_attrs if attr.key not in keys and attr.key in loaded
        ][: _REPR_COLUMNS - 1]
        parts = [f"{key}={short_repr(loaded.get(key))}" for key in keys]
        return f"<{type(self).__name__} {' '.join(parts)}>"


class Timestamped:
    """Adds ``created`` and ``updated``, set by the application (and the database as a
    fallback for rows inserted by hand)."""

    # CURRENT_TIMESTAMP, not func.now(): a migration made on one database must run on
    # the other, and SQLite has no now().
    created: Mapped[datetime] = mapped_column(
        UtcDateTime(), default=utcnow, server_default=text("CURRENT_TIMESTAMP")
    )
    updated: Mapped[datetime] = mapped_column(
        UtcDateTime(), default=utcnow, onupdate=utcnow, server_default=text("CURRENT_TIMESTAMP")
    )


def short_repr(value: object) -> str:
    """``repr(value)`` cut to a length that fits in a one-line message."""
    text = repr(value)
    return text if len(text) <= _REPR_TEXT else text[: _REPR_TEXT - 1] + "…"


def site_metadata(registry: AppRegistry) -> MetaData:
    """A MetaData holding the tables of the apps ``registry`` lists, and only those.

    A process may import models of apps a site does not list (tests build many
    projects); migrations and fixtures must not see those.
    """
    modules = {app.models_module.__name__ for app in registry if app.models_module is not None}
    wanted = _tables_of_modules(modules)
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    for table in Model.metadata.sorted_tables:
        if table.key in wanted:
            table.to_metadata(metadata)
    return metadata


def models_of(registry: AppRegistry) -> dict[str, type[Model]]:
    """The listed apps' models by ``<app name>.<ClassName>``, e.g. ``blog.Post``."""
    found: dict[str, type[Model]] = {}
    by_module = {
        app.models_module.__name__: app.name for app in registry if app.models_module is not None
    }
    for mapper in Model.registry.mappers:
        cls = mapper.class_
        app_name = _owner(cls.__module__, by_module)
        if app_name is not None:
            found[f"{app_name}.{cls.__name__}"] = cls
    return found


def _owner(module: str, by_module: dict[str, str]) -> str | None:
    # A models package may split its models into submodules.
    for name, app_name in by_module.items():
        if module == name or module.startswith(name + "."):
            return app_name
    return None


def _tables_of_modules(modules: Iterable[str]) -> set[str]:
    by_module = {name: name for name in modules}
    keys: set[str] = set()
    for mapper in Model.registry.mappers:
        if _owner(mapper.class_.__module__, by_module) is not None:
            keys.update(table.key for table in mapper.tables if isinstance(table, Table))
    # Association tables (many-to-many) are plain Tables named in a models module.
    for name, module in list(sys.modules.items()):
        if module is None or _owner(name, by_module) is None:
            continue
        for value in vars(module).values():
            if isinstance(value, Table) and value.metadata is Model.metadata:
                keys.add(value.key)
    return keys
