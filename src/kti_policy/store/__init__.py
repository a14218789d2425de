"""The database: subject events (validated, pseudonymised), facts reads, the webhook
outbox and its deliveries, sealed bodies, the pseudonym key, Alembic migrations (``migrations/``)
and the Prometheus metrics of events and the outbox.

The store fans events out to subscriptions it is given (``db.Subscriber`` is all it needs of one);
it never imports ``hooks``, which sits above it (``hooks.fanout.Store`` reads ``KTI_HOOKS_DIR``).

May import: the root base modules, ``facts``, ``policy``, ``decide``, ``verify``.
"""
