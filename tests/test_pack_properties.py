"""The shipped pack against RULES.md, stated as properties over random operations and facts.

The policy tests in ``policies/tests/`` pin single cases; these properties say what must hold for
*every* operation, so a rule edited too widely (or a new permit that slips past a forbid) fails
here even when no policy test looks at the case. Each property is one line of RULES.md.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from hypothesis import given, settings
from test_differential import _COMMON, _PACK, needs_pack, pack_operations, shipped_pack  # noqa: F401

from kti_policy.decision import Decider, Decision
from kti_policy.facts import SubjectFacts
from kti_policy.operation import Operation

EXAMPLES = 1500
NOW = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)
SPECIAL = {"health", "ethnic_origin", "religion", "political_opinion", "trade_union_membership",
           "genetic", "biometric", "sex_life", "criminal_record"}
DECIDER = Decider(_PACK) if _PACK is not None else None


def _finnish_authority_by_law(d: dict[str, Any]) -> bool:
    r, lb = d.get("recipient") or {}, d.get("legal_basis") or {}
    return (d["operation"] == "disclose" and r.get("type") == "authority"
            and r.get("country") in ("FI", None) and lb.get("type") == "legal_obligation")


def _decide(case: tuple[Operation, SubjectFacts]) -> tuple[dict[str, Any], SubjectFacts, Decision]:
    op, recorded = case
    assert DECIDER is not None
    dec = DECIDER.decide(op, recorded, NOW)
    assert dec.error is None, dec.error
    return dict(op.data), dec.facts, dec


@needs_pack
@settings(max_examples=EXAMPLES, **_COMMON)
@given(case=pack_operations())
def test_rules_md_holds_for_every_operation(case: tuple[Operation, SubjectFacts]) -> None:
    d, facts, dec = _decide(case)
    op, cats, purpose = d["operation"], set(d.get("data_categories") or ()), d.get("purpose")
    rules = set(dec.rule_ids)
    restricted = facts.erasure_requested or facts.relationship == "ended"

    # Combining (CONTRACT 2): an allow is carried by permits only; a deny names at least one forbid.
    if dec.allowed:
        assert rules and all(r.effect == "permit" for r in dec.reasons)
    else:
        assert rules and all(r.effect == "forbid" for r in dec.reasons)

    # §8: delete is always permitted.
    if op == "delete":
        assert dec.allowed, rules
    # §7: a Finnish authority under a legal obligation is never refused, not even after an
    # objection, an erasure request or the end of the relationship.
    if _finnish_authority_by_law(d):
        assert dec.allowed, rules
    # §7, processing: every other disclosure needs a consent that no objection has overridden.
    if op == "disclose" and not _finnish_authority_by_law(d):
        if "disclosure" not in facts.consents or "disclosure" in facts.objections or restricted:
            assert not dec.allowed, rules
        else:
            assert dec.allowed and rules == {"disclosure.consent"}, rules
    # §8: after erasure or the end of the relationship only delete, requests and the law remain.
    if restricted and dec.allowed:
        assert op in ("delete", "subject_request") or _finnish_authority_by_law(d), (op, rules)
    # §5, processing: no special category is collected or processed.
    if op in ("collect", "process") and cats & SPECIAL:
        assert not dec.allowed and "content.special-categories" in rules
    # §10, rights: objections stop marketing.
    if op == "process" and purpose == "direct_marketing" and facts.objections & {"direct_marketing", "marketing"}:
        assert not dec.allowed
    if op == "process" and purpose == "partner_marketing" and "marketing" in facts.objections:
        assert not dec.allowed
    # §6: only the named sources.
    if op == "collect" and d.get("source") in ("purchased_list", "web_scraping"):
        assert not dec.allowed and "sources.other" in rules
    # processing: calls are recorded only to verify what was said.
    if op == "record_call" and purpose != "message_verification":
        assert not dec.allowed
    # cookies: never personal data.
    if op == "store_cookie" and cats:
        assert not dec.allowed and "cookies.personal-data" in rules
    # §4, processing, cookies: processing for a named purpose is allowed unless something forbids it.
    if op == "process" and purpose is not None and not dec.allowed:
        assert rules & {"content.special-categories", "marketing.direct-objected", "marketing.all-objected",
                        "deletion.erasure-requested", "deletion.relationship-ended"}, rules


@needs_pack
@settings(max_examples=EXAMPLES // 2, **_COMMON)
@given(case=pack_operations())
def test_every_subject_request_gets_a_deadline(case: tuple[Operation, SubjectFacts]) -> None:
    d, _, dec = _decide(case)
    if d["operation"] != "subject_request" or "request" not in d:
        return
    kinds = [o.type for o in dec.obligations]
    assert kinds.count("respond_by") == 1, (d["request"], dec.rule_ids)
    received = d["request"]["received_at"].date()
    due = next(o.due for o in dec.obligations if o.type == "respond_by")
    assert due is not None and due > received
    rtype, req = d["request"]["type"], d["request"]
    if rtype == "access":
        assert dec.allowed == (req.get("written") is True and req.get("signed") is True)
        assert ("access_fee" in kinds) == dec.allowed
        assert (due - received).days >= 28
    elif rtype == "inquiry":
        assert dec.allowed and (due - received).days <= 6  # two business days, holidays included
    else:
        assert dec.allowed and (due - received).days >= 28
