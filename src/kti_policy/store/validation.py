"""Incoming events checked against CONTRACT section 3, naming the field of every
problem (``events[i].`` in batches), before anything is written.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from kti_policy.decide.timerange import RANGE_MESSAGE, in_range
from kti_policy.errors import RequestError, UnknownVocabularyId
from kti_policy.facts.fold import EVENT_TYPES as FACT_EVENT_TYPES
from kti_policy.facts.fold import OPTIONAL_DATA

EVENT_ID_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_:\-]{0,127}$")
MAX_SUBJECT_ID_LEN = 256

# Inbound event types: those that carry facts, and the obligations register's deletion.confirmed
# (a system reports a deletion done; no fact; ``str`` is free text, not a vocabulary kind).
EVENT_TYPES: dict[str, dict[str, Any]] = {**FACT_EVENT_TYPES, "deletion.confirmed": {"system": str}}


# optional data fields and their default
_OPTIONAL_DATA = OPTIONAL_DATA

# Used when the caller passes no vocabulary: the ids CONTRACT section 1 requires.
DEFAULT_VOCABULARY: dict[str, frozenset[str]] = {
    "consent_purpose": frozenset({"disclosure", "direct_marketing", "partner_marketing"}),
    "objection_scope": frozenset({"direct_marketing", "marketing", "disclosure"}),
    "subject_kind": frozenset({"consumer", "business_contact"}),
}


@dataclass(frozen=True)
class NewEvent:
    """A validated incoming event (the clear ``subject_id`` lives only here and in outbox bodies)."""

    event_id: str
    type: str
    subject_id: str
    occurred_at: datetime  # aware, UTC
    data: dict[str, Any]


def _bad(field_name: str, message: str, index: int | None) -> RequestError:
    details: dict[str, Any] = {"field": field_name}
    if index is not None:
        details["index"] = index
    return RequestError(f"{field_name}: {message}", details)


# How far ahead of this server's clock an event's occurred_at may be (the sender's clock may run fast).
MAX_FUTURE_SKEW = timedelta(minutes=5)


def parse_time(value: Any, field_name: str, index: int | None = None) -> datetime:
    """ISO 8601 text to an aware UTC datetime; a time without an offset is taken as UTC."""
    if not isinstance(value, str) or not value.strip():
        raise _bad(field_name, "must be an ISO 8601 date-time string", index)
    try:
        parsed = datetime.fromisoformat(value.strip().replace("z", "Z"))
    except ValueError:
        raise _bad(field_name, f"{value!r} is not an ISO 8601 date-time", index) from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    if not in_range(parsed):
        raise _bad(field_name, f"{value!r} {RANGE_MESSAGE}", index)
    return parsed.astimezone(UTC)


def validate_event(
    raw: Any,
    vocabulary: Mapping[str, Collection[str]] | None = None,
    *,
    prefix: str = "",
    index: int | None = None,
    now: datetime | None = None,
) -> NewEvent:
    """Check one event against CONTRACT section 3; raise ``RequestError`` naming the field.

    ``occurred_at`` may not lie more than ``MAX_FUTURE_SKEW`` ahead of ``now``: the later
    ``occurred_at`` wins when facts are folded, so a consent dated in 2030 by a typo would
    outlive every withdrawal recorded until then (a disclosure allowed after the subject said no).
    """
    vocab = DEFAULT_VOCABULARY if vocabulary is None else vocabulary
    where = prefix.rstrip(".") or "event"
    if not isinstance(raw, Mapping):
        raise _bad(where, "must be a JSON object", index)
    unknown = sorted(set(raw) - {"id", "type", "subject_id", "occurred_at", "data"})
    if unknown:
        raise _bad(
            f"{prefix}{unknown[0]}",
            "unknown field (known: id, type, subject_id, occurred_at, data)",
            index,
        )
    event_id = raw.get("id")
    if not isinstance(event_id, str) or not EVENT_ID_RE.match(event_id):
        raise _bad(
            f"{prefix}id",
            "required: 1-128 letters, digits, '_', '-' or ':' (no dots; it becomes the webhook-id)",
            index,
        )
    etype = raw.get("type")
    if not isinstance(etype, str) or etype not in EVENT_TYPES:  # a list is unhashable
        raise _bad(
            f"{prefix}type",
            f"unknown event type {etype!r}; known types: {', '.join(EVENT_TYPES)}",
            index,
        )
    subject_id = raw.get("subject_id")
    if (
        not isinstance(subject_id, str)
        or not subject_id.strip()
        or len(subject_id) > MAX_SUBJECT_ID_LEN
    ):
        raise _bad(
            f"{prefix}subject_id",
            f"required: a non-empty string of at most {MAX_SUBJECT_ID_LEN} characters",
            index,
        )
    if "occurred_at" not in raw:
        raise _bad(f"{prefix}occurred_at", "required", index)
    occurred_at = parse_time(raw["occurred_at"], f"{prefix}occurred_at", index)
    latest = (now or datetime.now(UTC)) + MAX_FUTURE_SKEW
    if occurred_at > latest:
        raise _bad(
            f"{prefix}occurred_at",
            f"{raw['occurred_at']!r} is in the future; an event records what has happened "
            f"(clocks may differ by at most {int(MAX_FUTURE_SKEW.total_seconds() // 60)} minutes)",
            index,
        )
    data_in = raw.get("data")
    if data_in is None:
        data_in = {}
    if not isinstance(data_in, Mapping):
        raise _bad(f"{prefix}data", "must be a JSON object", index)
    spec = EVENT_TYPES[etype]
    extra = sorted(set(data_in) - set(spec))
    if extra:
        known = ", ".join(spec) or "none"
        raise _bad(
            f"{prefix}data.{extra[0]}", f"not a field of {etype} (its fields: {known})", index
        )
    data: dict[str, Any] = {}
    for name, kind in spec.items():
        fname = f"{prefix}data.{name}"
        value = data_in.get(name)
        if kind is bool:
            if value is None and name in _OPTIONAL_DATA:
                value = _OPTIONAL_DATA[name]
            if not isinstance(value, bool):
                raise _bad(fname, "must be true or false", index)
        elif kind is str:
            if not isinstance(value, str) or not value.strip() or len(value) > 128:
                raise _bad(fname, "required: a non-empty string of at most 128 characters", index)
        else:
            if value is None and name in _OPTIONAL_DATA and _OPTIONAL_DATA[name] is None:
                continue  # optional and not given: left out
            if not isinstance(value, str) or not value:
                raise _bad(fname, f"required: a {kind} id", index)
            known_ids = vocab.get(kind) or ()
            if value not in known_ids:
                exc = UnknownVocabularyId(fname, value, sorted(known_ids))
                if index is not None:
                    exc.details["index"] = index
                raise exc
        data[name] = value
    return NewEvent(event_id, etype, subject_id, occurred_at, data)
