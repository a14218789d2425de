"""Time passes: the reminder pass of the obligations register, run by the delivery worker.

Each pass sends ``obligation.overdue`` for every open or extended obligation whose due date has
passed, and ``obligation.due_soon`` for those due within ``KTI_OBLIGATION_LEAD_DAYS`` business days
(default 5) that are not overdue yet, each at most once per obligation (an extension, which moves
the deadline, makes a new due_soon possible). A reminder is an outbox row written in the same
transaction that marks the obligation reminded, so a crash leaves neither a mark without a webhook
nor a webhook without a mark.

Several workers at once (``kti-policy deliver`` processes, ``serve``): on PostgreSQL each batch is
claimed with ``FOR UPDATE SKIP LOCKED`` and a worker that waited re-reads the row and sees the mark;
on SQLite write transactions queue (``BEGIN IMMEDIATE``). The update is also conditional on the mark
being unset, so no obligation is reminded twice whatever the isolation.

The pass also sets the ``kti_obligations`` gauge (open and overdue, by type). "Today" comes from the
injected clock; tests freeze it instead of sleeping.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from datetime import date, datetime
from typing import Any

import sqlalchemy as sa
from prometheus_client import Gauge

from kti_policy.policy.calendar import to_helsinki_date
from kti_policy.store.db import Store
from kti_policy.store.tables import utcnow

from .ledger import Clock, enqueue
from .query import to_dict
from .rules import due_soon_threshold, parse_lead_days
from .tables import ACTIVE, history_t, obligations_t

log = logging.getLogger(__name__)

OBLIGATIONS = Gauge(
    "kti_obligations",
    "Open obligations of the register by type and state (open = not yet overdue, overdue)",
    ["type", "state"],
    multiprocess_mode="mostrecent",
)
TYPES = ("respond_by", "delete_by")
SCHEDULER_ACTOR = "scheduler"


class ObligationScheduler:
    """One reminder pass at a time over the register (``run_once``); cheap when nothing is due."""

    def __init__(
        self,
        store: Store,
        *,
        clock: Clock = utcnow,
        lead_days: int = 5,
        batch_size: int = 500,
        interval: float = 60.0,
    ) -> None:
        self.store = store
        self.clock = clock
        self.lead_days = lead_days
        self.batch_size = max(1, batch_size)
        self.interval = interval

    @classmethod
    def from_config(cls, store: Store, config: Mapping[str, Any]) -> ObligationScheduler:
        """``KTI_OBLIGATION_LEAD_DAYS`` (default 5), ``KTI_OBLIGATION_SCAN_SECONDS`` (60)."""
        clock = config.get("KTI_CLOCK")
        clock = clock if callable(clock) else utcnow  # a callable from tests; never the env
        interval = float(config.get("KTI_OBLIGATION_SCAN_SECONDS") or 60)
        return cls(store, clock=clock, lead_days=parse_lead_days(
            config.get("KTI_OBLIGATION_LEAD_DAYS")), interval=interval)

    def run_once(self) -> dict[str, int]:
        """Send every reminder due today; the numbers of obligations reminded per webhook."""
        now = self.clock()
        today = to_helsinki_date(now)
        sent = {"obligation.overdue": 0, "obligation.due_soon": 0}
        for what in sent:
            while True:
                n = self._batch(what, today, now)
                sent[what] += n
                if n < self.batch_size:
                    break
        if any(sent.values()):
            self.store._notify_outbox()
        self.update_gauge(today)
        return sent

    def _batch(self, what: str, today: date, now: datetime) -> int:
        o = obligations_t.c
        if what == "obligation.overdue":
            mark = o.overdue_sent_at
            due_cond = o.due < today
        else:
            mark = o.due_soon_sent_at
            due_cond = sa.and_(o.due >= today, o.due <= due_soon_threshold(today, self.lead_days))
        query = (
            sa.select(obligations_t)
            .where(o.status.in_(ACTIVE), mark.is_(None), due_cond)
            .order_by(o.due, o.id)
            .limit(self.batch_size)
        )
        if not self.store.is_sqlite:
            query = query.with_for_update(skip_locked=True)
        subs = [s for s in self.store.subscriptions if s.wants(what)]
        with self.store._write() as conn:
            rows = list(conn.execute(query))
            if not rows:
                return 0
            ids = [r.id for r in rows]
            marked = conn.execute(
                obligations_t.update()
                .where(o.id.in_(ids), mark.is_(None))
                .values({mark.name: now})
                .returning(o.id)
            )
            fresh = {r.id for r in marked}
            deliveries: dict[int, list[int]] = {}
            for row in rows:
                if row.id not in fresh:
                    continue
                for sub in subs:
                    deliveries.setdefault(row.id, []).append(
                        enqueue(conn, self.store.sealer, sub, row.id, what, _notice(row, today), now)
                    )
            conn.execute(
                history_t.insert(),
                [
                    {
                        "obligation_id": oid,
                        "at": now,
                        "what": what.split(".")[1],
                        "actor": SCHEDULER_ACTOR,
                        "details": json.dumps({"delivery_ids": deliveries.get(oid, [])}),
                    }
                    for oid in sorted(fresh)
                ],
            )
        return len(rows)

    def update_gauge(self, today: date | None = None) -> dict[tuple[str, str], int]:
        """Set ``kti_obligations`` from the database; returns the counts."""
        today = today or to_helsinki_date(self.clock())
        o = obligations_t.c
        overdue = (o.due < today).label("overdue")
        counts = {(t, s): 0 for t in TYPES for s in ("open", "overdue")}
        with self.store._read() as conn:
            for row in conn.execute(
                sa.select(o.type, overdue, sa.func.count())
                .where(o.status.in_(ACTIVE))
                .group_by(o.type, overdue)
            ):
                counts[(row[0], "overdue" if row[1] else "open")] = int(row[2])
        for (otype, state), n in counts.items():
            OBLIGATIONS.labels(type=otype, state=state).set(n)
        return counts


_NOTICE_FIELDS = ("type", "request_type", "status", "due", "received", "reference", "system",
                  "rule", "data_categories")


def _notice(row: Any, today: date) -> dict[str, Any]:
    """The reminder's data: the obligation as the API shows it, without its history; like the
    API, it never holds a subject id (staff find the case by its reference)."""
    item = to_dict(row, today)
    return {"obligation_id": item["id"], **{k: item[k] for k in _NOTICE_FIELDS}}
