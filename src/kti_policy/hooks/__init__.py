"""Webhooks: subscriptions (``KTI_HOOKS_DIR``), the store wired to them
(``fanout``), the delivery worker, inbound signatures.

May import: the root base modules and every package up to ``register``.
"""
