"""facts_version: one row counting the changes to ``events``, kept by triggers

A process keeps subjects' folded facts in memory while ``n`` is unchanged (``store.factcache``), so
``n`` must change in the same transaction as any change to ``events``, whoever makes it: the store,
an older release during a rolling upgrade, or an operator's hand. Triggers do that for every row
inserted, updated or deleted (an ``INSERT ... ON CONFLICT DO NOTHING`` that inserts nothing fires no
row trigger: a duplicate changes no fact). The row starts at 0.

Revision ID: 0003_facts_version
Revises: 0002_obligations
Create Date: 2026-12-04
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003_facts_version"
down_revision = "0002_obligations"
branch_labels = None
depends_on = None

_PK = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
_BUMP = "UPDATE facts_version SET n = n + 1 WHERE id = 1"
_CHANGES = ("INSERT", "UPDATE", "DELETE")


def upgrade() -> None:
    table = op.create_table(
        "facts_version",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=False),
        sa.Column("n", _PK, nullable=False),
    )
    op.bulk_insert(table, [{"id": 1, "n": 0}])
    if op.get_bind().dialect.name == "sqlite":
        for change in _CHANGES:  # SQLite takes one event per trigger, row triggers only
            op.execute(
                f"CREATE TRIGGER events_{change.lower()}_facts_version AFTER {change} ON events "
                f"BEGIN {_BUMP}; END"
            )
        return
    op.execute(
        "CREATE FUNCTION kti_bump_facts_version() RETURNS trigger LANGUAGE plpgsql AS "
        f"$$ BEGIN {_BUMP}; RETURN NULL; END $$"
    )
    op.execute(
        "CREATE TRIGGER events_facts_version AFTER INSERT OR UPDATE OR DELETE ON events "
        "FOR EACH ROW EXECUTE FUNCTION kti_bump_facts_version()"
    )


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        for change in _CHANGES:
            op.execute(f"DROP TRIGGER events_{change.lower()}_facts_version")
    else:
        op.execute("DROP TRIGGER events_facts_version ON events")
        op.execute("DROP FUNCTION kti_bump_facts_version()")
    op.drop_table("facts_version")
