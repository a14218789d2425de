"""The database schema: the tables (events, the facts version, the outbox's deliveries, their attempts)
and the column type keeping datetimes aware in Python and naive UTC in the database. The migrations
(``migrations/``) create the same tables.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa

STATUSES = ("pending", "delivered", "dead")


class UtcDateTime(sa.types.TypeDecorator[datetime]):
    """Aware datetimes in Python, naive UTC in the database (same on SQLite and PostgreSQL)."""

    impl = sa.DateTime
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the store")
        return value.astimezone(UTC).replace(tzinfo=None)

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        return None if value is None else value.replace(tzinfo=UTC)


_PK = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
metadata = sa.MetaData()
events_t = sa.Table(
    "events",
    metadata,
    sa.Column("seq", _PK, primary_key=True, autoincrement=True),
    sa.Column("event_id", sa.String(128), nullable=False, unique=True),
    sa.Column("type", sa.String(64), nullable=False),
    sa.Column("subject_key", sa.String(80), nullable=False),
    sa.Column("occurred_at", UtcDateTime(), nullable=False),
    sa.Column("received_at", UtcDateTime(), nullable=False),
    sa.Column("data", sa.Text(), nullable=False),
)
deliveries_t = sa.Table(
    "deliveries",
    metadata,
    sa.Column("id", _PK, primary_key=True, autoincrement=True),
    sa.Column("subscription_id", sa.String(64), nullable=False),
    sa.Column("event_seq", _PK, sa.ForeignKey("events.seq"), nullable=True),
    sa.Column("event_id", sa.String(128), nullable=False),
    sa.Column("event_type", sa.String(64), nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("body", sa.LargeBinary(), nullable=True),
    sa.Column("attempts", sa.Integer(), nullable=False, server_default="0"),
    sa.Column("next_attempt_at", UtcDateTime(), nullable=True),
    sa.Column("claimed_until", UtcDateTime(), nullable=True),
    sa.Column("claim_token", sa.String(40), nullable=True),
    sa.Column("last_status_code", sa.Integer(), nullable=True),
    sa.Column("last_error", sa.Text(), nullable=True),
    sa.Column("created_at", UtcDateTime(), nullable=False),
    sa.Column("delivered_at", UtcDateTime(), nullable=True),
)
attempts_t = sa.Table(
    "delivery_attempts",
    metadata,
    sa.Column("id", _PK, primary_key=True, autoincrement=True),
    sa.Column(
        "delivery_id", _PK, sa.ForeignKey("deliveries.id", ondelete="CASCADE"), nullable=False
    ),
    sa.Column("attempted_at", UtcDateTime(), nullable=False),
    sa.Column("status_code", sa.Integer(), nullable=True),
    sa.Column("error", sa.Text(), nullable=True),
    sa.Column("duration_ms", sa.Float(), nullable=False),
    sa.Column("outcome", sa.String(16), nullable=False),
)


# Counters of the changes to ``events`` (16 rows, so that PostgreSQL's writers do not queue on one
# row's lock), kept by triggers (migration 0003) in the transaction that makes them, whoever writes:
# an unchanged sum means unchanged facts, which lets every process keep folded facts in memory
# (``factcache``) and read one small sum per decision request instead of the events.
facts_version_t = sa.Table(
    "facts_version",
    metadata,
    sa.Column("id", sa.Integer(), primary_key=True, autoincrement=False),
    sa.Column("n", _PK, nullable=False),
)


def utcnow() -> datetime:
    return datetime.now(UTC)


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.astimezone(UTC).isoformat().replace("+00:00", "Z")
