"""The decision path's facts reads, compiled once and run on a pooled DB-API
connection (building the statement per call cost more than running it on SQLite).
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import datetime
from threading import Lock
from typing import Any, NamedTuple

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from .tables import events_t, facts_version_t

# The decision path's facts reads, built once: only the columns the fold needs, bound parameters
# (building the statement per call cost more than running it on SQLite).
_FACTS_IN_FOLD_ORDER = sa.select(
    events_t.c.subject_key, events_t.c.type, events_t.c.occurred_at, events_t.c.data, events_t.c.seq
).order_by(events_t.c.occurred_at, events_t.c.seq)
_FACTS_OF_ONE = _FACTS_IN_FOLD_ORDER.where(events_t.c.subject_key == sa.bindparam("key"))
_FACTS_OF_MANY = _FACTS_IN_FOLD_ORDER.where(
    events_t.c.subject_key.in_(sa.bindparam("keys", expanding=True))
)
# the sum of the counter rows (migration 0003): any commit that changes events raises it; NULL
# (None) when the rows are missing, and then nothing is cached
_FACTS_VERSION = sa.select(sa.cast(sa.func.sum(facts_version_t.c.n), sa.BigInteger).label("n"))


class _DriverQuery:
    """One compiled SELECT run on a pooled DB-API connection, rows converted by the columns' types.

    SQLAlchemy compiles the SQL and supplies each column's result processor (UtcDateTime on SQLite
    and PostgreSQL alike), so the rows are what ``Connection.execute`` would give, as plain tuples
    in the statement's column order.
    """

    def __init__(self, statement: sa.Select[Any], dialect: Any, row_type: Any) -> None:
        self.compiled = statement.compile(dialect=dialect)
        self.row_type = row_type
        self.sql = str(self.compiled)
        self.processors = [
            col.type.dialect_impl(dialect).result_processor(dialect, None)
            for col in statement.selected_columns
        ]
        names = tuple(col.name for col in statement.selected_columns)
        if names != row_type._fields:
            raise ValueError(f"row type {row_type.__name__} does not match the columns {names}")
        # the statement's own bound values, built once: construct_params per call cost more than
        # the facts version query itself
        self._defaults = {name: bind.value for name, bind in self.compiled.binds.items()}
        self._order = tuple(self.compiled.positiontup or ()) if self.compiled.positional else None
        self._fixed = self._bind(self._defaults)

    def _bind(self, params: Mapping[str, Any]) -> Any:
        return tuple(params[name] for name in self._order) if self._order is not None else dict(params)

    def _args(self, values: Mapping[str, Any]) -> Any:
        if not values.keys() <= self._defaults.keys():
            raise KeyError(f"no bound parameter {sorted(set(values) - set(self._defaults))} in {self.sql}")
        return self._bind({**self._defaults, **values}) if values else self._fixed

    def rows(self, engine: Engine, values: Mapping[str, Any]) -> list[Any]:
        """Run on a connection of its own from ``engine``'s pool."""
        with driver_cursor(engine) as cursor:
            return self.run(cursor, values)

    def run(self, cursor: Any, values: Mapping[str, Any]) -> list[Any]:
        """Run on an open DB-API ``cursor`` (several reads on one pooled connection)."""
        cursor.execute(self.sql, self._args(values))
        fetched = cursor.fetchall()
        procs = self.processors
        return [
            self.row_type(*(p(v) if p else v for p, v in zip(procs, row, strict=True))) for row in fetched
        ]


@contextmanager
def driver_cursor(engine: Engine) -> Iterator[Any]:
    """A DB-API cursor on a pooled connection, both closed after; a connection that failed is
    invalidated, never put back in the pool."""
    conn = engine.raw_connection()
    try:
        cursor = conn.cursor()
        try:
            yield cursor
        finally:
            cursor.close()
    except BaseException:
        conn.invalidate()
        raise
    finally:
        conn.close()


class _Process:
    """This process's id, kept: ``os.getpid()`` is a system call on every decision otherwise."""

    def __init__(self) -> None:
        self.pid = os.getpid()

    def forked(self) -> None:
        self.pid = os.getpid()


_process = _Process()
os.register_at_fork(after_in_child=_process.forked)


class SharedReader:
    """One DB-API connection kept for the decision path's short reads on SQLite, taken under a lock.

    Checking a connection out of SQLAlchemy's pool and back cost more than the facts version
    query itself, the most frequent statement of the service (py-spy under wrk, gevent workers).
    SQLite's calls never yield to another greenlet and each read takes microseconds, so one
    connection per process serves them all. It is autocommit (``isolation_level = None``): each
    SELECT is its own read transaction and sees every commit before it. Opened on first use and
    again in a forked child; a read that fails drops it (the next one opens another).
    """

    def __init__(self) -> None:
        self._lock = Lock()
        self._conn: Any = None
        self._cursor: Any = None  # one cursor, reused: its statements run one after another
        self._opened: tuple[Engine, int] | None = None  # the engine and process it was opened for

    def cursor(self, engine: Engine) -> _Lease:
        """``with reader.cursor(engine) as cursor``: the kept cursor on ``engine`` (the store's
        engine may be replaced), under the lock. A class, not ``@contextmanager``: the generator's
        machinery cost a few microseconds on every decision request."""
        return _Lease(self, engine)

    def _acquire(self, engine: Engine) -> Any:
        self._lock.acquire()
        try:
            if self._conn is None or self._opened != (engine, _process.pid):
                self._close_own()  # the one a replaced engine opened; a parent's is left alone
                conn = engine.raw_connection()
                self._conn, self._cursor, self._opened = conn, conn.cursor(), (engine, _process.pid)
        except BaseException:
            self._lock.release()
            raise
        return self._cursor

    def _release(self, failed: bool) -> None:
        try:
            if failed and self._conn is not None:
                conn, self._conn, self._cursor = self._conn, None, None
                conn.invalidate()
        finally:
            self._lock.release()

    def close(self) -> None:
        with self._lock:
            self._close_own()

    def _close_own(self) -> None:
        """Close the kept connection if this process opened it; forget it either way."""
        if self._conn is not None and self._opened is not None and self._opened[1] == _process.pid:
            self._cursor.close()
            self._conn.close()
        self._conn = self._cursor = None


class _Lease:
    """One use of a ``SharedReader``'s cursor: a read that raises drops the connection."""

    __slots__ = ("_reader", "_engine")

    def __init__(self, reader: SharedReader, engine: Engine) -> None:
        self._reader, self._engine = reader, engine

    def __enter__(self) -> Any:
        return self._reader._acquire(self._engine)

    def __exit__(self, kind: type[BaseException] | None, *_: Any) -> None:
        self._reader._release(kind is not None)


class _FactRow(NamedTuple):
    subject_key: str
    type: str
    occurred_at: datetime
    data: str
    seq: int


class _VersionRow(NamedTuple):
    n: int | None
