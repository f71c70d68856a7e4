"""Fixtures: rows in YAML or JSON files, loaded into the database idempotently.

A file maps ``"<app>.<Model>"`` to a list of rows; every row carries its primary key,
so loading updates the rows that exist and inserts the others. Everything is checked
before anything is written, all files load in one transaction, and models load in
foreign key order whatever the order of the files.
"""

from __future__ import annotations

import difflib
import json
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml
from sqlalchemy import JSON, Column, Table, inspect, select, text
from sqlalchemy.exc import StatementError
from sqlalchemy.orm import ColumnProperty, Mapper, RelationshipProperty, Session, selectinload

from aiosite.db.models import Model, models_of, short_repr, site_metadata
from aiosite.exceptions import CommandError
from aiosite.settings import yaml_error

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncSession
    from sqlalchemy.types import TypeEngine

    from aiosite.apps import AppRegistry
    from aiosite.db.engine import Database

SUFFIXES = (".yaml", ".yml", ".json")
_CHUNK = 500


class FixtureError(CommandError):
    """A fixture file cannot be loaded; the message names the file, model, row and key."""


@dataclass(frozen=True, slots=True)
class FixtureReport:
    """Rows per model (``"blog.Post"``), for every model the files name, in load order.

    ``updated`` counts rows that existed and differed from the fixture; ``unchanged``
    those that already matched it.
    """

    created: dict[str, int] = field(default_factory=dict)
    updated: dict[str, int] = field(default_factory=dict)
    unchanged: dict[str, int] = field(default_factory=dict)

    @property
    def total_created(self) -> int:
        return sum(self.created.values())

    @property
    def total_updated(self) -> int:
        return sum(self.updated.values())


async def load_fixture_files(
    database: Database, registry: AppRegistry, paths: Sequence[Path]
) -> FixtureReport:
    """Load the files in one transaction: all of them, or (on any error) nothing."""
    documents = [_read_file(Path(path)) for path in paths]
    async with database.transaction() as session:
        return await _load(session, registry, documents)


async def load_fixtures(
    session: AsyncSession,
    registry: AppRegistry,
    data: Mapping[str, Any],
    *,
    source: str = "fixtures",
) -> FixtureReport:
    """Load already parsed fixture data in the caller's session (which commits it).

    ``source`` names the data in error messages. After a FixtureError the session
    must be rolled back.
    """
    return await _load(session, registry, [(source, data)])


def _read_file(path: Path) -> tuple[str, Any]:
    """``(label, data)`` of a .yaml, .yml or .json file; FixtureError if unreadable."""
    label = str(path)
    suffix = path.suffix.lower()
    if path.is_dir():
        raise FixtureError(f"{label}: is a directory, not a fixture file")
    if path.exists() and suffix not in SUFFIXES:
        raise FixtureError(f"{label}: not a fixture file; name it *.yaml, *.yml or *.json")
    try:
        content = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise FixtureError(f"{label}: fixture file not found") from None
    except UnicodeDecodeError:
        raise FixtureError(f"{label}: not UTF-8 text") from None
    except OSError as exc:
        raise FixtureError(f"{label}: cannot read the file: {exc.strerror or exc}") from None
    if suffix == ".json":
        try:
            return label, json.loads(content)
        except json.JSONDecodeError as exc:
            raise FixtureError(
                f"{label}:{exc.lineno}:{exc.colno}: invalid JSON: {exc.msg}"
            ) from None
    try:
        return label, yaml.safe_load(content)
    except yaml.YAMLError as exc:
        raise FixtureError(yaml_error(label, exc)) from None
    except ValueError as exc:  # a timestamp PyYAML recognises but cannot build
        raise FixtureError(f"{label}: invalid YAML: {exc}") from None


# --- checking: everything is validated before anything is written --------------------


@dataclass(slots=True)
class _Row:
    source: str
    model: str
    number: int
    pk: tuple[Any, ...]
    pk_text: str
    values: dict[str, Any]
    relations: dict[str, Any]

    @property
    def where(self) -> str:
        return f"{self.source}: {self.model} row {self.number} ({self.pk_text})"


@dataclass(slots=True)
class _ModelRows:
    key: str
    mapper: Mapper[Any]
    order: int
    rows: list[_Row] = field(default_factory=list)


@dataclass(slots=True)
class _Plan:
    models: list[_ModelRows]
    keys_of: dict[type[Any], str]
    order_of: dict[type[Any], int]


def _plan(registry: AppRegistry, documents: Sequence[tuple[str, Any]]) -> _Plan:
    models = models_of(registry)
    order_of = _dependency_order(registry, models.values())
    by_key: dict[str, _ModelRows] = {}
    seen: dict[tuple[str, tuple[Any, ...]], str] = {}
    for source, data in documents:
        if data is None:
            continue
        if not isinstance(data, Mapping):
            raise FixtureError(
                f"{source}: expected a mapping of '<app>.<Model>': [rows] at the top level, "
                f"got {_type_name(data)}"
            )
        for raw_key, rows in data.items():
            key = str(raw_key)
            cls = _model(source, key, models)
            entry = by_key.get(key)
            if entry is None:
                entry = _ModelRows(key, inspect(cls), order_of.get(cls, -1))
                by_key[key] = entry
            for row in _rows(source, key, entry.mapper, rows):
                identity = (key, row.pk)
                if identity in seen:
                    raise FixtureError(
                        f"{row.where}: the same primary key is already given in {seen[identity]}"
                    )
                seen[identity] = f"{row.source} row {row.number}"
                entry.rows.append(row)
    ordered = sorted(by_key.values(), key=lambda entry: entry.order)
    return _Plan(ordered, {cls: key for key, cls in models.items()}, order_of)


def _dependency_order(
    registry: AppRegistry, classes: Iterable[type[Model]]
) -> dict[type[Any], int]:
    position = {table.key: i for i, table in enumerate(site_metadata(registry).sorted_tables)}
    order: dict[type[Any], int] = {}
    for cls in classes:
        tables = [t for t in inspect(cls).tables if isinstance(t, Table)]
        order[cls] = max((position.get(t.key, -1) for t in tables), default=-1)
    return order


def _model(source: str, key: str, models: Mapping[str, type[Model]]) -> type[Model]:
    cls = models.get(key)
    if cls is not None:
        return cls
    if not models:
        raise FixtureError(f"{source}: unknown model {key!r}: the site's apps define no models")
    close = difflib.get_close_matches(key, list(models), n=1)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    known = ", ".join(sorted(models))
    raise FixtureError(
        f"{source}: unknown model {key!r}{hint} (models are keyed '<app>.<Model>': {known})"
    )


def _rows(source: str, key: str, mapper: Mapper[Any], rows: Any) -> list[_Row]:
    if rows is None:
        return []
    if not isinstance(rows, list):
        raise FixtureError(f"{source}: {key}: expected a list of rows, got {_type_name(rows)}")
    pk_props = [mapper.get_property_by_column(column) for column in mapper.primary_key]
    columns = _column_props(mapper)
    relations = {r.key: r for r in mapper.relationships if not r.viewonly}
    result = []
    for number, raw in enumerate(rows, start=1):
        where = f"{source}: {key} row {number}"
        if not isinstance(raw, Mapping):
            raise FixtureError(
                f"{where}: expected a mapping of attribute: value, got {_type_name(raw)}"
            )
        missing = [prop.key for prop in pk_props if raw.get(prop.key) is None]
        if missing:
            names = ", ".join(repr(name) for name in missing)
            raise FixtureError(
                f"{where}: no primary key {names}; every row needs it, so that loading "
                "again updates the row instead of adding another"
            )
        pk = tuple(
            _coerce(where, prop.key, raw[prop.key], _column(columns[prop.key]).type)
            for prop in pk_props
        )
        pk_text = ", ".join(f"{p.key}={short_repr(v)}" for p, v in zip(pk_props, pk, strict=True))
        row = _Row(source, key, number, pk, pk_text, {}, {})
        for raw_name, value in raw.items():
            name = str(raw_name)
            if name in columns:
                row.values[name] = _coerce(row.where, name, value, _column(columns[name]).type)
            elif name in relations:
                row.relations[name] = _related_keys(row.where, relations[name], value)
            else:
                raise FixtureError(
                    f"{row.where}: unknown attribute {name!r}"
                    + _suggest(name, [*columns, *relations])
                )
        result.append(row)
    return result


def _column_props(mapper: Mapper[Any]) -> dict[str, ColumnProperty[Any]]:
    # Only attributes backed by a table column can be written (not column_property
    # expressions).
    return {
        prop.key: prop
        for prop in mapper.column_attrs
        if all(isinstance(column, Column) for column in prop.columns)
    }


def _column(prop: ColumnProperty[Any]) -> Column[Any]:
    column = prop.columns[0]
    assert isinstance(column, Column)  # noqa: S101 - filtered by _column_props
    return column


def _related_keys(where: str, relation: RelationshipProperty[Any], value: Any) -> Any:
    target = relation.mapper
    types = [column.type for column in target.primary_key]

    def one(item: Any) -> tuple[Any, ...]:
        parts = item if isinstance(item, list) and len(types) > 1 else [item]
        if len(parts) != len(types) or any(part is None for part in parts):
            raise FixtureError(
                f"{where}: {relation.key}: expected a primary key of "
                f"{target.class_.__name__}, got {short_repr(item)}"
            )
        return tuple(
            _coerce(where, relation.key, part, type_)
            for part, type_ in zip(parts, types, strict=True)
        )

    if relation.uselist:
        if not isinstance(value, list):
            raise FixtureError(
                f"{where}: {relation.key}: expected a list of primary keys of "
                f"{target.class_.__name__}, got {_type_name(value)}"
            )
        keys = [one(item) for item in value]
        repeated = [key for i, key in enumerate(keys) if key in keys[:i]]
        if repeated:
            shown = ", ".join(short_repr(part) for part in repeated[0])
            raise FixtureError(f"{where}: {relation.key}: {shown} is listed twice")
        return keys
    return None if value is None else one(value)


def _coerce(where: str, name: str, value: Any, type_: TypeEngine[Any]) -> Any:
    """The value as the column's Python type, or FixtureError: SQLite would store a
    wrong type silently where PostgreSQL refuses it, and fixtures must load the same."""
    if value is None or isinstance(type_, JSON):
        return value
    try:
        python_type = type_.python_type
    except NotImplementedError:
        return value
    converted = _convert(value, python_type, type_)
    if converted is _WRONG:
        raise FixtureError(
            f"{where}: {name}: expected {_describe_type(python_type)}, "
            f"got {_type_name(value)} {short_repr(value)}"
        )
    return converted


_WRONG = object()


def _convert(value: Any, python_type: type[Any], type_: TypeEngine[Any]) -> Any:
    is_number = isinstance(value, int | float) and not isinstance(value, bool)
    try:
        if python_type is bool:
            return value if isinstance(value, bool) else _WRONG
        if python_type is int:
            return value if isinstance(value, int) and not isinstance(value, bool) else _WRONG
        if python_type is float:
            return float(value) if is_number else _WRONG
        if python_type is Decimal:
            return Decimal(str(value)) if is_number or isinstance(value, str) else _WRONG
        if python_type is str:
            return value if isinstance(value, str) else _WRONG
        if python_type is datetime:
            return _datetime(value, type_)
        if python_type is date:
            if isinstance(value, str):
                return date.fromisoformat(value)
            is_date = isinstance(value, date) and not isinstance(value, datetime)
            return value if is_date else _WRONG
        if python_type in (time, uuid.UUID):
            if isinstance(value, str):
                return time.fromisoformat(value) if python_type is time else uuid.UUID(value)
            return value if isinstance(value, python_type) else _WRONG
    except (ValueError, InvalidOperation):
        return _WRONG
    return value


def _datetime(value: Any, type_: TypeEngine[Any]) -> Any:
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    if not isinstance(value, datetime):
        return _WRONG
    # UtcDateTime and DateTime(timezone=True) read back aware values: compare like
    # with like, so that an unchanged row is seen as unchanged.
    aware = getattr(getattr(type_, "impl", type_), "timezone", False)
    if aware:
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    return value if value.tzinfo is None else value.astimezone(UTC).replace(tzinfo=None)


def _describe_type(python_type: type[Any]) -> str:
    names = {
        bool: "true or false",
        int: "an integer",
        float: "a number",
        Decimal: "a number",
        str: "a string (quote it)",
        datetime: "a date and time (ISO 8601, e.g. 2026-11-01T10:00:00Z)",
        date: "a date (YYYY-MM-DD)",
        time: "a time (HH:MM[:SS])",
        uuid.UUID: "a UUID",
    }
    return names.get(python_type, python_type.__name__)


# --- writing -------------------------------------------------------------------------


@dataclass(slots=True)
class _Outcome:
    created: set[tuple[str, tuple[Any, ...]]] = field(default_factory=set)
    changed: set[tuple[str, tuple[Any, ...]]] = field(default_factory=set)


async def _load(
    session: AsyncSession, registry: AppRegistry, documents: Sequence[tuple[str, Any]]
) -> FixtureReport:
    plan = _plan(registry, documents)
    outcome = await session.run_sync(_write, plan)
    report = FixtureReport()
    for entry in plan.models:
        identities = [(entry.key, row.pk) for row in entry.rows]
        created = sum(identity in outcome.created for identity in identities)
        updated = sum(identity in outcome.changed for identity in identities)
        report.created[entry.key] = created
        report.updated[entry.key] = updated
        report.unchanged[entry.key] = len(identities) - created - updated
    return report


def _write(session: Session, plan: _Plan) -> _Outcome:
    # Each row is flushed on its own; an autoflush while looking up a related row
    # would flush a half-built one.
    with session.no_autoflush:
        return _write_rows(session, plan)


def _write_rows(session: Session, plan: _Plan) -> _Outcome:
    outcome = _Outcome()
    # Held here: the session's identity map keeps unchanged objects only weakly.
    objects: dict[tuple[str, tuple[Any, ...]], Any] = {}
    later: dict[str, list[tuple[_Row, str]]] = {}
    for entry in plan.models:
        names = [name for name in _relation_names(entry) if not _is_later(plan, entry, name)]
        existing = _preload(session, entry, entry.rows, names)
        for row in entry.rows:
            try:
                obj = _write_row(session, plan, entry, row, existing, outcome)
            except StatementError as exc:
                raise FixtureError(
                    f"{row.where}: the database refused the row: {_db_error(exc)}"
                ) from exc
            objects[(entry.key, row.pk)] = obj
            for name in row.relations:
                if _is_later(plan, entry, name):
                    later.setdefault(entry.key, []).append((row, name))
    if later:
        _relate_later(session, plan, later, objects, outcome)
    if session.get_bind().dialect.name == "postgresql":
        _reset_sequences(session, plan)
    return outcome


def _relation_names(entry: _ModelRows) -> list[str]:
    return list(dict.fromkeys(name for row in entry.rows for name in row.relations))


def _is_later(plan: _Plan, entry: _ModelRows, name: str) -> bool:
    """Whether a relationship's target loads after this model (or is this model), so
    that its rows may not exist yet when this model's rows are written."""
    target = entry.mapper.relationships[name].mapper.class_
    return plan.order_of.get(target, -1) >= entry.order


def _relate_later(
    session: Session,
    plan: _Plan,
    later: Mapping[str, list[tuple[_Row, str]]],
    objects: Mapping[tuple[str, tuple[Any, ...]], Any],
    outcome: _Outcome,
) -> None:
    """Set the relationships to rows written after their own, once every row exists."""
    entries = [entry for entry in plan.models if entry.key in later]
    pairs = [(entry, row, name) for entry in entries for row, name in later[entry.key]]
    sources = ", ".join(dict.fromkeys(row.source for _, row, _ in pairs))
    relations = ", ".join(dict.fromkeys(f"{entry.key}.{name}" for entry, _, name in pairs))
    try:
        # Rows written since these collections were loaded may have changed them: read
        # them again, all before changing any.
        for entry in entries:
            rows = list({id(row): row for row, _ in later[entry.key]}.values())
            names = list(dict.fromkeys(name for _, name in later[entry.key]))
            if not _preload(session, entry, rows, names, refresh=True):
                for row in rows:  # a composite primary key: reloaded one row at a time
                    session.expire(objects[(entry.key, row.pk)], names)
        for entry, row, name in pairs:
            identity = (entry.key, row.pk)
            obj = objects[identity]
            _relate(session, plan, row, obj, name, row.relations[name])
            if identity not in outcome.created and session.is_modified(obj):
                outcome.changed.add(identity)
        # In one flush: a row may move from one list to another, which one row at a
        # time would see as an orphan in between.
        session.flush()
    except StatementError as exc:
        raise FixtureError(
            f"{sources}: the database refused the relationships {relations}: {_db_error(exc)}"
        ) from exc


def _preload(
    session: Session,
    entry: _ModelRows,
    rows: Sequence[_Row],
    names: Sequence[str],
    *,
    refresh: bool = False,
) -> dict[tuple[Any, ...], Any]:
    """The model's existing rows among ``rows``, with the relationships ``names``, in a
    few queries instead of a few per row (for a single-column primary key)."""
    if len(entry.mapper.primary_key) != 1 or not rows:
        return {}
    column = entry.mapper.primary_key[0]
    keys = [row.pk[0] for row in rows]
    options = [selectinload(getattr(entry.mapper.class_, name)) for name in names]
    found: dict[tuple[Any, ...], Any] = {}
    try:
        for start in range(0, len(keys), _CHUNK):
            query = select(entry.mapper).where(column.in_(keys[start : start + _CHUNK]))
            query = query.options(*options).execution_options(populate_existing=refresh)
            for obj in session.scalars(query):
                found[tuple(entry.mapper.primary_key_from_instance(obj))] = obj
    except StatementError as exc:
        source = rows[0].source
        raise FixtureError(
            f"{source}: {entry.key}: cannot read the existing rows: {_db_error(exc)}"
        ) from exc
    return found


def _write_row(
    session: Session,
    plan: _Plan,
    entry: _ModelRows,
    row: _Row,
    existing: Mapping[tuple[Any, ...], Any],
    outcome: _Outcome,
) -> Any:
    identity = (entry.key, row.pk)
    obj = existing.get(row.pk) if len(row.pk) == 1 else session.get(entry.mapper, row.pk)
    if obj is None:
        # Like a row read from the database: the model's __init__ is not called.
        obj = entry.mapper.class_manager.new_instance()
        outcome.created.add(identity)
        session.add(obj)
    for name, value in row.values.items():
        setattr(obj, name, value)
    for name, keys in row.relations.items():
        if not _is_later(plan, entry, name):
            _relate(session, plan, row, obj, name, keys)
    if identity not in outcome.created and session.is_modified(obj):
        outcome.changed.add(identity)
    # One row at a time, so that a database error names its row.
    session.flush()
    return obj


def _relate(session: Session, plan: _Plan, row: _Row, obj: Any, name: str, keys: Any) -> None:
    relation = inspect(type(obj)).relationships[name]
    target = relation.mapper.class_
    target_name = plan.keys_of.get(target, target.__name__)

    def fetch(pk: tuple[Any, ...]) -> Any:
        related = session.get(target, pk if len(pk) > 1 else pk[0])
        if related is None:
            shown = ", ".join(short_repr(part) for part in pk)
            raise FixtureError(f"{row.where}: {name}: no {target_name} with primary key {shown}")
        return related

    value = [fetch(pk) for pk in keys] if relation.uselist else keys and fetch(keys)
    # Load the current value first, so that history sees "no change" when there is none.
    getattr(obj, name)
    setattr(obj, name, value)


def _db_error(exc: StatementError) -> str:
    original = exc.orig if exc.orig is not None else exc
    message = str(original).strip()
    first = message.splitlines()[0] if message else type(original).__name__
    detail = getattr(original.__cause__, "detail", None)
    return f"{first} ({detail})" if detail else first


def _reset_sequences(session: Session, plan: _Plan) -> None:
    """Move each loaded table's serial sequence past its largest key, so that rows
    added later without a key do not collide with the fixture's keys."""
    preparer = session.get_bind().dialect.identifier_preparer
    for entry in plan.models:
        for table in entry.mapper.tables:
            if not isinstance(table, Table):
                continue
            column = table.autoincrement_column
            if column is None:
                continue
            table_name = preparer.format_table(table)
            column_name = preparer.quote(column.name)
            session.execute(
                text(
                    f"SELECT setval(pg_get_serial_sequence(:table, :column), "  # noqa: S608 - quoted identifiers
                    f"COALESCE(MAX({column_name}), 0) + 1, false) FROM {table_name}"
                ),
                {"table": table_name, "column": column.name},
            )


# --- messages ------------------------------------------------------------------------


def _suggest(name: str, candidates: Sequence[str]) -> str:
    close = difflib.get_close_matches(name, candidates, n=3)
    if close:
        return "; did you mean " + " or ".join(repr(c) for c in close) + "?"
    return f" (attributes: {', '.join(candidates)})"


def _type_name(value: Any) -> str:
    names = {dict: "a mapping", list: "a list", str: "a string", type(None): "nothing"}
    return names.get(type(value), type(value).__name__)
