"""PostgreSQL transactions that begin at the first write: reading costs no BEGIN, no COMMIT.

SQLAlchemy's asyncpg dialect sends ``BEGIN`` before a connection's first statement, and
the session's end sends ``COMMIT`` (or ``ROLLBACK``): two of the three round trips of a
page that runs one query, and each costs the server about as much CPU time as the query
itself (a syscall and a wake-up on loopback TCP). Without them the benchmark's
``/orm/db`` took a quarter less CPU time a request (710 -> 530 µs).

Here a connection of the site's engine (PostgreSQL under READ COMMITTED, the server's
default) starts out in the driver's autocommit mode, and the first statement that needs
a transaction begins it: ``BEGIN``, then that statement. From there on the connection
works as before, and everything its transaction did commits or rolls back as a whole. A
session that only read ends without a round trip. Python's ``sqlite3`` module has
always worked this way (it sends BEGIN before the first INSERT, UPDATE or DELETE), so
SQLite and PostgreSQL sites now behave alike.

Reads before the first write see the same data as before: under READ COMMITTED every
statement sees the data committed when it starts, inside a transaction or not (but
``now()`` in such a read is that statement's time). ``database.begin_at_first_write:
false`` turns this off. A
statement begins the transaction first when it:

- writes or changes the schema: INSERT, UPDATE, DELETE (a flush), DDL, SAVEPOINT;
- is not a SELECT built with SQLAlchemy: ``text()``, ``exec_driver_sql()``;
- locks rows: ``SELECT ... FOR UPDATE`` / ``FOR SHARE`` (locks last as long as the
  transaction);
- calls an SQL function not known to be free of side effects (``pg_advisory_xact_lock``,
  ``set_config``, ``nextval``, a function of the project's), or holds SQL text with a
  parenthesis in it (``text()``, ``literal_column()``), which might call one;
- streams its result (a server-side cursor, which asyncpg runs in a transaction).

A connection given an isolation level (``execution_options(isolation_level=...)``,
``run_transaction(..., isolation_level=...)``) begins at its first statement, as usual,
and so does every connection of a URL with ``prepared_statement_cache_size=0`` (behind
PgBouncer in transaction mode).
"""

from __future__ import annotations

import re
import weakref
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import Connection, Engine, ExecutionContext
from sqlalchemy.engine.interfaces import Compiled
from sqlalchemy.sql import visitors
from sqlalchemy.sql.dml import UpdateBase
from sqlalchemy.sql.elements import ColumnClause, TextClause
from sqlalchemy.sql.functions import FunctionElement
from sqlalchemy.sql.selectable import CompoundSelect, Select

# In a pooled connection's ``info``: True while it has run no statement that needed a
# transaction (its driver connection is in autocommit mode).
_DEFERRED = "aiosite.begin_deferred"

# FOR UPDATE, FOR NO KEY UPDATE, FOR SHARE, FOR KEY SHARE, in the compiled SQL. A false
# match (an identifier) only begins a transaction that was not needed.
_LOCKING_CLAUSE = re.compile(r"\bFOR\s+(?:NO\s+KEY\s+)?(?:UPDATE|SHARE|KEY\s+SHARE)\b", re.I)

# SQL functions a read may call outside a transaction: they change nothing and take no
# lock that outlives the statement. Any other function begins the transaction first.
_SIDE_EFFECT_FREE = (
    # aggregates and window functions
    "count sum min max avg array_agg string_agg aggregate_strings bool_and bool_or every "
    "bit_and bit_or json_agg jsonb_agg json_object_agg jsonb_object_agg stddev stddev_pop "
    "stddev_samp variance var_pop var_samp percentile_cont percentile_disc mode rank "
    "dense_rank row_number percent_rank cume_dist ntile lag lead first_value last_value "
    "nth_value grouping rollup cube",
    # conditionals, text, numbers
    "coalesce nullif greatest least lower upper length char_length character_length "
    "octet_length trim btrim ltrim rtrim substr substring replace concat concat_ws left "
    "right strpos position lpad rpad initcap reverse split_part regexp_replace "
    "regexp_match starts_with format md5 translate repeat abs ceil ceiling floor round "
    "trunc mod power sqrt exp ln log sign random",
    # dates and times
    "now current_timestamp current_date current_time localtime localtimestamp "
    "clock_timestamp statement_timestamp transaction_timestamp date_trunc date_part "
    "date_bin to_char to_date to_timestamp to_number age make_date make_timestamp "
    "make_interval timezone",
    # arrays, JSON, full-text search
    "array_length array_position array_to_string string_to_array cardinality unnest "
    "json_build_object jsonb_build_object json_build_array jsonb_build_array to_json "
    "to_jsonb row_to_json json_extract_path json_extract_path_text jsonb_extract_path "
    "jsonb_extract_path_text json_array_length jsonb_array_length jsonb_typeof "
    "to_tsvector to_tsquery plainto_tsquery phraseto_tsquery websearch_to_tsquery "
    "ts_rank ts_rank_cd ts_headline setweight generate_series",
)
SIDE_EFFECT_FREE_FUNCTIONS = frozenset(
    name for group in _SIDE_EFFECT_FREE for name in group.split()
)

# Whether a compiled statement needs a transaction, decided on its first execution
# (SQLAlchemy reuses the compiled form of a statement from its cache).
_NEEDS_TRANSACTION: weakref.WeakKeyDictionary[Compiled, bool] = weakref.WeakKeyDictionary()


def install_lazy_begin(engine: Engine) -> None:
    """Defer BEGIN to the first statement that needs it, on ``engine``'s connections
    (asyncpg only; see the module's docstring)."""
    dialect = engine.dialect
    if dialect.driver != "asyncpg":
        return
    if engine.url.query.get("prepared_statement_cache_size") == "0":
        # What PgBouncer in transaction mode needs (docs/postgresql.md). Outside a
        # transaction it may send a statement's two round trips (prepare, then execute)
        # to two server connections: every statement stays in a transaction there.
        return

    def defer(dbapi_connection: Any, record: Any) -> None:
        # Only under READ COMMITTED: under REPEATABLE READ or SERIALIZABLE as the
        # server's default, reads must share the transaction's snapshot. The default is
        # read from the server on the first connection, before this runs.
        if dbapi_connection is not None and (
            getattr(dialect, "default_isolation_level", None) == "READ COMMITTED"
        ):
            # The driver connection's DB-API autocommit switch: True skips BEGIN; False
            # restores the connection's own isolation level (an explicit one set for
            # the connection included), and its next statement sends BEGIN.
            dbapi_connection.autocommit = True
            record.info[_DEFERRED] = True

    event.listen(engine, "connect", defer)
    # Back in the pool (rolled back or committed, its isolation level reset): deferred
    # again for its next user.
    event.listen(engine, "checkin", defer)
    event.listen(engine, "before_cursor_execute", _begin_before_writes)


def _begin_before_writes(
    conn: Connection,
    cursor: Any,
    statement: str,
    parameters: Any,
    context: ExecutionContext | None,
    executemany: bool,
) -> None:
    info = conn.info
    if info.get(_DEFERRED) and (context is None or needs_transaction(context, executemany)):
        info[_DEFERRED] = False
        dbapi_connection = conn.connection.dbapi_connection
        if dbapi_connection is not None:
            dbapi_connection.autocommit = False


def needs_transaction(context: ExecutionContext, executemany: bool = False) -> bool:
    """Whether the statement ``context`` runs must run in the connection's transaction
    (see the module's docstring), rather than by itself before the transaction begins."""
    if executemany or context.isinsert or context.isupdate:  # DELETE: by its statement
        return True
    compiled = context.compiled
    if compiled is None or context.execution_options.get("stream_results"):
        return True
    verdict = _NEEDS_TRANSACTION.get(compiled)
    if verdict is None:
        verdict = _NEEDS_TRANSACTION[compiled] = not _only_reads(compiled)
    return verdict


def _only_reads(compiled: Compiled) -> bool:
    statement = compiled.statement
    if not isinstance(statement, Select | CompoundSelect):
        return False
    if _LOCKING_CLAUSE.search(compiled.string):
        return False
    # The ORM adds its columns (a column_property's subquery) when it compiles: its
    # compile state holds the statement as run.
    compile_state = getattr(compiled, "compile_state", None)
    roots = [statement, getattr(compile_state, "statement", None)]
    for root in roots:
        if root is None:
            continue
        for element in visitors.iterate(root):
            if isinstance(element, UpdateBase):
                return False  # a data-modifying CTE
            if isinstance(element, TextClause) and _may_call(element.text):
                return False
            if isinstance(element, ColumnClause) and element.is_literal and _may_call(element.name):
                return False
            if isinstance(element, FunctionElement) and not _side_effect_free(element):
                return False
    return True


def _may_call(sql: str) -> bool:
    """Whether SQL text in a SELECT (``literal_column("1")``, ``text("id > 5")``) may call
    a function or hold a subquery: only with a parenthesis (FOR UPDATE in it is found in
    the compiled statement)."""
    return "(" in sql


def _side_effect_free(function: FunctionElement[Any]) -> bool:
    if getattr(function, "packagenames", None):
        return False  # schema.function(): the project's own
    name = getattr(function, "name", None)
    return isinstance(name, str) and name.lower() in SIDE_EFFECT_FREE_FUNCTIONS
