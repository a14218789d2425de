"""Subject facts: what is known about a data subject that changes decisions.

Facts are derived from recorded events (``fold_events``) and may be extended by facts sent inline with
a decision request (``SubjectFacts.merge_inline``). Inline facts can add restrictions and consents but
never remove a recorded restriction (objection, erasure request, ended relationship).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

# what a request or the events can say of the customer relationship
RELATIONSHIPS = ("active", "ended")
RESTRICTIVE_RELATIONSHIP = "ended"


@dataclass(frozen=True)
class SubjectFacts:
    consents: frozenset[str] = frozenset()
    objections: frozenset[str] = frozenset()
    relationship: str | None = None  # "active", "ended", or None when nothing is known
    erasure_requested: bool = False
    # received_at of every recorded access request, oldest first (for the access fee)
    access_requests: tuple[datetime, ...] = ()

    def merge_inline(self, inline: Mapping[str, Any] | None) -> SubjectFacts:
        """Add facts sent with a request; a restrictive recorded fact always survives."""
        if not inline:
            return self
        relationship = self.relationship
        inline_rel = inline.get("relationship")
        if inline_rel is not None and relationship != RESTRICTIVE_RELATIONSHIP:
            relationship = inline_rel
        return replace(
            self,
            consents=self.consents | frozenset(inline.get("consents") or ()),
            objections=self.objections | frozenset(inline.get("objections") or ()),
            relationship=relationship,
            erasure_requested=self.erasure_requested or bool(inline.get("erasure_requested")),
        )

    @property
    def last_access_request_at(self) -> datetime | None:
        return self.access_requests[-1] if self.access_requests else None

    def to_dict(self) -> dict[str, Any]:
        """JSON form, as the decision log and ``GET /v1/subjects/<id>`` show it."""
        last = self.last_access_request_at
        return {
            "consents": sorted(self.consents),
            "objections": sorted(self.objections),
            "relationship": self.relationship,
            "erasure_requested": self.erasure_requested,
            "access_requests": [t.isoformat() for t in self.access_requests],
            "last_access_request_at": last.isoformat() if last else None,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None) -> SubjectFacts:
        """Inverse of ``to_dict`` (also reads policy-test ``facts:`` blocks)."""
        if not data:
            return cls()
        return cls(
            consents=frozenset(data.get("consents") or ()),
            objections=frozenset(data.get("objections") or ()),
            relationship=data.get("relationship"),
            erasure_requested=bool(data.get("erasure_requested", False)),
            access_requests=tuple(
                sorted(_parse_time(t) for t in (data.get("access_requests") or ()))
            ),
        )


@dataclass(frozen=True)
class FactEvent:
    """The part of a recorded event that facts are derived from."""

    type: str
    occurred_at: datetime
    data: Mapping[str, Any] = field(default_factory=dict)
    seq: int = 0  # arrival order, breaks ties between equal occurred_at


def fold_events(events: Iterable[FactEvent]) -> SubjectFacts:
    """Derive current facts: later ``occurred_at`` wins, ties by arrival; erasure is never undone."""
    consents: set[str] = set()
    objections: set[str] = set()
    relationship: str | None = None
    erasure = False
    access: list[datetime] = []
    for ev in sorted(events, key=lambda e: (e.occurred_at, e.seq)):
        t, d = ev.type, ev.data
        if t == "consent.granted":
            consents.add(d["purpose"])
        elif t == "consent.withdrawn":
            consents.discard(d["purpose"])
        elif t == "objection.registered":
            objections.add(d["scope"])
        elif t == "objection.withdrawn":
            objections.discard(d["scope"])
        elif t == "erasure.requested":
            erasure = True
        elif t == "relationship.started":
            relationship = "active"
        elif t == "relationship.ended":
            relationship = "ended"
        elif t == "access_request.received":
            access.append(ev.occurred_at)
    return SubjectFacts(
        consents=frozenset(consents),
        objections=frozenset(objections),
        relationship=relationship,
        erasure_requested=erasure,
        access_requests=tuple(sorted(access)),
    )


def _parse_time(value: Any) -> datetime:
    if isinstance(value, datetime):
        return value
    return datetime.fromisoformat(str(value).replace("Z", "+00:00"))
