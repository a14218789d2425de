"""Alembic environment for kti-policy's own tables.

Run by ``Store.migrate()`` (on every open), which passes its connection, already inside a transaction
that holds a migration lock, in ``config.attributes["connection"]``; there is no alembic.ini. To run it
by hand: ``python -c "from kti_policy.store import Store; ..."`` is the supported way.
"""

from __future__ import annotations

from alembic import context

connection = context.config.attributes.get("connection")
if connection is None:  # pragma: no cover - only the Store runs these migrations
    raise RuntimeError(
        "kti-policy migrations run through Store.migrate(), which passes a connection"
    )

context.configure(connection=connection, target_metadata=None, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
