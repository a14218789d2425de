"""obligations register: obligations (cases and deletion tasks), obligation_history; outbox rows
without an event (``deliveries.event_seq`` nullable) for the register's own webhooks.

On SQLite, dropping NOT NULL rebuilds ``deliveries``; dropping the old table is an implicit DELETE
that would cascade into ``delivery_attempts`` (foreign keys are on, and cannot be turned off inside
the migration's transaction), so the attempt log is copied aside and put back in the same
transaction.

Revision ID: 0002_obligations
Revises: 0001
Create Date: 2026-12-04
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002_obligations"
down_revision = "0001"
branch_labels = None
depends_on = None

_PK = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "obligations",
        sa.Column("id", _PK, primary_key=True, autoincrement=True),
        sa.Column("kind", sa.String(8), nullable=False),  # case | task
        sa.Column("type", sa.String(32), nullable=False),  # respond_by | delete_by
        sa.Column("request_type", sa.String(32), nullable=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("subject_key", sa.String(80), nullable=False),
        sa.Column("reference", sa.String(200), nullable=False),
        sa.Column("case_key", sa.String(260), nullable=True),
        sa.Column("system", sa.String(64), nullable=True),
        sa.Column("case_id", _PK, sa.ForeignKey("obligations.id"), nullable=True),
        sa.Column("rule", sa.String(64), nullable=False),
        sa.Column("received", sa.Date(), nullable=False),
        sa.Column("due", sa.Date(), nullable=False),
        sa.Column("original_due", sa.Date(), nullable=True),
        sa.Column("extension_notice_by", sa.Date(), nullable=True),
        sa.Column("retain_until", sa.Date(), nullable=True),
        sa.Column("data_categories", sa.Text(), nullable=False, server_default="[]"),
        sa.Column("identity_verified", sa.Boolean(), nullable=True),
        sa.Column("source_event_id", sa.String(128), nullable=True),
        sa.Column("due_soon_sent_at", sa.DateTime(), nullable=True),
        sa.Column("overdue_sent_at", sa.DateTime(), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("closed_at", sa.DateTime(), nullable=True),
        sa.UniqueConstraint("case_key", name="uq_obligations_case_key"),
    )
    op.create_index("ix_obligations_status_due", "obligations", ["status", "due", "id"])
    op.create_index("ix_obligations_due", "obligations", ["due", "id"])
    op.create_index("ix_obligations_subject", "obligations", ["subject_key", "system"])
    op.create_index("ix_obligations_reference", "obligations", ["reference"])
    op.create_table(
        "obligation_history",
        sa.Column("id", _PK, primary_key=True, autoincrement=True),
        sa.Column("obligation_id", _PK, sa.ForeignKey("obligations.id"), nullable=False),
        sa.Column("at", sa.DateTime(), nullable=False),
        sa.Column("what", sa.String(32), nullable=False),
        sa.Column("actor", sa.String(200), nullable=False),
        sa.Column("details", sa.Text(), nullable=False, server_default="{}"),
    )
    op.create_index("ix_obligation_history_obligation", "obligation_history", ["obligation_id", "id"])
    if op.get_bind().dialect.name == "sqlite":
        op.execute("CREATE TEMP TABLE kti_attempts_copy AS SELECT * FROM delivery_attempts")
        with op.batch_alter_table("deliveries", recreate="always") as batch:
            batch.alter_column("event_seq", existing_type=_PK, nullable=True)
        op.execute("DELETE FROM delivery_attempts")
        op.execute("INSERT INTO delivery_attempts SELECT * FROM kti_attempts_copy")
        op.execute("DROP TABLE kti_attempts_copy")
    else:
        op.alter_column("deliveries", "event_seq", existing_type=_PK, nullable=True)


def downgrade() -> None:
    op.drop_table("obligation_history")
    op.drop_table("obligations")
