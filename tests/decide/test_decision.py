"""decision: combining (forbid overrides, every forbid listed, permits listed, default.deny),
obligations, the response shape, the cache, and failing closed."""

from __future__ import annotations

import os
import re
import uuid
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from conftest import in_a_forked_child

from kti_policy.decide import decision as decision_module
from kti_policy.decide import obligations as obligations_module
from kti_policy.decide.decision import (
    DEFAULT_DENY,
    EVAL_ERROR,
    Decider,
    build_context,
    new_decision_id,
)
from kti_policy.decide.engine import Engine
from kti_policy.decide.operation import Operation, parse_operation
from kti_policy.facts.fold import SubjectFacts
from kti_policy.policy.loader import load_policy_set
from kti_policy.policy.model import PolicySet

CLEAN = Path(__file__).parent.parent / "data" / "clean"
PS: PolicySet = load_policy_set(CLEAN)
NOW = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)
RECEIVED = "2026-03-02T10:00:00+02:00"  # a Monday


@pytest.fixture(scope="module", params=[True, False], ids=["engine", "reference"])
def decider(request: pytest.FixtureRequest) -> Decider:
    return Decider(PS, use_engine=request.param)


def op(**body: Any) -> Operation:
    body.setdefault("subject", {"id": "c-1"})
    if body["subject"] is None:  # store_cookie without a subject
        del body["subject"]
    return parse_operation(body, PS.vocabulary)


AUTHORITY = {"type": "authority", "country": "FI"}
LEGAL = {"type": "legal_obligation"}


@pytest.mark.parametrize(
    ("operation", "facts", "decision", "rules"),
    [
        # permits are listed, in policy order
        (op(operation="disclose", recipient=AUTHORITY, legal_basis=LEGAL,
            subject={"id": "c", "consents": ["disclosure"]}),
         None, "allow", ["disclosure.authority", "disclosure.consent"]),
        # a forbid overrides the permits; only forbids are listed
        (op(operation="disclose", recipient={"country": "FI", "type": "third_party"}, subject={"id": "c", "consents": ["disclosure"]}),
         SubjectFacts(objections=frozenset({"disclosure"})), "deny", ["disclosure.objected"]),
        # every matching forbid is listed
        (op(operation="disclose", recipient={"country": "FI", "type": "third_party"}),
         SubjectFacts(objections=frozenset({"disclosure"}), relationship="ended"), "deny",
         ["disclosure.other", "disclosure.objected", "deletion.after_end"]),
        (op(operation="process", purpose="direct_marketing", data_categories=["health"]),
         SubjectFacts(objections=frozenset({"direct_marketing"})), "deny",
         ["processing.special", "processing.objected_marketing"]),
        # a legal obligation outranks the ended relationship
        (op(operation="disclose", recipient=AUTHORITY, legal_basis=LEGAL),
         SubjectFacts(relationship="ended", erasure_requested=True), "allow", ["disclosure.authority"]),
        # nothing permits: default.deny
        (op(operation="collect", source="web_scraping"), None, "deny", [DEFAULT_DENY]),
        (op(operation="store_cookie", cookie={"kind": "strictly_necessary"}, data_categories=["email"], subject=None), None, "deny", [DEFAULT_DENY]),
        (op(operation="store_cookie", cookie={"kind": "strictly_necessary"}, purpose="site_statistics"), None, "allow", ["cookie.none"]),
        # inline facts never remove a recorded restriction
        (op(operation="retain", subject={"id": "c", "relationship": "active", "erasure_requested": False}),
         SubjectFacts(relationship="ended"), "deny", ["deletion.after_end"]),
        (op(operation="retain", subject={"id": "c", "relationship": "active"}), None, "allow", ["retain.active"]),
        (op(operation="delete"), SubjectFacts(erasure_requested=True), "allow", ["deletion.always"]),
    ],
)
def test_combining(decider: Decider, operation: Operation, facts: SubjectFacts | None, decision: str, rules: list[str]) -> None:
    d = decider.decide(operation, facts, NOW)
    assert (d.decision, d.rule_ids) == (decision, rules)
    assert d.allowed is (decision == "allow") and d.error is None
    assert all(r.effect == ("permit" if d.allowed else "forbid") for r in d.reasons)


def test_response_shape_and_languages(decider: Decider) -> None:
    d = decider.decide(op(operation="collect", source="web_scraping"), None, NOW)
    en, fi = d.to_dict("en"), d.to_dict("fi")
    assert set(en) == {"decision_id", "decision", "allowed", "reasons", "obligations", "policy_version", "evaluated_at"}
    assert en["decision"] == "deny" and en["allowed"] is False and en["policy_version"] == PS.version
    assert en["reasons"] == [{"rule": DEFAULT_DENY, "effect": "forbid",
                              "message": "No rule permits this operation, so it is denied.", "source": "", "law": []}]
    assert fi["reasons"][0]["message"].startswith("Mikään sääntö")
    assert en["evaluated_at"] == NOW.isoformat() and d.decision_id.startswith("dec_")
    allowed = decider.decide(op(operation="delete"), None, NOW).to_dict("fi")
    assert allowed["reasons"] == [{"rule": "deletion.always", "effect": "permit",
                                   "message": "Poistaminen on aina sallittua.", "source": "§8", "law": []}]
    assert decider.decide(op(operation="delete"), None, NOW).decision_id != allowed["decision_id"]


def request(type_: str, written: bool = True, signed: bool = True, received: str = RECEIVED) -> Operation:
    return op(operation="subject_request",
              request={"type": type_, "received_at": received, "written": written, "signed": signed})


@pytest.mark.parametrize(
    ("operation", "previous", "decision", "obligations"),
    [
        (request("access"), (), "allow",
         [("respond_by", "request.access", date(2026, 4, 2), None), ("access_fee", "request.access", None, False)]),
        (request("access"), (datetime(2025, 6, 1, tzinfo=UTC),), "allow",
         [("respond_by", "request.access", date(2026, 4, 2), None), ("access_fee", "request.access", None, True)]),
        (request("access"), (datetime(2025, 3, 1, tzinfo=UTC),), "allow",
         [("respond_by", "request.access", date(2026, 4, 2), None), ("access_fee", "request.access", None, False)]),
        (request("access", signed=False), (), "deny",
         [("respond_by", "request.access_unsigned", date(2026, 4, 2), None)]),
        # one month from Jan 31 is Feb 28; 2026-02-28 is a Saturday -> Monday Mar 2
        (request("access", received="2026-01-31T12:00:00+02:00"), (), "allow",
         [("respond_by", "request.access", date(2026, 3, 2), None), ("access_fee", "request.access", None, False)]),
        (request("inquiry"), (), "allow", [("respond_by", "request.inquiry", date(2026, 3, 4), None)]),
        # Friday before Christmas: Dec 24, 25, 26 and the weekend do not count
        (request("inquiry", received="2026-12-23T15:00:00+02:00"), (), "allow",
         [("respond_by", "request.inquiry", date(2026, 12, 29), None)]),
    ],
)
def test_obligations(decider: Decider, operation: Operation, previous: tuple[datetime, ...], decision: str,
                     obligations: list[tuple[str, str, date | None, bool | None]]) -> None:
    d = decider.decide(operation, SubjectFacts(access_requests=previous), NOW)
    assert d.decision == decision
    assert [(o.type, o.rule, o.due, o.chargeable) for o in d.obligations] == obligations


def test_obligation_messages(decider: Decider) -> None:
    d = decider.decide(request("inquiry"), None, NOW)
    assert d.to_dict("en")["obligations"] == [
        {"type": "respond_by", "due": "2026-03-04", "rule": "request.inquiry", "message": "Answer by 2026-03-04."}]
    assert d.to_dict("fi")["obligations"][0]["message"] == "Vastaa 4.3.2026 mennessä."
    fee = decider.decide(request("access"), SubjectFacts(access_requests=(datetime(2025, 6, 1, tzinfo=UTC),)), NOW)
    msg = fee.to_dict("en")["obligations"][1]
    assert msg["chargeable"] is True and "12 months" in msg["message"]


def test_respond_by_counts_from_the_operation_time_without_received_at(decider: Decider) -> None:
    body = {"operation": "subject_request", "subject": {"id": "c"}, "at": "2026-03-02T10:00:00+02:00",
            "request": {"type": "inquiry"}}
    d = decider.decide(parse_operation(body, PS.vocabulary), None, datetime(2026, 6, 1, tzinfo=UTC))
    assert d.obligations[0].due == date(2026, 3, 4)


# --- fail closed ---------------------------------------------------------------------------------


def _raise(*_: Any, **__: Any) -> Any:
    raise RuntimeError("engine exploded")


@pytest.mark.parametrize(
    ("target", "name"),
    [(Engine, "matches"), (obligations_module, "compute")],
    ids=["engine", "obligations"],
)
def test_fails_closed(monkeypatch: pytest.MonkeyPatch, target: Any, name: str) -> None:
    decider = Decider(PS, cache_size=0)
    monkeypatch.setattr(target, name, _raise)
    # each of these would allow, and each carries obligations
    for operation in (request("access"), request("inquiry"), request("access", signed=False)):
        d = decider.decide(operation, None, NOW)
        assert d.decision == "deny" and d.allowed is False
        assert d.rule_ids == [EVAL_ERROR] and d.obligations == ()
        assert d.error == "RuntimeError: engine exploded"
        assert "RuntimeError" in d.to_dict("en")["reasons"][0]["message"]
        assert d.log_record("pseudo")["error"] == d.error


def test_fails_closed_on_a_bad_context(monkeypatch: pytest.MonkeyPatch) -> None:
    decider = Decider(PS)
    monkeypatch.setattr("kti_policy.decide.decision.build_context", _raise)
    assert decider.decide(op(operation="delete"), None, NOW).rule_ids == [EVAL_ERROR]


# --- cache, context, log -------------------------------------------------------------------------


def test_cache_serves_equal_projections_and_stays_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    decider = Decider(PS, cache_size=2)
    calls: list[dict[str, Any]] = []
    real = Engine.matches

    def counting(self: Engine, fact: dict[str, Any]) -> frozenset[str]:
        calls.append(fact)
        return real(self, fact)

    monkeypatch.setattr(Engine, "matches", counting)
    for name in ("a", "b", "c"):  # recipient.name is read by no rule: one projection
        decider.decide(op(operation="delete", recipient={"country": "FI", "type": "authority", "name": name}), None, NOW)
    assert len(calls) == 1
    decider.decide(op(operation="retain"), None, NOW)
    decider.decide(op(operation="collect", source="data_subject"), None, NOW)
    assert len(calls) == 3 and len(decider._cache) == 2
    decider.decide(op(operation="delete"), None, NOW)  # evicted: asks the engine again
    assert len(calls) == 4
    uncached = Decider(PS, cache_size=0)
    uncached.decide(op(operation="delete"), None, NOW)
    uncached.decide(op(operation="delete"), None, NOW)
    assert len(calls) == 6 and not uncached._cache


def test_build_context_reads_request_and_facts() -> None:
    o = op(operation="disclose", recipient={"type": "third_party", "country": "SE"}, data_categories=["name", "email"],
           subject={"id": "c", "objections": ["disclosure"]})
    facts = SubjectFacts(consents=frozenset({"disclosure"}), relationship="active").merge_inline(o.inline_facts)
    ctx = build_context(o, facts)
    assert ctx["data_categories"] == ("name", "email") and ctx["recipient.country"] == "SE"
    assert ctx["subject.objections"] == ("disclosure",) and ctx["subject.consents"] == ("disclosure",)
    assert ctx["subject.relationship"] == "active" and ctx["subject.erasure_requested"] is False
    assert ctx["purpose"] is None and ctx["request.written"] is None


def test_log_record_is_replayable_and_pseudonymised() -> None:
    d = Decider(PS).decide(op(operation="retain", subject={"id": "clear-id", "relationship": "active"}),
                           SubjectFacts(consents=frozenset({"disclosure"})), NOW)
    rec = d.log_record("pk_123")
    assert "clear-id" not in repr(rec)
    assert rec["request"]["subject"] == {"id": "pk_123", "relationship": "active"}
    assert rec["facts"]["relationship"] == "active" and rec["facts"]["consents"] == ["disclosure"]
    assert (rec["decision"], rec["rules"], rec["policy_version"]) == ("allow", ["retain.active"], PS.version)


def test_free_text_equal_to_the_none_marker_decides_like_the_reference() -> None:
    text = (CLEAN / "processing.yaml").read_text(encoding="utf-8") + (
        "  - id: named.recipient\n    effect: forbid\n    source: x\n"
        "    when: {operation: delete, recipient.name: {present: true}}\n"
        "    reason: {fi: a, en: b}\n")
    ps = load_policy_set(CLEAN, {"processing.yaml": text})
    o = parse_operation({"operation": "delete", "subject": {"id": "c"},
                         "recipient": {"country": "FI", "type": "authority", "name": "\u2205"}}, ps.vocabulary)
    assert Decider(ps).decide(o, None, NOW).rule_ids == Decider(ps, use_engine=False).decide(o, None, NOW).rule_ids


def test_evaluated_at_defaults_to_now() -> None:
    before = datetime.now(UTC)
    d = Decider(PS).decide(op(operation="delete"))
    assert before <= d.evaluated_at <= datetime.now(UTC) + timedelta(seconds=1)
    assert d.evaluated_at.tzinfo is not None and d.evaluated_at.utcoffset() == UTC.utcoffset(None)


# --- per-call overhead: ids, combined outcomes, shared texts ----------------------------------------


def test_decision_ids_are_uuid4_hex(monkeypatch: pytest.MonkeyPatch) -> None:
    ids = {new_decision_id() for _ in range(1000)}
    assert len(ids) == 1000 and all(re.fullmatch(r"dec_[0-9a-f]{12}4[0-9a-f]{3}[89ab][0-9a-f]{15}", i) for i in ids)
    for raw in (bytes(16), b"\xff" * 16, bytes(range(16))):  # the same bits uuid4 makes of the same bytes
        monkeypatch.setattr(os, "urandom", lambda n, raw=raw: (raw * (n // 16 + 1))[:n])
        decision_module._RANDOM._reset()
        assert new_decision_id() == "dec_" + uuid.UUID(bytes=raw, version=4).hex


def test_decision_ids_take_each_random_byte_once_and_refill(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[int] = []
    counter = iter(range(10**6))

    def urandom(n: int) -> bytes:
        calls.append(n)
        return b"".join(next(counter).to_bytes(16, "big") for _ in range(n // 16))

    monkeypatch.setattr(os, "urandom", urandom)
    decision_module._RANDOM._reset()
    per_read = decision_module._RandomPool.SIZE // 16
    ids = [new_decision_id() for _ in range(per_read + 1)]
    assert calls == [decision_module._RandomPool.SIZE] * 2  # one read per 256 ids, then the next
    assert len(set(ids)) == len(ids)
    assert ids[1] == "dec_" + uuid.UUID(int=1, version=4).hex  # the second 16 bytes, not the first again


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_forked_child_does_not_repeat_its_parents_ids() -> None:
    new_decision_id()  # the parent's pool holds unused bytes at the fork
    said = in_a_forked_child(lambda: " ".join(new_decision_id() for _ in range(20)).encode())
    child = set(said.decode().split())
    parent = {new_decision_id() for _ in range(20)}
    assert len(child) == 20 and not child & parent


def test_an_outcome_is_combined_once_per_matched_set_and_obligations_per_call() -> None:
    decider = Decider(PS)
    early = decider.decide(request("inquiry"), None, NOW)
    late = decider.decide(request("inquiry", received="2026-12-23T15:00:00+02:00"), None, NOW)
    assert early.matched == late.matched and early.reasons is late.reasons  # one combination
    assert decider._outcome.cache_info().hits == 1
    assert [o.due for o in early.obligations] == [date(2026, 3, 4)]
    assert [o.due for o in late.obligations] == [date(2026, 12, 29)]
    fresh = Decider(PS, use_engine=False).decide(request("inquiry"), None, NOW)
    assert (fresh.allowed, fresh.reasons, fresh.obligations) == (early.allowed, early.reasons, early.obligations)


def test_the_answer_and_the_log_line_show_the_same_time() -> None:
    d = Decider(PS).decide(op(operation="delete"))
    assert d.to_dict("en")["evaluated_at"] == d.log_record("pk")["time"] == d.evaluated_at.isoformat()


def test_log_lines_of_the_same_facts_are_equal_and_independent() -> None:
    facts = SubjectFacts(consents=frozenset({"disclosure"}), consents_at=(("disclosure", NOW),), relationship="active")
    decider = Decider(PS)
    first = decider.decide(op(operation="retain"), facts, NOW).log_record("pk")
    second = decider.decide(op(operation="retain"), facts, NOW).log_record("pk")
    assert first["facts"] == second["facts"] == facts.to_dict()
    first["facts"]["consents"].append("changed")
    first["facts"]["consents_at"]["changed"] = "x"
    first["facts"]["kind"] = "changed"
    assert second["facts"] == facts.to_dict() and facts.to_dict()["consents"] == ["disclosure"]
    assert facts.to_dict()["consents_at"] == {"disclosure": NOW.isoformat()} and facts.to_dict()["kind"] is None


def test_evaluated_at_text_is_each_instants_own() -> None:
    """The kept ISO text of the last instant is reused only for that very object."""
    a = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)
    b = datetime(2026, 3, 2, 10, 0, 0, 1, tzinfo=UTC)
    d = Decider(PS)
    texts = [d.decide(op(operation="delete"), None, when).evaluated_at_text for when in (a, a, b, a)]
    assert texts == [a.isoformat(), a.isoformat(), b.isoformat(), a.isoformat()]
    assert texts[2] == "2026-03-02T10:00:00.000001+00:00"
