"""Reading the obligations register: lists, one obligation with its proof, the DPO's CSV.

Shapes are CONTRACT section 8's: never a clear subject id (staff search by their own ``reference``
or by a subject id the API hashes first). ``overdue`` is computed against the caller's "today"
(the register's clock), true only for an open or extended obligation whose due date has passed.
Lists run soonest due first, ties by id, with a keyset cursor on (due, id): a page costs the same
at the millionth row as at the first, and rows opened meanwhile never shift a page.
"""

from __future__ import annotations

import base64
import binascii
import csv
import io
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from kti_policy.errors import NotFound, RequestError
from kti_policy.store.tables import _iso, deliveries_t

from .tables import ACTIVE, STATUSES, history_t, obligations_t

MAX_LIMIT = 1000
DEFAULT_LIMIT = 100
CSV_COLUMNS = (
    "id", "type", "request_type", "status", "overdue", "due", "received", "reference", "system",
    "rule", "data_categories", "extension_notice_by", "retain_until", "closed_at",
)
FILTERS = ("status", "overdue", "type", "due_before", "reference", "subject_key", "system",
           "request_type")


def _bad(name: str, message: str, value: Any = None) -> RequestError:
    details: dict[str, Any] = {"field": name}
    if value is not None:
        details["value"] = value
    return RequestError(f"{name}: {message}", details)


@dataclass(frozen=True)
class Query:
    """Validated filters (combined with AND), page size and cursor."""

    status: str | None = None
    overdue: bool | None = None
    type: str | None = None
    due_before: date | None = None
    reference: str | None = None
    subject_key: str | None = None
    system: str | None = None
    request_type: str | None = None
    limit: int = DEFAULT_LIMIT
    after: tuple[date, int] | None = None

    @classmethod
    def parse(cls, args: Mapping[str, str], subject_key: Any = None) -> Query:
        """From query-string arguments; ``subject_key`` hashes a given ``subject_id``."""
        known = set(FILTERS) - {"subject_key"} | {"subject_id", "limit", "cursor"}
        for name in args:
            if name not in known:
                raise _bad(name, f"unknown parameter (known: {', '.join(sorted(known))})")
        status = args.get("status")
        if status is not None and status not in STATUSES:
            hint = " (for overdue ones use overdue=true)" if status == "overdue" else ""
            raise _bad("status", f"must be one of {', '.join(STATUSES)}{hint}", status)
        overdue: bool | None = None
        if "overdue" in args:
            if args["overdue"] not in ("true", "false"):
                raise _bad("overdue", "must be true or false", args["overdue"])
            overdue = args["overdue"] == "true"
        due_before = None
        if "due_before" in args:
            try:
                due_before = date.fromisoformat(args["due_before"])
            except ValueError:
                raise _bad("due_before", "must be a date YYYY-MM-DD", args["due_before"]) from None
        try:
            limit = int(args.get("limit", DEFAULT_LIMIT))
        except ValueError:
            raise _bad("limit", f"must be a whole number 1-{MAX_LIMIT}", args["limit"]) from None
        if not 1 <= limit <= MAX_LIMIT:
            raise _bad("limit", f"must be a whole number 1-{MAX_LIMIT}", limit)
        after = _decode_cursor(args["cursor"]) if "cursor" in args else None
        sid = args.get("subject_id")
        return cls(
            status=status,
            overdue=overdue,
            type=args.get("type"),
            due_before=due_before,
            reference=args.get("reference"),
            subject_key=subject_key(sid) if sid is not None and subject_key else None,
            system=args.get("system"),
            request_type=args.get("request_type"),
            limit=limit,
            after=after,
        )


def _encode_cursor(due: date, oid: int) -> str:
    return base64.urlsafe_b64encode(f"{due.isoformat()}|{oid}".encode()).decode().rstrip("=")


def _decode_cursor(text: str) -> tuple[date, int]:
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)).decode()
        day, oid = raw.split("|")
        return date.fromisoformat(day), int(oid)
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise _bad("cursor", "not a cursor this service gave out (pass next_cursor as is)") from None


def _where(q: Query, today: date) -> list[Any]:
    o = obligations_t.c
    conds: list[Any] = []
    if q.status is not None:
        conds.append(o.status == q.status)
    if q.overdue is True:
        conds += [o.status.in_(ACTIVE), o.due < today]
    elif q.overdue is False:
        conds.append(sa.or_(o.status.not_in(ACTIVE), o.due >= today))
    for name in ("type", "reference", "subject_key", "system", "request_type"):
        value = getattr(q, name)
        if value is not None:
            conds.append(getattr(o, name) == value)
    if q.due_before is not None:
        conds.append(o.due < q.due_before)
    if q.after is not None:
        due, oid = q.after
        conds.append(sa.or_(o.due > due, sa.and_(o.due == due, o.id > oid)))
    return conds


def to_dict(row: Any, today: date, history: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """One obligation as CONTRACT section 8 shows it (no subject key either: staff need none)."""
    out: dict[str, Any] = {
        "id": row.id,
        "type": row.type,
        "request_type": row.request_type,
        "status": row.status,
        "overdue": row.status in ACTIVE and row.due < today,
        "due": row.due.isoformat(),
        "received": row.received.isoformat(),
        "reference": row.reference,
        "system": row.system,
        "rule": row.rule,
        "data_categories": json.loads(row.data_categories),
        "case_id": row.case_id,
        "identity_verified": row.identity_verified,
        "original_due": row.original_due.isoformat() if row.original_due else None,
        "extension_notice_by": (
            row.extension_notice_by.isoformat() if row.extension_notice_by else None
        ),
        "retain_until": row.retain_until.isoformat() if row.retain_until else None,
        "created_at": _iso(row.created_at),
        "closed_at": _iso(row.closed_at),
    }
    if history is not None:
        out["history"] = history
    return out


def _histories(conn: Connection, ids: Iterable[int]) -> dict[int, list[dict[str, Any]]]:
    ids = list(ids)
    out: dict[int, list[dict[str, Any]]] = {i: [] for i in ids}
    if not ids:
        return out
    h = history_t.c
    rows = conn.execute(
        sa.select(history_t).where(h.obligation_id.in_(ids)).order_by(h.obligation_id, h.id)
    )
    for r in rows:
        out[r.obligation_id].append(
            {"at": _iso(r.at), "what": r.what, "by": r.actor, **json.loads(r.details)}
        )
    return out


def list_page(conn: Connection, q: Query, today: date) -> dict[str, Any]:
    """``{"items": [...], "next_cursor": str | None}``, soonest due first."""
    o = obligations_t.c
    rows = list(
        conn.execute(
            sa.select(obligations_t)
            .where(*_where(q, today))
            .order_by(o.due, o.id)
            .limit(q.limit + 1)
        )
    )
    more = len(rows) > q.limit
    rows = rows[: q.limit]
    hist = _histories(conn, (r.id for r in rows))
    items = [to_dict(r, today, hist[r.id]) for r in rows]
    cursor = _encode_cursor(rows[-1].due, rows[-1].id) if more else None
    return {"items": items, "next_cursor": cursor}


def detail(conn: Connection, oid: int, today: date) -> dict[str, Any]:
    """One obligation with its history and the webhook deliveries that went out for it."""
    row = conn.execute(sa.select(obligations_t).where(obligations_t.c.id == oid)).first()
    if row is None:
        raise NotFound(f"no obligation {oid}", {"id": oid})
    out = to_dict(row, today, _histories(conn, [oid])[oid])
    d = deliveries_t.c
    sent = conn.execute(
        sa.select(d.id, d.subscription_id, d.event_id, d.event_type, d.status, d.attempts,
                  d.created_at, d.delivered_at, d.next_attempt_at)
        .where(d.event_id.like(f"obligation-{oid}-%"))
        .order_by(d.id)
    )
    out["deliveries"] = [
        {
            "id": r.id,
            "subscription_id": r.subscription_id,
            "webhook_id": r.event_id,
            "event_type": r.event_type,
            "status": r.status,
            "attempt_count": r.attempts,
            "created_at": _iso(r.created_at),
            "next_attempt_at": _iso(r.next_attempt_at) if r.status == "pending" else None,
            "delivered_at": _iso(r.delivered_at),
        }
        for r in sent
    ]
    return out


def csv_text(conn: Connection, q: Query, today: date) -> Iterable[str]:
    """The DPO's export: every matching obligation (no paging), one CSV line at a time."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\r\n")

    def flush() -> str:
        text = buf.getvalue()
        buf.seek(0)
        buf.truncate()
        return text

    writer.writerow(CSV_COLUMNS)
    yield flush()
    o = obligations_t.c
    page = Query(**{**q.__dict__, "limit": MAX_LIMIT, "after": None})
    while True:
        rows = list(
            conn.execute(
                sa.select(obligations_t).where(*_where(page, today)).order_by(o.due, o.id)
                .limit(MAX_LIMIT)
            )
        )
        for r in rows:
            item = to_dict(r, today)
            item["data_categories"] = " ".join(item["data_categories"])
            item["overdue"] = "true" if item["overdue"] else "false"
            writer.writerow([_csv_safe(item.get(c)) for c in CSV_COLUMNS])
        yield flush()
        if len(rows) < MAX_LIMIT:
            return
        page = Query(**{**page.__dict__, "after": (rows[-1].due, rows[-1].id)})


def _csv_safe(value: Any) -> str:
    """Text a spreadsheet will not run as a formula (a reference is caller-supplied)."""
    text = "" if value is None else str(value)
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text
