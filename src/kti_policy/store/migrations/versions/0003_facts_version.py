"""facts_version: counters of the changes to ``events``, kept by triggers

A process keeps subjects' folded facts in memory while the sum of ``n`` is unchanged
(``store.factcache``), so it must change in the same transaction as any change to ``events``,
whoever makes it: the store, an older release during a rolling upgrade, or an operator's hand.
Triggers do that for every row inserted, updated or deleted (an ``INSERT ... ON CONFLICT DO
NOTHING`` that inserts nothing fires no row trigger: a duplicate changes no fact).

On PostgreSQL one counter row would serialise every transaction that records events on its lock,
so there are 16 rows, each connection bumps the one of its backend (``pg_backend_pid() % 16``),
and the trigger is deferred to the commit, holding that lock only while committing. Readers add
the rows up; any commit raises the sum. SQLite has one writer at a time and bumps row 0.

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

SHARDS = 16
_PK = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
_CHANGES = ("INSERT", "UPDATE", "DELETE")


def upgrade() -> None:
    table = op.create_table(
        "facts_version",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=False),
        sa.Column("n", _PK, nullable=False),
    )
    op.bulk_insert(table, [{"id": i, "n": 0} for i in range(SHARDS)])
    if op.get_bind().dialect.name == "sqlite":
        for change in _CHANGES:  # SQLite takes one event per trigger, row triggers only
            op.execute(
                f"CREATE TRIGGER events_{change.lower()}_facts_version AFTER {change} ON events "
                "BEGIN UPDATE facts_version SET n = n + 1 WHERE id = 0; END"
            )
        return
    op.execute(
        "CREATE FUNCTION kti_bump_facts_version() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
        f"UPDATE facts_version SET n = n + 1 WHERE id = pg_backend_pid() % {SHARDS}; "
        "RETURN NULL; END $$"
    )
    op.execute(
        "CREATE CONSTRAINT TRIGGER events_facts_version AFTER INSERT OR UPDATE OR DELETE ON events "
        "DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION kti_bump_facts_version()"
    )


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        for change in _CHANGES:
            op.execute(f"DROP TRIGGER events_{change.lower()}_facts_version")
    else:
        op.execute("DROP TRIGGER events_facts_version ON events")
        op.execute("DROP FUNCTION kti_bump_facts_version()")
    op.drop_table("facts_version")
