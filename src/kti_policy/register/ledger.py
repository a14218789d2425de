"""The obligations register (CONTRACT section 8): cases and deletion tasks, stored until done.

A decision computes a deadline and forgets it; this module keeps it. ``Register(store)`` hooks into
``Store.record_events`` so that a case or task opens *in the same transaction* as the event that
caused it (``access_request.received``, ``erasure.requested``, ``relationship.ended``) and a repeat of
the event id (which records nothing) opens nothing; ``deletion.confirmed`` closes that system's
announced tasks. ``open_request`` is ``POST /v1/requests``, idempotent on (type, reference).

What it guards against:
- clear subject ids at rest: rows hold the pseudonym key (``subject_key``) and the caller's
  ``reference``; only a ``deletion.due`` webhook body holds the clear id, sealed, until delivered.
  A task whose announcement lies years ahead (R1) gets its outbox row now, due on that date, so
  the clear id never has to be kept anywhere else; closing the task first removes that row.
- lost or doubled proof: every change appends to ``obligation_history`` in the transaction that
  made it (who, what, when, which delivery), and state changes are conditional updates, so two
  staff members completing the same case at once leave one ``completed`` and one 409.
- wall-clock dependence: "today" comes from the injected ``clock`` (tests freeze it).

Reads and the reminder scheduler are in ``register_query.py`` and ``register_scheduler.py``.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError

from kti_policy.errors import EventConflict, KtiError, NotFound, RequestError
from kti_policy.policy.calendar import HELSINKI, to_helsinki_date
from kti_policy.store.tables import deliveries_t, utcnow
from kti_policy.store.validation import MAX_SUBJECT_ID_LEN, parse_time

from .query import detail
from .rules import (
    DEFAULT_PERIODS,
    REQUEST_TYPES,
    RetentionPeriods,
    TaskSpec,
    erasure_tasks,
    extended_due,
    relationship_end_tasks,
    respond_due,
)
from .tables import ACTIVE, STATUSES, history_t, obligations_t

if TYPE_CHECKING:
    from kti_policy.store.bodies import BodySealer
    from kti_policy.store.db import Store, Subscriber
    from kti_policy.store.validation import NewEvent

log = logging.getLogger(__name__)

MAX_REFERENCE = 200
#: events recorded for a ``POST /v1/requests`` (``request:erasure:<hash of the reference>``)
REQUEST_EVENT_PREFIX = "request:"
MAX_TEXT = 2000


# Built once and executed with parameters: building ``.values(...)`` per row cost more than running
# it (bench/register_bench.py, profiled).
_INSERT_OBLIGATION = obligations_t.insert().returning(obligations_t.c.id)
_INSERT_HISTORY = history_t.insert()
_INSERT_DELIVERY = deliveries_t.insert().returning(deliveries_t.c.id)
_CASE_BY_KEY = sa.select(obligations_t.c.id).where(obligations_t.c.case_key == sa.bindparam("k"))


class ObligationConflict(KtiError):
    """The obligation's state forbids the action (HTTP 409): e.g. extending twice or completing a
    refused case."""

    code = "obligation_conflict"


Clock = Callable[[], datetime]


def _bad(name: str, message: str) -> RequestError:
    return RequestError(f"{name}: {message}", {"field": name})


def _text(body: Mapping[str, Any], name: str, *, required: bool, limit: int = MAX_TEXT) -> str | None:
    value = body.get(name)
    if value is None and not required:
        return None
    if not isinstance(value, str) or not value.strip():
        raise _bad(name, "required: a non-empty string")
    if len(value) > limit:
        raise _bad(name, f"at most {limit} characters")
    return value


@dataclass(frozen=True)
class Opened:
    """What ``open_request`` did: the case (as the API shows it) and whether it is new."""

    obligation: dict[str, Any]
    created: bool


class Register:
    """Cases and deletion tasks in the store's database. One per process, thread-safe."""

    def __init__(
        self,
        store: Store,
        *,
        clock: Clock = utcnow,
        periods: RetentionPeriods = DEFAULT_PERIODS,
        request_types: Sequence[str] = REQUEST_TYPES,
    ) -> None:
        self.store = store
        self.clock = clock
        self.periods = periods
        self.request_types = tuple(request_types)
        store.add_event_hook(self._on_event)

    # -- time

    def today(self) -> date:
        return to_helsinki_date(self.clock())

    def subscriptions(self) -> list[Subscriber]:
        return list(self.store.subscriptions)

    # -- opening

    def open_request(self, body: Mapping[str, Any], actor: str) -> Opened:
        """``POST /v1/requests``: validate, then open (or find) the case; erasure opens tasks too."""
        known = ", ".join(self.request_types)
        unknown = sorted(
            set(body) - {"type", "subject_id", "received_at", "reference", "identity_verified"}
        )
        if unknown:
            raise _bad(unknown[0], "unknown field (known: type, subject_id, received_at, "
                       "reference, identity_verified)")
        rtype = body.get("type")
        if rtype not in self.request_types:
            from kti_policy.errors import UnknownVocabularyId

            if not isinstance(rtype, str) or not rtype:
                raise _bad("type", f"required: a request type id ({known})")
            raise UnknownVocabularyId("type", rtype, list(self.request_types))
        subject_id = _text(body, "subject_id", required=True, limit=MAX_SUBJECT_ID_LEN)
        reference = _text(body, "reference", required=True, limit=MAX_REFERENCE)
        if "received_at" not in body:
            raise _bad("received_at", "required: the ISO 8601 time the request was received")
        received_at = parse_time(body["received_at"], "received_at")
        if received_at > self.clock() + timedelta(minutes=5):
            raise _bad("received_at", "is in the future; a request is recorded once received")
        verified = body.get("identity_verified", False)
        if not isinstance(verified, bool):
            raise _bad("identity_verified", "must be true or false")
        assert subject_id is not None and reference is not None
        if rtype == "erasure":
            with self.store._read() as conn:
                existing = self._case_by_key(conn, rtype, reference)
            if existing is None:  # a repeat of the request answers with its case and records nothing
                self._record_erasure_fact(subject_id, reference, body["received_at"])
        for attempt in range(2):
            try:
                with self.store._write() as conn:
                    found = self._case_by_key(conn, rtype, reference)
                    if found is not None:
                        return Opened(self._detail(conn, found), False)
                    case_id, _ = self._open_case(
                        conn, rtype, subject_id, received_at, reference, verified, None, actor,
                        self.clock(),
                    )
                    detail = self._detail(conn, case_id)
                break
            except IntegrityError:  # the same (type, reference) raced in: answer with that one
                if attempt:
                    raise
        self.store._notify_outbox()
        return Opened(detail, True)

    def _record_erasure_fact(self, subject_id: str, reference: str, received_at: Any) -> None:
        """CONTRACT 8: an erasure request through ``POST /v1/requests`` is one like the event, so
        decisions see it (R2, the marketing stop) and subscribers are told: record the
        ``erasure.requested`` event first, its id made of the reference (a repeat is a duplicate,
        not a second event). The register's own hook leaves it alone (``REQUEST_EVENT_PREFIX``):
        the case opened next is keyed by the caller's reference. A failure between the two
        leaves the fact recorded; the caller's retry (same reference) opens the case."""
        event = {"id": _request_event_id("erasure", reference), "type": "erasure.requested",
                 "subject_id": subject_id, "occurred_at": received_at, "data": {}}
        try:
            self.store.record_events([event], batch=False)
        except EventConflict as exc:
            raise ObligationConflict(
                f"reference {reference!r} was used before for an erasure request of another subject "
                "or time; give this request its own reference",
                {"field": "reference"},
            ) from exc

    @staticmethod
    def _case_key(rtype: str, reference: str) -> str:
        return f"{rtype}\x1f{reference}"

    def _case_by_key(self, conn: Connection, rtype: str, reference: str) -> int | None:
        return conn.execute(_CASE_BY_KEY, {"k": self._case_key(rtype, reference)}).scalar()

    def _open_case(
        self,
        conn: Connection,
        rtype: str,
        subject_id: str,
        received_at: datetime,
        reference: str,
        identity_verified: bool,
        source_event_id: str | None,
        actor: str,
        now: datetime,
    ) -> tuple[int, int]:
        """Insert a case (and an erasure's tasks); its id and the outbox rows added."""
        received = to_helsinki_date(received_at)
        due = respond_due(rtype, received, self.periods)
        subject_key = self.store.pseudonymizer.subject_key(subject_id)
        case_id = self._insert(
            conn,
            now,
            actor,
            kind="case",
            type="respond_by",
            request_type=rtype,
            subject_key=subject_key,
            reference=reference,
            case_key=self._case_key(rtype, reference),
            rule="Q1",
            received=received,
            due=due,
            identity_verified=identity_verified,
            source_event_id=source_event_id,
        )
        queued = 0
        if rtype == "erasure":
            specs = erasure_tasks(self.subscriptions(), received, self.periods)
            queued = self._open_tasks(conn, specs, subject_id, subject_key, received, reference,
                                      case_id, source_event_id, actor, now)
        return case_id, queued

    def _insert(self, conn: Connection, now: datetime, actor: str, **values: Any) -> int:
        row = dict.fromkeys(c.name for c in obligations_t.c if c.name != "id")
        row.update(data_categories="[]", status="open", created_at=now)
        row.update(values)
        oid = int(conn.execute(_INSERT_OBLIGATION, row).scalar_one())
        details = {"due": values["due"].isoformat(), "rule": values["rule"]}
        if values.get("source_event_id"):
            details["event_id"] = values["source_event_id"]
        self._history(conn, oid, now, "opened", actor, details)
        return oid

    @staticmethod
    def _history(
        conn: Connection, oid: int, at: datetime, what: str, actor: str, details: Mapping[str, Any]
    ) -> None:
        conn.execute(
            _INSERT_HISTORY,
            {"obligation_id": oid, "at": at, "what": what, "actor": actor[:200],
             "details": json.dumps(dict(details), sort_keys=True)},
        )

    def _open_tasks(
        self,
        conn: Connection,
        specs: Sequence[TaskSpec],
        subject_id: str,
        subject_key: str,
        received: date,
        reference: str,
        case_id: int | None,
        source_event_id: str | None,
        actor: str,
        now: datetime,
    ) -> int:
        subs = {s.id: s for s in self.subscriptions()}
        for spec in specs:
            oid = self._insert(
                conn,
                now,
                actor,
                kind="task",
                type="delete_by",
                request_type="erasure" if spec.rule == "R2" else None,
                subject_key=subject_key,
                reference=reference,
                system=spec.system,
                case_id=case_id,
                rule=spec.rule,
                received=received,
                due=spec.due,
                retain_until=spec.retain_until,
                data_categories=json.dumps(list(spec.data_categories)),
                source_event_id=source_event_id,
            )
            # R1 data is announced the day after its retention ends (it is kept through
            # retain_until itself), every other task at once
            send_at = None if spec.retain_until is None else _start_of(spec.retain_until + timedelta(days=1))
            data = {
                "subject_id": subject_id,
                "obligation_id": oid,
                "due": spec.due.isoformat(),
                "data_categories": list(spec.data_categories),
                "system": spec.system,
                "reference": reference,
                "rule": spec.rule,
            }
            if spec.retain_until is not None:
                data["retain_until"] = spec.retain_until.isoformat()
            delivery_id = enqueue(conn, self.store.sealer, subs[spec.system], oid, "deletion.due", data,
                                  now, send_at)
            self._history(conn, oid, now, "deletion_due_queued", actor,
                          {"delivery_id": delivery_id, "system": spec.system,
                           "send_at": _iso(send_at) if send_at else "now"})
        return len(specs)

    # -- events (called by Store.record_events inside its transaction)

    def _on_event(self, conn: Connection, ev: NewEvent, seq: int, now: datetime) -> int:
        """Open or close what ``ev`` causes; returns the number of outbox rows it added."""
        actor = f"event:{ev.event_id}"
        if ev.type in ("access_request.received", "erasure.requested"):
            if ev.event_id.startswith(REQUEST_EVENT_PREFIX):
                return 0  # the fact of a POST /v1/requests: its case is opened by open_request
            rtype = "access" if ev.type == "access_request.received" else "erasure"
            if self._case_by_key(conn, rtype, ev.event_id) is not None:
                return 0
            return self._open_case(conn, rtype, ev.subject_id, ev.occurred_at, ev.event_id,
                                   False, ev.event_id, actor, now)[1]
        if ev.type == "relationship.ended":
            ended = to_helsinki_date(ev.occurred_at)
            specs = relationship_end_tasks(self.subscriptions(), ended, self.periods)
            key = self.store.pseudonymizer.subject_key(ev.subject_id)
            return self._open_tasks(conn, specs, ev.subject_id, key, ended, ev.event_id, None,
                                    ev.event_id, actor, now)
        if ev.type == "deletion.confirmed":
            self._confirm(conn, ev, now, actor)
        return 0

    def _confirm(self, conn: Connection, ev: NewEvent, now: datetime, actor: str) -> None:
        """Close the system's open tasks for the subject whose deletion is due now (announced);
        R1 tasks still under retention stay open. No such task: the event alone is the record."""
        o = obligations_t.c
        key = self.store.pseudonymizer.subject_key(ev.subject_id)
        today = to_helsinki_date(ev.occurred_at)
        rows = conn.execute(
            sa.select(o.id, o.retain_until).where(
                o.subject_key == key,
                o.system == ev.data["system"],
                o.kind == "task",
                o.status.in_(ACTIVE),
            )
        ).all()
        for row in rows:
            if row.retain_until is not None and row.retain_until >= today:
                continue  # still kept on retain_until itself: deletable from the day after
            self._transition(conn, row.id, ACTIVE, {"status": "completed", "closed_at": now},
                             "completed", actor, {"event_id": ev.event_id}, now)

    # -- transitions

    def _transition(
        self,
        conn: Connection,
        oid: int,
        allowed: Sequence[str],
        values: Mapping[str, Any],
        what: str,
        actor: str,
        details: Mapping[str, Any],
        now: datetime,
    ) -> bool:
        o = obligations_t.c
        changed = conn.execute(
            obligations_t.update().where(o.id == oid, o.status.in_(allowed)).values(**values)
        ).rowcount
        if changed:
            self._history(conn, oid, now, what, actor, details)
            if values.get("status") in ("completed", "refused"):
                self._drop_unsent(conn, oid, now)
        return bool(changed)

    @staticmethod
    def _drop_unsent(conn: Connection, oid: int, now: datetime) -> None:
        """A closed task's deletion.due not yet tried (an R1 one years ahead) is not sent."""
        d = deliveries_t.c
        conn.execute(
            deliveries_t.delete().where(
                d.event_id == f"obligation-{oid}-deletion_due",
                d.status == "pending",
                d.attempts == 0,
                d.next_attempt_at > now,
            )
        )

    def _load(self, conn: Connection, oid: int) -> Any:
        row = conn.execute(sa.select(obligations_t).where(obligations_t.c.id == oid)).first()
        if row is None:
            raise NotFound(f"no obligation {oid}", {"id": oid})
        return row

    def _conflict(self, row: Any, action: str, why: str) -> ObligationConflict:
        return ObligationConflict(
            f"obligation {row.id} is {row.status}: cannot {action} ({why})",
            {"id": row.id, "status": row.status, "action": action},
        )

    def extend(self, oid: int, body: Mapping[str, Any], actor: str) -> dict[str, Any]:
        """Q2: once, for a rights request, on or before its due date: due moves to three months
        after receipt; the extension notice is due by the first deadline."""
        reason = _text(body, "reason", required=True)
        now, today = self.clock(), self.today()
        with self.store._write() as conn:
            row = self._load(conn, oid)
            if row.kind != "case" or row.request_type == "inquiry":
                raise self._conflict(row, "extend", "only a rights request can be extended")
            if row.status != "open":
                raise self._conflict(row, "extend", "a request can be extended once, while open")
            if today > row.due:
                raise self._conflict(row, "extend", f"its due date {row.due} has passed")
            new_due = extended_due(row.received, self.periods)
            details = {"reason": reason, "from": row.due.isoformat(), "to": new_due.isoformat(),
                       "extension_notice_by": row.due.isoformat(), "rule": "Q2"}
            values = {"status": "extended", "due": new_due, "original_due": row.due,
                      "extension_notice_by": row.due, "due_soon_sent_at": None}
            if not self._transition(conn, oid, ("open",), values, "extended", actor, details, now):
                raise self._conflict(self._load(conn, oid), "extend", "changed meanwhile")
            return self._detail(conn, oid)

    def complete(self, oid: int, body: Mapping[str, Any], actor: str) -> dict[str, Any]:
        note = _text(body, "note", required=False)
        return self._close(oid, "completed", {"note": note} if note else {}, actor, "complete")

    def refuse(self, oid: int, body: Mapping[str, Any], actor: str) -> dict[str, Any]:
        reason = _text(body, "reason", required=True)
        return self._close(oid, "refused", {"reason": reason}, actor, "refuse")

    def _close(
        self, oid: int, status: str, details: dict[str, Any], actor: str, action: str
    ) -> dict[str, Any]:
        now = self.clock()
        with self.store._write() as conn:
            row = self._load(conn, oid)
            if row.status not in ACTIVE:
                raise self._conflict(row, action, "it is already closed")
            values = {"status": status, "closed_at": now}
            if not self._transition(conn, oid, ACTIVE, values, status, actor, details, now):
                raise self._conflict(self._load(conn, oid), action, "changed meanwhile")
            return self._detail(conn, oid)

    def _detail(self, conn: Connection, oid: int) -> dict[str, Any]:
        return detail(conn, oid, self.today())


def enqueue(
    conn: Connection,
    sealer: BodySealer,
    sub: Subscriber,
    oid: int,
    event_type: str,
    data: Mapping[str, Any],
    now: datetime,
    send_at: datetime | None = None,
) -> int:
    """One outbox row for a register webhook (``webhook-id`` = ``obligation-<id>-<what>``), body
    sealed like every outbox body; the worker sends it as it sends events' webhooks."""
    body = json.dumps(
        {"type": event_type, "timestamp": _iso(now), "data": dict(data)}, separators=(",", ":")
    ).encode()
    row = dict.fromkeys(c.name for c in deliveries_t.c if c.name != "id")
    row.update(
        subscription_id=sub.id,
        event_seq=None,  # no recorded event: the register itself speaks
        event_id=f"obligation-{oid}-{event_type.replace('.', '_')}",
        event_type=event_type,
        status="pending",
        body=sealer.seal(body),
        attempts=0,
        # the outbox runs on the real clock (the register's may be frozen in tests)
        next_attempt_at=send_at or utcnow(),
        created_at=utcnow(),
    )
    return int(conn.execute(_INSERT_DELIVERY, row).scalar_one())


def _start_of(day: date) -> datetime:
    """Midnight at the start of ``day`` in Helsinki, as UTC."""
    return datetime.combine(day, time(0), tzinfo=HELSINKI).astimezone(UTC)


def _iso(value: datetime) -> str:
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


__all__ = ["ACTIVE", "STATUSES", "ObligationConflict", "Opened", "Register", "enqueue",
           "history_t", "obligations_t"]


def _request_event_id(rtype: str, reference: str) -> str:
    """The id of the event a request records: the reference is the caller's ticket number and
    may hold anything, so the id holds its hash (event ids are ``[A-Za-z0-9_:-]``)."""
    return f"{REQUEST_EVENT_PREFIX}{rtype}:{hashlib.sha256(reference.encode()).hexdigest()[:40]}"
