"""The store wired to the webhook subscriptions of ``KTI_HOOKS_DIR``.

``kti_policy.store`` fans events out to the subscriptions it is handed and imports nothing from this
package; this ``Store`` is that store whose ``from_config`` also reads the subscription files and
attaches their secrets (a subscription whose secret variable is unset is skipped with a warning).
The service and ``kti-policy deliver`` open their store here.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from kti_policy.store import db

from .subscriptions import Subscription, active_subscriptions, load_subscriptions


class Store(db.Store):
    """``kti_policy.store.db.Store`` fanning events out to the active subscriptions of the
    configuration's ``KTI_HOOKS_DIR`` (default ``hooks``)."""

    subscriptions: list[Subscription]  # type: ignore[assignment]  # what from_config attached

    @classmethod
    def subscriptions_from_config(
        cls, config: Mapping[str, Any], environ: Mapping[str, str]
    ) -> Sequence[Subscription]:
        subs = load_subscriptions(Path(str(config.get("KTI_HOOKS_DIR") or "hooks")))
        return active_subscriptions(subs, environ)
