"""The decision path's facts reads, compiled once and run on a pooled DB-API
connection (building the statement per call cost more than running it on SQLite).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any, NamedTuple

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from .tables import events_t

# The decision path's facts reads, built once: only the columns the fold needs, bound parameters
# (building the statement per call cost more than running it on SQLite).
_FACTS_IN_FOLD_ORDER = sa.select(
    events_t.c.subject_key, events_t.c.type, events_t.c.occurred_at, events_t.c.data, events_t.c.seq
).order_by(events_t.c.occurred_at, events_t.c.seq)
_FACTS_OF_ONE = _FACTS_IN_FOLD_ORDER.where(events_t.c.subject_key == sa.bindparam("key"))
_FACTS_OF_MANY = _FACTS_IN_FOLD_ORDER.where(
    events_t.c.subject_key.in_(sa.bindparam("keys", expanding=True))
)


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

    def _args(self, values: Mapping[str, Any]) -> Any:
        params = self.compiled.construct_params(dict(values))
        if self.compiled.positional:
            return tuple(params[name] for name in self.compiled.positiontup or ())
        return params

    def rows(self, engine: Engine, values: Mapping[str, Any]) -> list[Any]:
        conn = engine.raw_connection()
        try:
            cursor = conn.cursor()
            try:
                cursor.execute(self.sql, self._args(values))
                fetched = cursor.fetchall()
            finally:
                cursor.close()
        except BaseException:
            conn.invalidate()  # a broken connection must not go back to the pool
            raise
        finally:
            conn.close()
        procs = self.processors
        return [
            self.row_type(*(p(v) if p else v for p, v in zip(procs, row, strict=True))) for row in fetched
        ]


class _FactRow(NamedTuple):
    subject_key: str
    type: str
    occurred_at: datetime
    data: str
    seq: int
