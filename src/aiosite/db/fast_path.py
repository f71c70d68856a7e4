"""The fast data path: SQLAlchemy Core statements compiled once, run on the driver.

The ORM session path costs several times what the database work costs: a session, a
unit of work, a greenlet hop per call and identity-map bookkeeping for every row. For
the few hot queries of a site, ``Prepared`` keeps the statement a SQLAlchemy expression
(built from the same models) but compiles it once per dialect and, on PostgreSQL, runs
it directly on an asyncpg connection as a prepared statement (asyncpg caches the
prepared statement per connection), returning asyncpg's records (with the columns as
attributes too: ``Record``). ``update_by_pk``
writes many rows by primary key in one statement and one round trip.

No library does this: SQLAlchemy's asyncpg dialect always goes through its DBAPI
adaptation layer and greenlets, and raw asyncpg means writing SQL strings by hand.

On PostgreSQL the fast path has a pool of its own (opened on first use, sized like
``database.pool_size + max_overflow``), so a site that uses both paths can hold up to
twice the connections; requests wait for its connections in line (``FairGate``). On
SQLite the same calls run through SQLAlchemy Core on the site's engine: the same
results, for development and tests, without the speed-up.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from operator import itemgetter
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any, Generic, TypeVar, cast

import asyncpg
from sqlalchemy import Table, bindparam, inspect, update
from sqlalchemy.engine import Dialect
from sqlalchemy.sql import ClauseElement, Executable
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.elements import BindParameter

from aiosite.db.errors import connection_unsafe
from aiosite.db.retry import IsolationLevel, name_of, run_attempts
from aiosite.exceptions import DatabaseUnavailable, ImproperlyConfigured, one_line

if TYPE_CHECKING:
    from collections.abc import Awaitable

    from sqlalchemy.engine import URL
    from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

    from aiosite.db.config import DatabaseSettings

M = TypeVar("M")
T = TypeVar("T")
# A result row: ``row["column"]``, ``row.column`` and ``dict(row)`` work on every backend
# (a ``Record`` on PostgreSQL, a ``MappingRow`` on SQLite).
Row = Mapping[str, Any]
_Processor = Callable[[Any], Any]


class Record(asyncpg.Record):  # type: ignore[misc]  # asyncpg has no type hints
    """A row on PostgreSQL: asyncpg's record, with its columns as attributes too.

    Each ``Prepared`` statement gets a subclass with a property per result column
    (``_record_class``): a template's ``{{ row.message }}`` is a plain attribute read,
    where on asyncpg's own record Jinja2 first fails ``getattr`` (an exception, about a
    microsecond) and then reads ``row["message"]``. A column without a property (a name
    that is not an identifier, or one of ``get``, ``items``, ``keys``, ``values``) is
    still ``row["name"]``.
    """

    __slots__ = ()

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError:
            raise AttributeError(f"the row has no column {name!r}") from None


class MappingRow(Mapping[str, Any]):
    """A row off the driver path (SQLite, or values converted by a column type):
    ``row["column"]``, ``row.column`` and ``dict(row)``, like a ``Record``."""

    __slots__ = ("_values",)

    def __init__(self, values: Mapping[Any, Any]) -> None:
        self._values: dict[str, Any] = dict(values)

    def __getitem__(self, key: str) -> Any:
        return self._values[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__") or name == "_values":
            raise AttributeError(name)
        try:
            return self._values[name]
        except KeyError:
            raise AttributeError(f"the row has no column {name!r}") from None

    def __repr__(self) -> str:
        return f"MappingRow({self._values!r})"


def _record_class(compiled: SQLCompiler) -> type[Record]:
    """A ``Record`` subclass with a property per result column of ``compiled``.

    The names are the labels SQLAlchemy writes into the statement (``id``, ``id_1`` for a
    second ``id``, ``count_1`` for ``func.count()``), which are what PostgreSQL returns.
    """
    entries = getattr(compiled, "_result_columns", ())
    properties = {
        entry.keyname: property(itemgetter(position))
        for position, entry in enumerate(entries)
        if entry.keyname.isidentifier() and not hasattr(Record, entry.keyname)
    }
    return type("Row", (Record,), {"__slots__": (), "__module__": __name__, **properties})


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
    # The class of the rows asyncpg returns (None off the driver path).
    record_class: type[Record] | None

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
        record_class=_record_class(compiled) if dialect.driver == "asyncpg" else None,
    )


class FairGate:
    """At most ``size`` holders at a time; the others wait in line, first come first served.

    The fast path's requests wait for a connection here, not in asyncpg's pool, whose
    waiters queue on an ``asyncio.Queue``: a released connection wakes the first waiter,
    but a request that runs before the woken one resumes (under load one always does)
    finds the connection in the queue and takes it, and the woken one goes back to the
    end of the line (tests/db/test_fast.py shows the order). That was the long tail of
    ``/db`` and ``/fortunes`` under ``wrk -c64`` on 8 connections: with the time spent
    per request measured in the server, a request's time was its wait for the pool, half
    the requests got a connection at once, and one in a hundred waited 75-210 ms, ten
    to twenty times the mean; the event loop never lagged more than a few ms and no
    collection of the garbage collector took a millisecond. Here a freed turn is handed
    to the first waiter directly, so a newcomer finds none free while anyone waits: p99
    fell to 16-40 ms, below the tuned aiohttp peer's on a bare asyncpg pool (60-160 ms,
    same runs); the median barely moved.

    ``acquire()`` arms its timer only when it has to wait (asyncpg's ``acquire`` and
    ``release`` with a timeout arm one each per call).
    """

    __slots__ = ("_free", "_timeout", "_waiters")

    def __init__(self, size: int, timeout: float) -> None:
        self._free = size
        self._timeout = timeout
        self._waiters: collections.deque[asyncio.Future[None]] = collections.deque()

    async def acquire(self) -> None:
        """Take a turn, waiting in line for at most ``timeout`` seconds (TimeoutError)."""
        if self._free and not self._waiters:
            self._free -= 1
            return
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[None] = loop.create_future()
        self._waiters.append(waiter)
        timer = loop.call_later(self._timeout, _expire, waiter)
        try:
            await waiter
        except BaseException:
            if waiter.done() and not waiter.cancelled() and waiter.exception() is None:
                # Handed a turn, then cancelled before it resumed: pass the turn on.
                self.release()
            raise
        finally:
            timer.cancel()

    def release(self) -> None:
        """End a turn: the first waiter still waiting gets it, else it is free."""
        waiters = self._waiters
        while waiters:
            waiter = waiters.popleft()
            if not waiter.done():  # not timed out or cancelled
                waiter.set_result(None)
                return
        self._free += 1


def _expire(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_exception(TimeoutError("no free connection in time"))


def _first_value(query: Prepared[Any], row: Any) -> Any:
    if query.into is not None:
        raise TypeError("fetch_value() reads a column: use fetch_one() for a Prepared(into=...)")
    return None if row is None else next(iter(dict(row).values()), None)


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
            return await self._driver.fetchrow(
                compiled.sql, *compiled.arguments(params), record_class=compiled.record_class
            )
        rows = await self.fetch(query, **params)
        return rows[0] if rows else None

    async def fetch_value(self, query: Prepared[M], /, **params: Any) -> Any:
        """The first column of the first row, or None."""
        return _first_value(query, await self.fetch_one(query, **params))

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
        self._gate = FairGate(self._pool_max_size(), settings.pool_timeout)
        self._opening: asyncio.Future[asyncpg.Pool] | None = None
        self._update_plans: dict[tuple[str, tuple[str, ...]], _UpdatePlan] = {}

    # --- the calls for one statement: a pooled connection for its duration ---------
    # On PostgreSQL without connection()'s context manager: its generator costs a few
    # microseconds a call (a twentieth of a /db request).

    async def fetch(self, query: Prepared[M], /, **params: Any) -> list[Any]:
        """Every row (``into``: every instance) the query returns."""
        if not self.is_postgresql:
            async with self.connection() as connection:
                return await connection.fetch(query, **params)
        pool, driver = await self._acquire()
        try:
            rows = await FastConnection(self, driver).fetch(query, **params)
        except BaseException as exc:
            await self._release_after(pool, driver, exc)
            raise
        await self._release(pool, driver)
        return rows

    async def fetch_one(self, query: Prepared[M], /, **params: Any) -> Any:
        """The first row (or instance), or None."""
        if not self.is_postgresql:
            async with self.connection() as connection:
                return await connection.fetch_one(query, **params)
        pool, driver = await self._acquire()
        try:
            row = await FastConnection(self, driver).fetch_one(query, **params)
        except BaseException as exc:
            await self._release_after(pool, driver, exc)
            raise
        await self._release(pool, driver)
        return row

    async def fetch_value(self, query: Prepared[M], /, **params: Any) -> Any:
        """The first column of the first row, or None."""
        return _first_value(query, await self.fetch_one(query, **params))

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
        pool, driver = await self._acquire()
        try:
            yield FastConnection(self, driver)
        except BaseException as exc:
            await self._release_after(pool, driver, exc)
            raise
        await self._release(pool, driver)

    async def _acquire(self) -> tuple[asyncpg.Pool, Any]:
        """The pool and a connection of it, after waiting in line (``FairGate``)."""
        pool = self._pool or await self._open_pool()
        gate = self._gate
        try:
            await gate.acquire()
        except TimeoutError as exc:
            raise DatabaseUnavailable(
                f"no free connection to {self._safe_url} within database.pool_timeout "
                f"({self._settings.pool_timeout:g} s)"
            ) from exc
        try:
            # Never waits for a connection: the gate lets in no more requests than the
            # pool has connections, and each is back in the pool before its turn is
            # passed on. It may connect (bounded by database.connect_timeout).
            driver = await pool.acquire()
        except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            # The pool connects on demand: a refused connection (too many clients, the
            # server starting or stopping) surfaces here.
            gate.release()
            raise self._unavailable(exc) from exc
        except BaseException:
            gate.release()
            raise
        return pool, driver

    async def _release(self, pool: asyncpg.Pool, driver: Any) -> None:
        try:
            # A connection left in a transaction is rolled back on release: bounded by
            # the pool timeout. Otherwise release sends nothing, and needs no timer.
            timeout = self._settings.pool_timeout if driver.is_in_transaction() else None
            await pool.release(driver, timeout=timeout)
        finally:
            self._gate.release()

    async def _release_after(self, pool: asyncpg.Pool, driver: Any, exc: BaseException) -> None:
        """Release ``driver`` after ``exc`` ended its use; never raises."""
        if connection_unsafe(exc):
            # Cancelled, or lost or mid-operation in the driver: closed rather than
            # reset and reused; the pool drops a closed connection (see
            # aiosite.db.engine.end_failed_session). A lost connection may
            # already be detached from the pool.
            with contextlib.suppress(asyncpg.InterfaceError):
                driver.terminate()
        # Any other error: the pool resets the connection (after waiting for a query cut
        # short to end) and keeps it, or closes it if the reset fails; that failure must
        # not replace the block's error.
        try:
            with contextlib.suppress(Exception):
                await pool.release(driver, timeout=self._settings.pool_timeout)
        finally:
            self._gate.release()

    @asynccontextmanager
    async def transaction(
        self, *, isolation_level: IsolationLevel | None = None
    ) -> AsyncIterator[FastConnection]:
        """A connection whose statements commit together at the end of the block, or
        roll back if it raises; at ``isolation_level`` on PostgreSQL (SQLite's
        transactions are serializable)."""
        async with self.connection() as connection:
            if not self.is_postgresql:
                yield connection
                return
            isolation = isolation_level and isolation_level.lower().replace(" ", "_")
            transaction = connection._driver.transaction(isolation=isolation)
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

    async def run_transaction(
        self,
        work: Callable[[FastConnection], Awaitable[T]],
        *,
        attempts: int = 3,
        isolation_level: IsolationLevel | None = None,
    ) -> T:
        """``await work(connection)`` in a transaction of its own, run again in a new one
        when it ends in a deadlock or serialization failure, up to ``attempts`` runs in
        all (the last failure is raised); returns what ``work`` returns. As
        ``aiosite.run_transaction`` for the ORM
        (docs/models.md#transactions-that-retry-run_transaction)."""

        async def attempt() -> T:
            async with self.transaction(isolation_level=isolation_level) as connection:
                return await work(connection)

        return await run_attempts(attempt, attempts=attempts, what=name_of(work))

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
                max_size=self._pool_max_size(),
                max_inactive_connection_lifetime=max(settings.pool_recycle, 0) or 300.0,
                timeout=settings.connect_timeout,
                server_settings=server_settings,
                reset=_keep_session_state,
                init=self._setup_codecs,
            )
        except (TimeoutError, OSError, asyncpg.PostgresError) as exc:
            raise self._unavailable(exc) from exc
        return pool

    def _pool_max_size(self) -> int:
        return self._settings.pool_size + max(self._settings.max_overflow, 0)

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
            rows: list[Any] = await driver.fetch(
                compiled.sql, *arguments, record_class=compiled.record_class
            )
            return rows
        result = await cast("AsyncConnection", driver).execute(
            query.statement, _named(compiled, arguments)
        )
        return [MappingRow(row) for row in result.mappings()] if result.returns_rows else []

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
            converted.append(MappingRow(values))
        rows = converted
    return rows if query.into is None else query.instances(rows)
