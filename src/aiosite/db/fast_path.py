"""The fast data path: SQLAlchemy Core statements compiled once, run on the driver.

The ORM session path costs several times what the database work costs: a session, a
unit of work, a greenlet hop per call and identity-map bookkeeping for every row. For
the few hot queries of a site, ``Prepared`` keeps the statement a SQLAlchemy expression
(built from the same models) but compiles it once per dialect and, on PostgreSQL, runs
it directly on an asyncpg connection as a prepared statement (asyncpg caches the
prepared statement per connection), returning asyncpg's records. ``update_by_pk``
writes many rows by primary key in one statement and one round trip.

No library does this: SQLAlchemy's asyncpg dialect always goes through its DBAPI
adaptation layer and greenlets, and raw asyncpg means writing SQL strings by hand.

On PostgreSQL the fast path has a pool of its own (opened on first use, sized like
``database.pool_size + max_overflow``), so a site that uses both paths can hold up to
twice the connections. On SQLite the same calls run through SQLAlchemy Core on the
site's engine: the same results, for development and tests, without the speed-up.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any, Generic, TypeVar, cast

import asyncpg
from sqlalchemy import Table, bindparam, inspect, update
from sqlalchemy.engine import Dialect
from sqlalchemy.sql import ClauseElement, Executable
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.elements import BindParameter

from aiosite.db.errors import connection_unsafe
from aiosite.exceptions import DatabaseUnavailable, ImproperlyConfigured, one_line

if TYPE_CHECKING:
    from sqlalchemy.engine import URL
    from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

    from aiosite.db.config import DatabaseSettings

M = TypeVar("M")
# A result row: ``row["column"]`` and ``dict(row)`` work on every backend (asyncpg's
# Record on PostgreSQL, SQLAlchemy's RowMapping on SQLite).
Row = Mapping[str, Any]
_Processor = Callable[[Any], Any]


@dataclass(frozen=True, slots=True)
class _Compiled:
    sql: str
    names: tuple[str, ...]
    defaults: Mapping[str, Any]
    # One driver argument per name: the fixed values, None where a call fills in.
    template: tuple[Any, ...]
    # The names a call may pass: the statement's own bindparams, not the anonymous
    # ones SQLAlchemy makes for values written into it (``.limit(2)``), which are fixed.
    parameters: frozenset[str]
    # (position, name) of the parameters a call must pass.
    required: tuple[tuple[int, str], ...]
    bind_processors: tuple[tuple[int, _Processor], ...]
    # Result columns, by position, that need converting (a TypeDecorator's
    # process_result_value).
    result_processors: tuple[tuple[int, _Processor], ...]

    def arguments(self, params: Mapping[str, Any]) -> list[Any]:
        """The positional driver arguments for ``params``."""
        if len(params) != len(self.required):
            return self._checked_arguments(params)
        # The common call passes exactly the statement's parameters: no set arithmetic.
        arguments = list(self.template)
        try:
            for index, name in self.required:
                arguments[index] = params[name]
        except KeyError:
            return self._checked_arguments(params)
        for index, process in self.bind_processors:
            arguments[index] = process(arguments[index])
        return arguments

    def _checked_arguments(self, params: Mapping[str, Any]) -> list[Any]:
        missing = {name for _, name in self.required}.difference(params)
        if missing:
            raise TypeError(f"query needs parameter(s) {', '.join(sorted(missing))}")
        unknown = params.keys() - self.parameters
        if unknown:
            raise TypeError(
                f"query has no parameter(s) {', '.join(sorted(unknown))}; "
                f"it takes {', '.join(sorted(self.parameters)) or 'none'}"
            )
        arguments = [params[n] if n in params else self.defaults.get(n) for n in self.names]
        for index, process in self.bind_processors:
            arguments[index] = process(arguments[index])
        return arguments


class Prepared(Generic[M]):
    """A SQLAlchemy Core statement, compiled once per dialect, for the fast path.

    ``Prepared(select(World.id, World.randomnumber).where(World.id == bindparam("id")))``;
    run it with ``await fast_path(request).fetch_one(query, id=5)``. Parameters are the
    statement's ``bindparam`` names; literal values in the statement are fixed.
    ``into=World`` maps each row to a new (transient) ``World`` instance instead.
    """

    __slots__ = ("_attribute_of", "_by_dialect", "into", "statement")

    def __init__(self, statement: Executable, *, into: type[M] | None = None) -> None:
        self.statement = statement
        self.into = into
        self._by_dialect: dict[str, _Compiled] = {}
        self._attribute_of: dict[str, str] | None = None

    def instances(self, rows: Iterable[Row]) -> list[M]:
        """``rows`` as new instances of ``into`` (columns matched to attributes)."""
        into = cast("type[M]", self.into)
        attribute_of = self._attribute_of
        if attribute_of is None:
            mapper = inspect(into)
            attribute_of = self._attribute_of = {
                column.key: prop.key for prop in mapper.column_attrs for column in prop.columns
            }
        return [
            into(**{attribute_of.get(key, key): value for key, value in row.items()})
            for row in rows
        ]

    def compiled(self, dialect: Dialect) -> _Compiled:
        compiled = self._by_dialect.get(dialect.name)
        if compiled is None:
            compiled = self._by_dialect[dialect.name] = _compile(self.statement, dialect)
        return compiled

    def __repr__(self) -> str:
        return f"Prepared({self.statement})"


def _compile(statement: Executable, dialect: Dialect) -> _Compiled:
    compiled = cast(SQLCompiler, cast(ClauseElement, statement).compile(dialect=dialect))
    binds: Mapping[str, BindParameter[Any]] = compiled.binds
    if any(bind.expanding for bind in binds.values()):
        raise ImproperlyConfigured(
            f"fast path: {statement}: IN with a list parameter is compiled per call; "
            "write `column == any_(bindparam('ids', type_=ARRAY(Integer)))` instead"
        )
    prefetch = [*compiled.insert_prefetch, *compiled.update_prefetch]
    if prefetch:
        raise ImproperlyConfigured(
            f"fast path: {statement}: the column default(s) of "
            f"{', '.join(column.name for column in prefetch)} are computed in Python "
            "(default= or onupdate=), which the fast path does not run; set the values "
            "in the statement, or give the columns a server_default"
        )
    names = tuple(compiled.positiontup or ())
    defaults = {n: v for n, v in compiled.params.items() if not binds[n].required}
    processors = []
    result_processors = []
    # Only the driver path converts values itself; through SQLAlchemy (SQLite) the
    # column types apply their own conversions.
    if dialect.driver == "asyncpg":
        for index, name in enumerate(names):
            bind_type = binds[name].type
            process = bind_type.dialect_impl(dialect).bind_processor(dialect)
            if process is not None:
                processors.append((index, process))
        for position, column in enumerate(getattr(statement, "selected_columns", ())):
            try:
                process = column.type.dialect_impl(dialect).result_processor(dialect, None)
            except TypeError:
                # asyncpg's numeric types want the column's type oid; asyncpg itself
                # already returns Decimal for NUMERIC and float for FLOAT.
                process = None
            if process is not None:
                result_processors.append((position, process))
    return _Compiled(
        sql=compiled.string,
        names=names,
        defaults=defaults,
        template=tuple(defaults.get(name) for name in names),
        parameters=frozenset(n for n in names if not binds[n].unique),
        required=tuple((i, n) for i, n in enumerate(names) if binds[n].required),
        bind_processors=tuple(processors),
        result_processors=tuple(result_processors),
    )


class FastConnection:
    """One connection of the fast path; ``FastPath.connection()`` lends it."""

    def __init__(self, fast: FastPath, driver: Any) -> None:
        self._fast = fast
        self._driver = driver
        self._dialect = fast.dialect

    async def fetch(self, query: Prepared[M], /, **params: Any) -> list[Any]:
        """Every row (``into``: every instance) the query returns."""
        compiled = query.compiled(self._dialect)
        arguments = compiled.arguments(params)
        rows = await self._fast._fetch(self._driver, query, compiled, arguments)
        return _finish_rows(query, compiled, rows)

    async def fetch_one(self, query: Prepared[M], /, **params: Any) -> Any:
        """The first row (or instance), or None when there is none."""
        compiled = query.compiled(self._dialect)
        if self._fast.is_postgresql and query.into is None and not compiled.result_processors:
            # The hot case: one record straight from asyncpg.
            return await self._driver.fetchrow(compiled.sql, *compiled.arguments(params))
        rows = await self.fetch(query, **params)
        return rows[0] if rows else None

    async def fetch_value(self, query: Prepared[M], /, **params: Any) -> Any:
        """The first column of the first row, or None."""
        row = await self.fetch_one(query, **params)
        return None if row is None else next(iter(dict(row).values()), None)

    async def execute(self, query: Prepared[M], /, **params: Any) -> None:
        """Run a statement for its effect (INSERT, UPDATE, DELETE)."""
        compiled = query.compiled(self._dialect)
        await self._fast._execute(self._driver, query, compiled, compiled.arguments(params))

    async def update_by_pk(self, table: Any, rows: Sequence[Mapping[str, Any]]) -> None:
        """Set columns of many rows, each found by its primary key, in one statement.

        ``rows`` are ``{"id": 3, "randomnumber": 7}``-shaped (column names, the primary
        key included), all with the same keys. Rows are written in primary-key order,
        so concurrent requests updating overlapping rows cannot deadlock each other.
        """
        if not rows:
            return
        names = tuple(rows[0])
        plan = self._fast.update_plan(_table_of(table), names)
        for row in rows:
            if len(row) != len(names) or any(name not in row for name in names):
                raise TypeError(
                    f"update_by_pk: every row of {plan.table.name} needs the same keys "
                    f"({', '.join(names)}); got {', '.join(row)}"
                )
        # One row per key, the last one winning (as a loop of UPDATEs would leave it).
        latest = {row[plan.key]: row for row in rows}
        ordered = sorted(latest.values(), key=plan.sort_key)
        await self._fast._update(self._driver, plan, ordered)


@dataclass(frozen=True, slots=True)
class _UpdatePlan:
    table: Table
    key: str
    columns: tuple[str, ...]
    # PostgreSQL: UPDATE ... FROM unnest($1::t[], ...) — one statement, one round trip.
    sql: str
    # The column types' conversions (a TypeDecorator's process_bind_param), key first.
    processors: tuple[_Processor | None, ...]

    def sort_key(self, row: Mapping[str, Any]) -> Any:
        return row[self.key]


class FastPath:
    """The site database's fast path; from ``fast_path(request)`` in a handler."""

    def __init__(self, engine: AsyncEngine, url: URL, settings: DatabaseSettings) -> None:
        # The engine for SQLite; the URL and the pool settings for its own asyncpg pool.
        self._engine = engine
        self._url = url
        self._settings = settings
        self._safe_url = url.render_as_string(hide_password=True)
        self.dialect: Dialect = engine.dialect
        # The driver path needs asyncpg; any other driver runs through SQLAlchemy Core.
        self.is_postgresql = self.dialect.driver == "asyncpg"
        self._closed = False
        self._pool: asyncpg.Pool | None = None
        self._opening: asyncio.Future[asyncpg.Pool] | None = None
        self._update_plans: dict[tuple[str, tuple[str, ...]], _UpdatePlan] = {}

    # --- the calls for one statement: a pooled connection for its duration ---------

    async def fetch(self, query: Prepared[M], /, **params: Any) -> list[Any]:
        """Every row (``into``: every instance) the query returns."""
        async with self.connection() as connection:
            return await connection.fetch(query, **params)

    async def fetch_one(self, query: Prepared[M], /, **params: Any) -> Any:
        """The first row (or instance), or None."""
        async with self.connection() as connection:
            return await connection.fetch_one(query, **params)

    async def fetch_value(self, query: Prepared[M], /, **params: Any) -> Any:
        """The first column of the first row, or None."""
        async with self.connection() as connection:
            return await connection.fetch_value(query, **params)

    async def execute(self, query: Prepared[M], /, **params: Any) -> None:
        """Run a statement for its effect, in a transaction of its own."""
        async with self.connection() as connection:
            await connection.execute(query, **params)

    async def update_by_pk(self, table: Any, rows: Sequence[Mapping[str, Any]]) -> None:
        """See ``FastConnection.update_by_pk``."""
        async with self.connection() as connection:
            await connection.update_by_pk(table, rows)

    # --- connections ---------------------------------------------------------------

    @asynccontextmanager
    async def connection(self) -> AsyncIterator[FastConnection]:
        """A connection for several statements. On PostgreSQL each statement commits by
        itself (use ``transaction()`` to group them); on SQLite the block is one
        transaction."""
        if not self.is_postgresql:
            async with self._engine.begin() as sa_connection:
                yield FastConnection(self, sa_connection)
            return
        pool = self._pool or await self._open_pool()
        try:
            driver = await pool.acquire(timeout=self._settings.pool_timeout)
        except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            # The pool connects on demand: a refused connection (too many clients, the
            # server starting or stopping) surfaces here.
            raise self._unavailable(exc) from exc
        try:
            yield FastConnection(self, driver)
        except BaseException as exc:
            if connection_unsafe(exc):
                # Cancelled, or lost or mid-operation in the driver: closed rather than
                # reset and reused; the pool drops a closed connection (see
                # aiosite.db.engine.end_failed_session). A lost connection may
                # already be detached from the pool.
                with contextlib.suppress(asyncpg.InterfaceError):
                    driver.terminate()
            # Any other error: the pool resets the connection (after waiting for a query
            # cut short to end) and keeps it, or closes it if the reset fails; that
            # failure must not replace the block's error.
            with contextlib.suppress(Exception):
                await pool.release(driver)
            raise
        await pool.release(driver)

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[FastConnection]:
        """A connection whose statements commit together at the end of the block, or
        roll back if it raises."""
        async with self.connection() as connection:
            if not self.is_postgresql:
                yield connection
                return
            transaction = connection._driver.transaction()
            await transaction.start()
            try:
                yield connection
            except BaseException as exc:
                # No ROLLBACK on a connection left unsafe (cancelled, lost, mid-operation):
                # asyncpg would refuse it ("another operation is in progress") and that
                # error would replace the one that matters. connection() closes it; the
                # server rolls back the transaction of a connection that goes away.
                # Any other error (an upstream's timeout) is rolled back as usual.
                if not connection_unsafe(exc):
                    try:
                        await transaction.rollback()
                    except Exception:
                        # The block's error is the news.
                        with contextlib.suppress(asyncpg.InterfaceError):
                            connection._driver.terminate()
                raise
            await transaction.commit()

    async def _open_pool(self) -> asyncpg.Pool:
        # One pool even when many requests arrive before it exists.
        self._check_open()
        opening = self._opening
        if opening is None:
            opening = self._opening = asyncio.ensure_future(self._create_pool())
        try:
            pool = await asyncio.shield(opening)
        except BaseException:
            if opening.done() and self._opening is opening:
                self._opening = None  # a failed open is retried by the next request
            raise
        if self._closed:  # closed while it opened
            await pool.close()
        self._check_open()
        self._pool = pool
        return pool

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError(f"the database {self._safe_url} was closed")

    async def _create_pool(self) -> asyncpg.Pool:
        settings = self._settings
        # What the engine's own connections are made from: host, port, credentials and
        # the URL's query options (ssl=, a socket directory in host=).
        _, connect_args = self.dialect.create_connect_args(self._url)
        server_settings = {"search_path": settings.schema_name} if settings.schema_name else {}
        try:
            pool = await asyncpg.create_pool(
                **connect_args,
                min_size=0,
                max_size=settings.pool_size + max(settings.max_overflow, 0),
                max_inactive_connection_lifetime=max(settings.pool_recycle, 0) or 300.0,
                timeout=settings.connect_timeout,
                server_settings=server_settings,
                reset=_keep_session_state,
                init=self._setup_codecs,
            )
        except (TimeoutError, OSError, asyncpg.PostgresError) as exc:
            raise self._unavailable(exc) from exc
        return pool

    async def _setup_codecs(self, connection: asyncpg.Connection) -> None:
        # The codecs SQLAlchemy's asyncpg dialect installs on its own connections (JSON
        # and JSONB decoded to Python values), so both paths read the same values.
        adapted = SimpleNamespace(_connection=connection)
        dialect: Any = self.dialect
        await dialect.setup_asyncpg_json_codec(adapted)
        await dialect.setup_asyncpg_jsonb_codec(adapted)

    def _unavailable(self, exc: BaseException) -> Exception:
        return DatabaseUnavailable(f"cannot connect to {self._safe_url}: {one_line(exc)}")

    async def close(self) -> None:
        self._closed = True
        opening, self._opening = self._opening, None
        if opening is not None and not opening.done():
            opening.cancel()
            with contextlib.suppress(BaseException):
                await opening
        pool, self._pool = self._pool, None
        if pool is None and opening is not None and opening.done() and not opening.cancelled():
            pool = opening.result() if opening.exception() is None else None
        if pool is not None:
            await pool.close()

    # --- the two backends ---------------------------------------------------------

    async def _fetch(
        self, driver: Any, query: Prepared[Any], compiled: _Compiled, arguments: list[Any]
    ) -> list[Any]:
        if self.is_postgresql:
            rows: list[Any] = await driver.fetch(compiled.sql, *arguments)
            return rows
        result = await cast("AsyncConnection", driver).execute(
            query.statement, _named(compiled, arguments)
        )
        return list(result.mappings().all()) if result.returns_rows else []

    async def _execute(
        self, driver: Any, query: Prepared[Any], compiled: _Compiled, arguments: list[Any]
    ) -> None:
        if self.is_postgresql:
            await driver.execute(compiled.sql, *arguments)
        else:
            await cast("AsyncConnection", driver).execute(
                query.statement, _named(compiled, arguments)
            )

    async def _update(
        self, driver: Any, plan: _UpdatePlan, rows: Sequence[Mapping[str, Any]]
    ) -> None:
        if self.is_postgresql:
            arrays = []
            for name, process in zip((plan.key, *plan.columns), plan.processors, strict=True):
                values = [row[name] for row in rows]
                arrays.append(values if process is None else [process(v) for v in values])
            await driver.execute(plan.sql, *arrays)
            return
        table = plan.table
        statement = (
            update(table)
            .where(table.c[plan.key] == bindparam("_pk"))
            .values({name: bindparam(f"_v_{name}") for name in plan.columns})
        )
        parameters = [
            {"_pk": row[plan.key], **{f"_v_{name}": row[name] for name in plan.columns}}
            for row in rows
        ]
        await cast("AsyncConnection", driver).execute(statement, parameters)

    def update_plan(self, table: Table, names: tuple[str, ...]) -> _UpdatePlan:
        cache_key = (table.fullname, names)
        plan = self._update_plans.get(cache_key)
        if plan is None:
            plan = self._update_plans[cache_key] = _plan_update(table, names, self.dialect)
        return plan


async def _keep_session_state(connection: asyncpg.Connection) -> None:
    """No reset query when a connection goes back to the pool.

    asyncpg's default runs ``RESET ALL; UNLISTEN *; CLOSE ALL; ...``, a round trip on
    every release (a seventh of a simple request's time); prepared statements change no
    session state, and asyncpg still rolls back a transaction left open.
    """


def _plan_update(table: Table, names: tuple[str, ...], dialect: Dialect) -> _UpdatePlan:
    primary_key = list(table.primary_key.columns)
    if len(primary_key) != 1:
        raise ImproperlyConfigured(
            f"update_by_pk: table {table.name} needs a single-column primary key"
        )
    key = primary_key[0].name
    unknown = [name for name in names if name not in table.c]
    if key not in names or unknown:
        raise TypeError(
            f"update_by_pk: each row of {table.name} needs its primary key {key!r} and "
            f"column names only" + (f"; unknown: {', '.join(unknown)}" if unknown else "")
        )
    columns = tuple(name for name in names if name != key)
    if not columns:
        raise TypeError(f"update_by_pk: rows of {table.name} set no column besides {key!r}")
    quote = dialect.identifier_preparer.quote
    target = dialect.identifier_preparer.format_table(table)
    all_columns = (key, *columns)
    unnest = ", ".join(
        f"unnest(${i}::{table.c[name].type.compile(dialect)}[]) AS {quote(name)}"
        for i, name in enumerate(all_columns, start=1)
    )
    assignments = ", ".join(f"{quote(name)} = v.{quote(name)}" for name in columns)
    # Identifiers come from the table and are quoted by the dialect; values are parameters.
    sql = (
        f"UPDATE {target} SET {assignments} FROM (SELECT {unnest}) AS v "  # noqa: S608
        f"WHERE {target}.{quote(key)} = v.{quote(key)}"
    )
    processors = tuple(
        table.c[name].type.dialect_impl(dialect).bind_processor(dialect) for name in all_columns
    )
    return _UpdatePlan(table, key, columns, sql, processors)


def _table_of(target: Any) -> Table:
    if isinstance(target, Table):
        return target
    mapper = inspect(target, raiseerr=False)
    table = getattr(mapper, "local_table", None)
    if not isinstance(table, Table):
        raise TypeError(f"update_by_pk: {target!r} is neither a model nor a Table")
    return table


def _named(compiled: _Compiled, arguments: Iterable[Any]) -> dict[str, Any]:
    return dict(zip(compiled.names, arguments, strict=True))


def _finish_rows(query: Prepared[Any], compiled: _Compiled, rows: list[Any]) -> list[Any]:
    if compiled.result_processors and rows and not isinstance(rows[0], Mapping):
        # asyncpg records hold driver values; apply the column types' conversions.
        keys = list(rows[0].keys())
        converted = []
        for row in rows:
            values = dict(row)
            for position, process in compiled.result_processors:
                values[keys[position]] = process(row[position])
            converted.append(values)
        rows = converted
    return rows if query.into is None else query.instances(rows)
