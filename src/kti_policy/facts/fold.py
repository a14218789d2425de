"""Subject facts: what is known about a data subject that changes decisions, and since when.

Facts are derived from recorded events (``fold_events``) and may be extended by facts sent inline with
a decision request (``SubjectFacts.merge_inline``). Inline facts can add restrictions and consents but
never remove a recorded restriction (objection, erasure request, ended relationship, restriction).

Facts are dated: each keeps the time it took effect, because the law counts from them (a month after
the end of the relationship, six years from the end of that year). ``fold_events(events, at=...)``
gives the facts as they stood at ``at`` (only events that had occurred by then), for as-of decisions.

The fold, in ``occurred_at`` order (ties by arrival):
- a consent counts from its grant until its withdrawal; a withdrawal is remembered
  (``withdrawn_consents``) until a new grant, because a withdrawal is a refusal (RULES M2);
- an erasure request withdraws every consent given before it (RULES R2), and stays until
- a ``relationship.started`` later than it: a new relationship (RULES R5); the history keeps the request;
- ``relationship.ended`` ends the relationship; a later ``relationship.started`` begins a new one;
- ``restriction.registered`` / ``restriction.lifted`` (GDPR 18).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

import orjson

from kti_policy.once import once_property


class FactsJSON:
    """A subject's facts in a decision-log line: ``fragment`` is their JSON text, which orjson
    writes into the line as is (``api.jsonresp.dumps_line``); ``facts`` serves any other encoder."""

    __slots__ = ("facts", "fragment")

    def __init__(self, facts: SubjectFacts) -> None:
        self.facts = facts
        self.fragment = orjson.Fragment(orjson.dumps(facts.to_dict()))


# event type -> {data field: vocabulary kind (str) or a Python type} (CONTRACT section 3)
EVENT_TYPES: dict[str, dict[str, Any]] = {
    "consent.granted": {"purpose": "consent_purpose"},
    "consent.withdrawn": {"purpose": "consent_purpose"},
    "objection.registered": {"scope": "objection_scope"},
    "objection.withdrawn": {"scope": "objection_scope"},
    "erasure.requested": {},
    "relationship.started": {"kind": "subject_kind"},
    "relationship.ended": {},
    "access_request.received": {"written": bool, "signed": bool},
    "restriction.registered": {},
    "restriction.lifted": {},
}
# optional data fields and their default (None: left out when not given)
OPTIONAL_DATA: dict[str, Any] = {"written": False, "signed": False, "kind": None}

# what a request or the events can say of the customer relationship
RELATIONSHIPS = ("active", "ended")
RESTRICTIVE_RELATIONSHIP = "ended"
# the subject kind that needs more (consent for electronic marketing) wins over the other
RESTRICTIVE_KIND = "consumer"
DATED = ("relationship_started_at", "relationship_ended_at", "erasure_requested_at", "restricted_at")


@dataclass(frozen=True)
class SubjectFacts:
    consents: frozenset[str] = frozenset()
    objections: frozenset[str] = frozenset()
    relationship: str | None = None  # "active", "ended", or None when nothing is known
    erasure_requested: bool = False
    # received_at of every recorded access request, oldest first
    access_requests: tuple[datetime, ...] = ()
    kind: str | None = None  # subject kind id (consumer, business_contact), None when unknown
    relationship_started_at: datetime | None = None
    relationship_ended_at: datetime | None = None
    erasure_requested_at: datetime | None = None
    restricted: bool = False
    restricted_at: datetime | None = None
    # when each standing consent / objection took effect: ((id, time), ...) sorted by id
    consents_at: tuple[tuple[str, datetime], ...] = ()
    objections_at: tuple[tuple[str, datetime], ...] = ()
    # consent purposes whose latest event was a withdrawal (not granted again since)
    withdrawn_consents: frozenset[str] = frozenset()

    def merge_inline(self, inline: Mapping[str, Any] | None) -> SubjectFacts:
        """Add facts sent with a request; a restrictive recorded fact always survives.

        The inline facts are first read on their own, as recorded events would decide (both dates
        given: the later wins, RULES R5), then joined: every restriction of either side applies.
        """
        if not inline:
            return self
        own = inline_facts(inline)
        out = replace(
            self,
            consents=self.consents | own.consents,
            objections=self.objections | own.objections,
            consents_at=_join_times(self.consents_at, own.consents_at),
            objections_at=_join_times(self.objections_at, own.objections_at),
        )
        if not self.erasure_requested and own.erasure_requested:
            out = replace(out, erasure_requested=True, erasure_requested_at=own.erasure_requested_at)
        if self.relationship != RESTRICTIVE_RELATIONSHIP and own.relationship is not None:
            out = replace(
                out,
                relationship=own.relationship,
                relationship_started_at=own.relationship_started_at or self.relationship_started_at,
                relationship_ended_at=own.relationship_ended_at,
            )
        if not self.restricted and own.restricted:
            out = replace(out, restricted=True, restricted_at=own.restricted_at)
        if own.kind is not None and self.kind != own.kind:
            kinds = {self.kind, own.kind} - {None}
            out = replace(out, kind=RESTRICTIVE_KIND if RESTRICTIVE_KIND in kinds else own.kind)
        return out

    @property
    def last_access_request_at(self) -> datetime | None:
        return self.access_requests[-1] if self.access_requests else None

    def to_dict(self) -> dict[str, Any]:
        """JSON form, as the decision log and ``GET /v1/subjects/<id>`` show it.

        Fresh containers every call, their texts written once per object (``_texts``): the store's
        facts cache hands out the same facts for a subject until its next event, and every
        decision-log line holds them, dates and all (``isoformat`` was most of the cost: store
        facts 2.4 -> 0.9 us from the second call; the first costs about 1 us more)."""
        (consents, objections, access, started, ended, erasure_at, restricted_at,
         consents_at, objections_at, withdrawn) = self._texts
        return {
            "consents": list(consents),
            "objections": list(objections),
            "relationship": self.relationship,
            "erasure_requested": self.erasure_requested,
            "access_requests": list(access),
            "last_access_request_at": access[-1] if access else None,
            "kind": self.kind,
            "relationship_started_at": started,
            "relationship_ended_at": ended,
            "erasure_requested_at": erasure_at,
            "restricted": self.restricted,
            "restricted_at": restricted_at,
            "consents_at": dict(consents_at),
            "objections_at": dict(objections_at),
            "withdrawn_consents": list(withdrawn),
        }

    @once_property
    def sorted_ids(self) -> tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...]]:
        """Consents, withdrawn consents and objections as sorted tuples (the decision context's
        form), once per object: the facts cache hands the same facts to every decision about a
        subject until its next event."""
        return tuple(sorted(self.consents)), tuple(sorted(self.withdrawn_consents)), tuple(sorted(self.objections))

    @once_property
    def log_json(self) -> FactsJSON:
        """``to_dict()`` as JSON text, written once per object, for decision-log lines: the facts
        cache hands out the same facts for a subject until its next event, and they were rebuilt
        and re-encoded for every decision about it."""
        return FactsJSON(self)

    @once_property
    def _texts(self) -> tuple[Any, ...]:
        """The parts of ``to_dict`` that take work, as immutable values (tuples of str): computed
        on the first call, kept with the (frozen) object, never shared as a container."""
        access = self.access_requests
        started, ended = self.relationship_started_at, self.relationship_ended_at
        erasure_at, restricted_at = self.erasure_requested_at, self.restricted_at
        consents, withdrawn, objections = self.sorted_ids
        return (
            consents,
            objections,
            tuple([t.isoformat() for t in access]) if access else (),
            None if started is None else started.isoformat(),
            None if ended is None else ended.isoformat(),
            None if erasure_at is None else erasure_at.isoformat(),
            None if restricted_at is None else restricted_at.isoformat(),
            tuple([(k, t.isoformat()) for k, t in self.consents_at]) if self.consents_at else (),
            tuple([(k, t.isoformat()) for k, t in self.objections_at]) if self.objections_at else (),
            withdrawn,
        )

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None) -> SubjectFacts:
        """Inverse of ``to_dict`` (also reads policy-test ``facts:`` blocks and decision-log lines
        written before facts were dated: a missing field reads as its default)."""
        if not data:
            return cls()
        return cls(
            consents=frozenset(data.get("consents") or ()),
            objections=frozenset(data.get("objections") or ()),
            relationship=data.get("relationship"),
            erasure_requested=bool(data.get("erasure_requested", False)),
            access_requests=tuple(sorted(parse_time(t) for t in (data.get("access_requests") or ()))),
            kind=data.get("kind"),
            relationship_started_at=_opt_time(data.get("relationship_started_at")),
            relationship_ended_at=_opt_time(data.get("relationship_ended_at")),
            erasure_requested_at=_opt_time(data.get("erasure_requested_at")),
            restricted=bool(data.get("restricted", False)),
            restricted_at=_opt_time(data.get("restricted_at")),
            consents_at=_times_of(data.get("consents_at")),
            objections_at=_times_of(data.get("objections_at")),
            withdrawn_consents=frozenset(data.get("withdrawn_consents") or ()),
        )


def inline_facts(inline: Mapping[str, Any]) -> SubjectFacts:
    """Inline facts on their own, decided as recorded events would decide them.

    A date implies its fact (``relationship_ended_at`` alone means ended); with both relationship
    dates the later one wins; an ``erasure_requested_at`` before a given ``relationship_started_at``
    belongs to an earlier relationship (R5). A stated ``relationship: ended`` is never undone by a
    start date, and a relationship stated ``active`` with only an end date is ended (restrictive wins).
    """
    started = _opt_time(inline.get("relationship_started_at"))
    ended = _opt_time(inline.get("relationship_ended_at"))
    stated = inline.get("relationship")
    if started is not None and ended is not None:
        relationship: str | None = "active" if started > ended else "ended"
        if relationship == "active":
            ended = None
    elif ended is not None:
        relationship = "ended"
    elif started is not None:
        relationship = "active"
    else:
        relationship = None
    if stated == RESTRICTIVE_RELATIONSHIP:
        relationship = RESTRICTIVE_RELATIONSHIP
    elif stated is not None and relationship is None:
        relationship = stated
    erasure_at = _opt_time(inline.get("erasure_requested_at"))
    erasure = bool(inline.get("erasure_requested")) or erasure_at is not None
    if erasure and erasure_at is not None and started is not None and started > erasure_at:
        erasure, erasure_at = False, None
    restricted = bool(inline.get("restricted"))
    return SubjectFacts(
        consents=frozenset(inline.get("consents") or ()),
        objections=frozenset(inline.get("objections") or ()),
        relationship=relationship,
        erasure_requested=erasure,
        erasure_requested_at=erasure_at if erasure else None,
        kind=inline.get("kind"),
        relationship_started_at=started,
        relationship_ended_at=ended if relationship == "ended" else None,
        restricted=restricted,
    )


@dataclass(frozen=True)
class FactEvent:
    """The part of a recorded event that facts are derived from."""

    type: str
    occurred_at: datetime
    data: Mapping[str, Any] = field(default_factory=dict)
    seq: int = 0  # arrival order, breaks ties between equal occurred_at


def fold_events(events: Iterable[FactEvent], at: datetime | None = None) -> SubjectFacts:
    """Derive the facts (see the module docstring); with ``at``, as they stood at that instant."""
    consents: dict[str, datetime] = {}
    withdrawn: set[str] = set()
    objections: dict[str, datetime] = {}
    relationship: str | None = None
    started: datetime | None = None
    ended: datetime | None = None
    erasure: datetime | None = None
    restricted: datetime | None = None
    kind: str | None = None
    access: list[datetime] = []
    limit = _utc(at) if at is not None else None
    for ev in sorted(events, key=lambda e: (e.occurred_at, e.seq)):
        t, d, when = ev.type, ev.data, ev.occurred_at
        if limit is not None and _utc(when) > limit:
            break
        if t == "consent.granted":
            consents[d["purpose"]] = when
            withdrawn.discard(d["purpose"])
        elif t == "consent.withdrawn":
            consents.pop(d["purpose"], None)
            withdrawn.add(d["purpose"])
        elif t == "objection.registered":
            objections.setdefault(d["scope"], when)
        elif t == "objection.withdrawn":
            objections.pop(d["scope"], None)
        elif t == "erasure.requested":
            if erasure is None:
                erasure = when
            consents.clear()
        elif t == "relationship.started":
            if erasure is not None or relationship != "active":
                started = when  # R5: after an erasure request this is a new relationship
            erasure = None  # the old request stays in the history, not in the facts
            relationship, ended = "active", None
            kind = d.get("kind") or kind
        elif t == "relationship.ended":
            if relationship != "ended":
                ended = when
            relationship = "ended"
        elif t == "restriction.registered":
            restricted = restricted or when
        elif t == "restriction.lifted":
            restricted = None
        elif t == "access_request.received":
            access.append(when)
    return SubjectFacts(
        consents=frozenset(consents),
        objections=frozenset(objections),
        relationship=relationship,
        erasure_requested=erasure is not None,
        access_requests=tuple(sorted(access)),
        kind=kind,
        relationship_started_at=started,
        relationship_ended_at=ended,
        erasure_requested_at=erasure,
        restricted=restricted is not None,
        restricted_at=restricted,
        consents_at=tuple(sorted(consents.items())),
        objections_at=tuple(sorted(objections.items())),
        withdrawn_consents=frozenset(withdrawn),
    )


def parse_time(value: Any) -> datetime:
    """A datetime or ISO 8601 text as an aware datetime (naive is taken as UTC)."""
    if not isinstance(value, datetime):
        value = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def _opt_time(value: Any) -> datetime | None:
    return None if value is None else parse_time(value)


def _utc(t: datetime) -> datetime:
    return t.replace(tzinfo=UTC) if t.tzinfo is None else t


def _times_of(data: Any) -> tuple[tuple[str, datetime], ...]:
    if not isinstance(data, Mapping):
        return ()
    return tuple(sorted((str(k), parse_time(v)) for k, v in data.items()))


def _join_times(
    a: tuple[tuple[str, datetime], ...], b: tuple[tuple[str, datetime], ...]
) -> tuple[tuple[str, datetime], ...]:
    joined = dict(b)
    joined.update(dict(a))  # a recorded time wins over an inline one
    return tuple(sorted(joined.items()))
