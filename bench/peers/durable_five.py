"""The five rules of five.yaml written by hand for durable-rules, as a durable-rules user would.

One flat fact per decision with natural fields (``operation``, ``purpose``, ``data_categories``,
``recipient_type``, ``recipient_country``, ``legal_basis``, ``consents``, ``objections``,
``relationship``); a field not given and an empty list are left out of the fact. Each rule's action
only notes its name; ``DurableFive.decide`` asserts the fact, retracts it, and combines like kti-policy
(a forbid denies, else a permit allows, else deny).

durable-rules has no ``not``, so each ``unless`` is written negated by hand. Two of its behaviours
shape that (both checked by tests/test_peer_bench.py against kti-policy and Cedar):
- ``$neq`` never matches a field that is absent, so "is not X" on an optional field is
  ``$nex`` (absent) or ``$neq``;
- ``$iall`` never matches an empty list, so "consents does not contain disclosure" is
  ``$nex`` (no consents) or ``$iall`` of ``$neq``.
"""

from __future__ import annotations

import itertools
from typing import Any

from durable.engine import Host, MessageNotHandledException


def _one_of(field: str, values: list[str]) -> dict[str, Any]:
    return {"$or": [{field: v} for v in values]}


def _any_item(field: str, values: list[str]) -> dict[str, Any]:
    return {"$iany": {field: {"$or": [{"$i": v} for v in values]}}}


def _not_eq(field: str, value: str) -> list[dict[str, Any]]:
    """The disjuncts of "field is not value" (absent counts as not value)."""
    return [{"$nex": {field: 1}}, {"$neq": {field: value}}]


SPECIAL = ["health", "ethnic_origin", "religion", "political_opinion", "trade_union_membership",
           "genetic", "biometric", "sex_life", "criminal_record"]
MARKETING_PURPOSES = ["direct_marketing", "partner_marketing"]
REGISTER_PURPOSES = ["customer_relationship", "rights_and_obligations", "online_services", "research",
                     "direct_marketing", "partner_marketing", "debt_collection", "product_development",
                     "risk_management", "message_verification", "service_offering"]

# not (a disclosure the law requires to a Finnish authority), for a disclose
_NOT_FINNISH_AUTHORITY = {"$or": [
    *_not_eq("recipient_type", "authority"),
    *_not_eq("recipient_country", "FI"),
    *_not_eq("legal_basis", "legal_obligation"),
]}

EFFECTS = {
    "disclosure.outside-parties": "forbid",
    "marketing.objected": "forbid",
    "retention.relationship-ended": "forbid",
    "content.special-categories": "forbid",
    "purposes.register": "permit",
}

RULES: dict[str, dict[str, Any]] = {
    "disclosure.outside-parties": {"all": [{"m": {"$and": [
        {"operation": "disclose"},
        _one_of("recipient_type", ["third_party", "partner", "authority"]),
        _NOT_FINNISH_AUTHORITY,
        {"$or": [{"$nex": {"consents": 1}}, {"$iall": {"consents": {"$neq": {"$i": "disclosure"}}}}]},
    ]}}]},
    "marketing.objected": {"all": [{"m": {"$and": [
        _one_of("operation", ["process", "collect", "disclose"]),
        _one_of("purpose", MARKETING_PURPOSES),
        _any_item("objections", ["direct_marketing", "marketing"]),
    ]}}]},
    "retention.relationship-ended": {"all": [{"m": {"$and": [
        {"relationship": "ended"},
        {"$neq": {"operation": "delete"}},
        {"$neq": {"operation": "subject_request"}},
        {"$neq": {"operation": "retain"}},
        {"$neq": {"operation": "process"}},
        {"$or": [{"$neq": {"operation": "disclose"}}, _NOT_FINNISH_AUTHORITY]},
        {"$or": [{"$neq": {"operation": "record_call"}}, *_not_eq("purpose", "message_verification")]},
    ]}}]},
    "content.special-categories": {"all": [{"m": {"$and": [
        _one_of("operation", ["collect", "process", "retain"]),
        _any_item("data_categories", SPECIAL),
    ]}}]},
    "purposes.register": {"all": [{"m": {"$and": [
        {"operation": "process"},
        _one_of("purpose", REGISTER_PURPOSES),
    ]}}]},
}

_NAMES = itertools.count(1)


class DurableFive:
    """The five rules registered on a durable-rules host of their own; one fact per decision."""

    def __init__(self) -> None:
        self.fired: list[str] = []
        self.name = f"peers_five_{next(_NAMES)}"  # durable cannot register a name twice
        self.host = Host()
        self.host.register_rulesets({self.name: {
            rid: {**rule, "run": self._action(rid)} for rid, rule in RULES.items()}})

    def _action(self, rule_id: str) -> Any:
        fired = self.fired

        def run(_c: Any) -> None:
            fired.append(rule_id)

        return run

    def matches(self, fact: dict[str, Any]) -> list[str]:
        """Names of the rules the fact fires (``fact`` needs ``id`` and ``sid``)."""
        fired = self.fired
        fired.clear()
        try:
            self.host.assert_fact(self.name, fact)
        except MessageNotHandledException:
            pass
        try:
            self.host.retract_fact(self.name, fact)
        except MessageNotHandledException:
            pass
        return list(fired)

    def decide(self, fact: dict[str, Any]) -> bool:
        effects = [EFFECTS[r] for r in self.matches(fact)]
        return "forbid" not in effects and "permit" in effects


def fact(operation: dict[str, Any], subject: dict[str, Any], fact_id: str) -> dict[str, Any]:
    """The durable fact of a decision request body (``operation``) and the subject's facts."""
    recipient = operation.get("recipient") or {}
    legal = operation.get("legal_basis") or {}
    out: dict[str, Any] = {
        "id": fact_id,
        "sid": "0",
        "operation": operation["operation"],
        "purpose": operation.get("purpose"),
        "data_categories": list(operation.get("data_categories") or ()),
        "recipient_type": recipient.get("type"),
        "recipient_country": recipient.get("country"),
        "legal_basis": legal.get("type"),
        "consents": sorted(subject["consents"]),
        "objections": sorted(subject["objections"]),
        "relationship": subject.get("relationship"),
    }
    return {k: v for k, v in out.items() if v not in (None, [])}
