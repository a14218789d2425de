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
