"""The obligations register's tables (migration ``0002_obligations`` creates the same) and the
statuses a case or task moves through. Apart from ``ledger`` so that the reads (``query``) and the
scheduler import the schema, not the module that writes it."""

from __future__ import annotations

import sqlalchemy as sa

from kti_policy.store.tables import _PK, UtcDateTime

STATUSES = ("open", "extended", "completed", "refused")
ACTIVE = ("open", "extended")

meta = sa.MetaData()
obligations_t = sa.Table(
    "obligations",
    meta,
    sa.Column("id", _PK, primary_key=True, autoincrement=True),
    sa.Column("kind", sa.String(8), nullable=False),
    sa.Column("type", sa.String(32), nullable=False),
    sa.Column("request_type", sa.String(32)),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("subject_key", sa.String(80), nullable=False),
    sa.Column("reference", sa.String(200), nullable=False),
    sa.Column("case_key", sa.String(260)),
    sa.Column("system", sa.String(64)),
    sa.Column("case_id", _PK),
    sa.Column("rule", sa.String(64), nullable=False),
    sa.Column("received", sa.Date(), nullable=False),
    sa.Column("due", sa.Date(), nullable=False),
    sa.Column("original_due", sa.Date()),
    sa.Column("extension_notice_by", sa.Date()),
    sa.Column("retain_until", sa.Date()),
    sa.Column("data_categories", sa.Text(), nullable=False),
    sa.Column("identity_verified", sa.Boolean()),
    sa.Column("source_event_id", sa.String(128)),
    sa.Column("due_soon_sent_at", UtcDateTime()),
    sa.Column("overdue_sent_at", UtcDateTime()),
    sa.Column("created_at", UtcDateTime(), nullable=False),
    sa.Column("closed_at", UtcDateTime()),
)
history_t = sa.Table(
    "obligation_history",
    meta,
    sa.Column("id", _PK, primary_key=True, autoincrement=True),
    sa.Column("obligation_id", _PK, nullable=False),
    sa.Column("at", UtcDateTime(), nullable=False),
    sa.Column("what", sa.String(32), nullable=False),
    sa.Column("actor", sa.String(200), nullable=False),
    sa.Column("details", sa.Text(), nullable=False),
)
