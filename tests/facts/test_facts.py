"""facts: folding events (in any arrival order) and merging inline facts without losing restrictions."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kti_policy.facts.fold import FactEvent, SubjectFacts, fold_events

T0 = datetime(2026, 1, 1, 9, 0, tzinfo=UTC)


def ev(kind: str, minutes: int, seq: int = 0, **data: Any) -> FactEvent:
    return FactEvent(kind, T0 + timedelta(minutes=minutes), data, seq)


@pytest.mark.parametrize(
    ("events", "expected"),
    [
        ([], SubjectFacts()),
        ([ev("consent.granted", 1, purpose="disclosure"), ev("consent.withdrawn", 2, purpose="disclosure")],
         SubjectFacts()),
        # arrival order reversed: occurred_at decides
        ([ev("consent.withdrawn", 2, purpose="disclosure"), ev("consent.granted", 1, purpose="disclosure")],
         SubjectFacts()),
        ([ev("consent.withdrawn", 1, purpose="disclosure"), ev("consent.granted", 2, purpose="disclosure")],
         SubjectFacts(consents=frozenset({"disclosure"}))),
        ([ev("objection.withdrawn", 5, scope="marketing"), ev("objection.registered", 3, scope="marketing"),
          ev("objection.registered", 4, scope="disclosure")],
         SubjectFacts(objections=frozenset({"disclosure"}))),
        ([ev("relationship.ended", 9), ev("relationship.started", 1)], SubjectFacts(relationship="ended")),
        ([ev("relationship.started", 9), ev("relationship.ended", 1)], SubjectFacts(relationship="active")),
        # equal times: arrival sequence breaks the tie
        ([ev("relationship.ended", 1, seq=2), ev("relationship.started", 1, seq=1)], SubjectFacts(relationship="ended")),
        # RULES R5: a relationship started after an erasure request is a new one
        ([ev("erasure.requested", 1), ev("relationship.started", 5), ev("consent.granted", 6, purpose="x")],
         SubjectFacts(consents=frozenset({"x"}), relationship="active", erasure_requested=False)),
        ([ev("relationship.started", 0), ev("erasure.requested", 1), ev("consent.granted", 6, purpose="x")],
         SubjectFacts(consents=frozenset({"x"}), relationship="active", erasure_requested=True)),
        ([ev("access_request.received", 10, written=True), ev("access_request.received", 2)],
         SubjectFacts(access_requests=(T0 + timedelta(minutes=2), T0 + timedelta(minutes=10)))),
    ],
)
def test_fold_events(events: list[FactEvent], expected: SubjectFacts) -> None:
    assert undated(fold_events(events)) == expected


def undated(f: SubjectFacts) -> SubjectFacts:
    """The facts without their dates (``tests/facts/test_facts_dated.py`` checks those)."""
    return SubjectFacts(f.consents, f.objections, f.relationship, f.erasure_requested, f.access_requests)


HISTORY = [
    ev("relationship.started", 0, 1), ev("consent.granted", 1, 2, purpose="disclosure"),
    ev("objection.registered", 2, 3, scope="marketing"), ev("access_request.received", 3, 4),
    ev("consent.withdrawn", 4, 5, purpose="disclosure"), ev("erasure.requested", 5, 6),
    ev("relationship.ended", 6, 7), ev("objection.withdrawn", 7, 8, scope="marketing"),
]


@settings(max_examples=50, derandomize=True, deadline=None)
@given(st.permutations(HISTORY))
def test_fold_events_ignores_arrival_order(events: list[FactEvent]) -> None:
    assert fold_events(events) == fold_events(HISTORY)


def test_last_access_request_and_dict_round_trip() -> None:
    facts = fold_events(HISTORY[:4])
    assert facts.last_access_request_at == T0 + timedelta(minutes=3)
    assert SubjectFacts.from_dict(facts.to_dict()) == facts
    assert SubjectFacts.from_dict(None) == SubjectFacts()
    assert SubjectFacts.from_dict({"access_requests": ["2026-01-10T09:00:00Z"]}).access_requests == (
        datetime(2026, 1, 10, 9, 0, tzinfo=UTC),)


recorded_facts = st.builds(
    SubjectFacts,
    consents=st.frozensets(st.sampled_from(["disclosure", "direct_marketing"])),
    objections=st.frozensets(st.sampled_from(["marketing", "disclosure", "direct_marketing"])),
    relationship=st.sampled_from([None, "active", "ended"]),
    erasure_requested=st.booleans(),
)
inline_facts = st.one_of(
    st.none(),
    st.fixed_dictionaries({}, optional={
        "consents": st.lists(st.sampled_from(["disclosure", "partner_marketing"])),
        "objections": st.lists(st.sampled_from(["marketing", "disclosure"])),
        "relationship": st.sampled_from(["active", "ended"]),
        "erasure_requested": st.booleans(),
    }),
)


@settings(max_examples=300, derandomize=True, deadline=None)
@given(recorded=recorded_facts, inline=inline_facts)
def test_merge_inline_never_removes_a_restrictive_recorded_fact(recorded: SubjectFacts, inline: dict[str, Any] | None) -> None:
    merged = recorded.merge_inline(inline)
    assert merged.objections >= recorded.objections
    assert merged.consents >= recorded.consents
    assert recorded.erasure_requested <= merged.erasure_requested
    if recorded.relationship == "ended":
        assert merged.relationship == "ended"
    if inline:
        assert merged.objections >= set(inline.get("objections") or ())
        assert merged.consents >= set(inline.get("consents") or ())
        if inline.get("erasure_requested"):
            assert merged.erasure_requested
        if inline.get("relationship") == "ended":
            assert merged.relationship == "ended"
        elif inline.get("relationship") == "active" and recorded.relationship != "ended":
            assert merged.relationship == "active"
    assert merged.access_requests == recorded.access_requests


@pytest.mark.parametrize(
    ("recorded", "inline", "expected"),
    [
        (SubjectFacts(relationship="ended"), {"relationship": "active"}, SubjectFacts(relationship="ended")),
        (SubjectFacts(erasure_requested=True), {"erasure_requested": False}, SubjectFacts(erasure_requested=True)),
        (SubjectFacts(objections=frozenset({"marketing"})), {"objections": []},
         SubjectFacts(objections=frozenset({"marketing"}))),
        (SubjectFacts(), {"relationship": "active", "consents": ["disclosure"]},
         SubjectFacts(consents=frozenset({"disclosure"}), relationship="active")),
        (SubjectFacts(relationship="active"), {"relationship": "ended"}, SubjectFacts(relationship="ended")),
        (SubjectFacts(consents=frozenset({"x"})), None, SubjectFacts(consents=frozenset({"x"}))),
    ],
)
def test_merge_inline_examples(recorded: SubjectFacts, inline: dict[str, Any] | None, expected: SubjectFacts) -> None:
    assert recorded.merge_inline(inline) == expected


def _reference_dict(f: SubjectFacts) -> dict[str, Any]:
    """``SubjectFacts.to_dict`` as first written, one call per field: the fast form must match it."""
    def iso(t: datetime | None) -> str | None:
        return t.isoformat() if t is not None else None

    return {
        "consents": sorted(f.consents), "objections": sorted(f.objections), "relationship": f.relationship,
        "erasure_requested": f.erasure_requested, "access_requests": [t.isoformat() for t in f.access_requests],
        "last_access_request_at": iso(f.last_access_request_at), "kind": f.kind,
        "relationship_started_at": iso(f.relationship_started_at), "relationship_ended_at": iso(f.relationship_ended_at),
        "erasure_requested_at": iso(f.erasure_requested_at), "restricted": f.restricted,
        "restricted_at": iso(f.restricted_at), "consents_at": {k: t.isoformat() for k, t in f.consents_at},
        "objections_at": {k: t.isoformat() for k, t in f.objections_at},
        "withdrawn_consents": sorted(f.withdrawn_consents),
    }


_times = st.datetimes(timezones=st.sampled_from([UTC, None]))
_ids = st.sampled_from(["disclosure", "direct_marketing", "marketing", "b", "a"])
any_facts = st.builds(
    SubjectFacts,
    consents=st.frozensets(_ids), objections=st.frozensets(_ids),
    relationship=st.sampled_from([None, "active", "ended"]), erasure_requested=st.booleans(),
    access_requests=st.lists(_times, max_size=3).map(tuple), kind=st.sampled_from([None, "consumer"]),
    relationship_started_at=st.none() | _times, relationship_ended_at=st.none() | _times,
    erasure_requested_at=st.none() | _times, restricted=st.booleans(), restricted_at=st.none() | _times,
    consents_at=st.dictionaries(_ids, _times, max_size=2).map(lambda d: tuple(sorted(d.items()))),
    objections_at=st.dictionaries(_ids, _times, max_size=2).map(lambda d: tuple(sorted(d.items()))),
    withdrawn_consents=st.frozensets(_ids),
)


@settings(max_examples=300, derandomize=True, deadline=None)
@given(any_facts)
def test_to_dict_is_the_field_by_field_form(facts: SubjectFacts) -> None:
    assert repr(facts.to_dict()) == repr(_reference_dict(facts))
    assert repr(facts.to_dict()) == repr(_reference_dict(facts))  # from the kept texts


def test_to_dict_answers_fresh_containers_each_call() -> None:
    """The texts are kept with the (frozen) facts; the lists and maps are the caller's own."""
    facts = SubjectFacts(consents=frozenset({"b", "a"}), consents_at=(("a", T0),), access_requests=(T0,))
    first = facts.to_dict()
    first["consents"].append("x")
    first["consents_at"]["x"] = "y"
    first["access_requests"].clear()
    assert repr(facts.to_dict()) == repr(_reference_dict(facts))
    assert facts == SubjectFacts.from_dict(facts.to_dict()) and hash(facts) == hash(SubjectFacts.from_dict(facts.to_dict()))
