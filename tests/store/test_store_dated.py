"""Store with time: dated facts through the store, new event types, as-of reads on both backends."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from kti_policy.errors import RequestError, UnknownVocabularyId
from kti_policy.facts.fold import SubjectFacts

S = "cust-2024"


def ev(i: int, type_: str, at: str, subject: str = S, **data: Any) -> dict[str, Any]:
    return {"id": f"d-{i}", "type": type_, "subject_id": subject, "occurred_at": at, "data": data}


HISTORY = [
    ev(1, "relationship.started", "2026-01-10T10:00:00Z", kind="consumer"),
    ev(2, "consent.granted", "2026-01-11T10:00:00Z", purpose="direct_marketing"),
    ev(3, "restriction.registered", "2026-02-01T10:00:00Z"),
    ev(4, "consent.withdrawn", "2026-03-01T10:00:00Z", purpose="direct_marketing"),
    ev(5, "restriction.lifted", "2026-03-02T10:00:00Z"),
    ev(6, "relationship.ended", "2026-04-01T10:00:00Z"),
    ev(7, "erasure.requested", "2026-04-02T10:00:00Z"),
]


def t(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def test_dated_facts_and_the_subject_view(make_store: Any) -> None:
    store = make_store()
    store.record_events(list(reversed(HISTORY)))  # arrival order does not matter
    facts = store.facts_for(S)
    assert facts.kind == "consumer" and facts.relationship == "ended"
    assert facts.relationship_started_at == t("2026-01-10T10:00:00Z")
    assert facts.relationship_ended_at == t("2026-04-01T10:00:00Z")
    assert facts.erasure_requested_at == t("2026-04-02T10:00:00Z")
    assert facts.withdrawn_consents == {"direct_marketing"} and not facts.restricted
    view = store.subject_view(S)
    assert view["kind"] == "consumer" and view["relationship_ended_at"] == "2026-04-01T10:00:00+00:00"
    assert view["erasure_requested_at"] == "2026-04-02T10:00:00+00:00" and view["restricted"] is False
    assert SubjectFacts.from_dict(view) == facts


@pytest.mark.parametrize(
    ("at", "consents", "restricted", "relationship", "erasure"),
    [
        ("2026-01-10T09:59:59Z", set(), False, None, False),
        ("2026-01-10T10:00:00Z", set(), False, "active", False),  # an event at exactly `at` counts
        ("2026-02-15T00:00:00Z", {"direct_marketing"}, True, "active", False),
        ("2026-03-01T10:00:00Z", set(), True, "active", False),
        ("2026-03-03T00:00:00Z", set(), False, "active", False),
        ("2026-04-01T12:00:00Z", set(), False, "ended", False),
        ("2026-05-01T00:00:00Z", set(), False, "ended", True),
    ],
)
def test_facts_as_they_stood(make_store: Any, at: str, consents: set[str], restricted: bool,
                             relationship: str | None, erasure: bool) -> None:
    store = make_store()
    store.record_events(HISTORY)
    store.record_events([ev(9, "consent.granted", "2026-01-11T10:00:00Z", subject="other", purpose="disclosure")])
    got = store.facts_at([(S, t(at)), ("other", t(at)), ("nobody", t(at))])
    f = got[(S, t(at))]
    assert (set(f.consents), f.restricted, f.relationship, f.erasure_requested) == (consents, restricted, relationship, erasure)
    assert got[("nobody", t(at))] == SubjectFacts()
    # the as-of read at a time after every event is the read for now
    assert store.facts_at([(S, datetime(2030, 1, 1, tzinfo=UTC))])[(S, datetime(2030, 1, 1, tzinfo=UTC))] == store.facts_for(S)


def test_r5_through_the_store(make_store: Any) -> None:
    store = make_store()
    store.record_events(HISTORY)
    assert store.facts_for(S).erasure_requested
    store.record_events([ev(8, "relationship.started", "2026-11-01T10:00:00Z", kind="business_contact")])
    facts = store.facts_for(S)
    assert facts.erasure_requested is False and facts.relationship == "active" and facts.kind == "business_contact"
    view = store.subject_view(S)
    assert view["erasure_requested"] is False
    assert [h["type"] for h in view["history"]].count("erasure.requested") == 1  # the history keeps it
    # as it stood before the return, the erasure request applied
    assert store.facts_at([(S, t("2026-10-31T00:00:00Z"))])[(S, t("2026-10-31T00:00:00Z"))].erasure_requested


def test_new_event_data_is_checked(make_store: Any) -> None:
    store = make_store()
    with pytest.raises(UnknownVocabularyId) as exc:
        store.record_events([ev(1, "relationship.started", "2026-01-10T10:00:00Z", kind="alien")])
    assert exc.value.details["field"] == "data.kind"
    with pytest.raises(RequestError, match="data.scope"):
        store.record_events([ev(2, "restriction.registered", "2026-01-10T10:00:00Z", scope="x")])
    plain = store.record_events([ev(3, "relationship.started", "2026-01-10T10:00:00Z")])[0]
    assert plain.event["data"] == {}
