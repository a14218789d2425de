"""compile: condition AST -> durable-rules JSON (negation pushed to the leaves) and the projection."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from kti_policy.compile import NONE, TRUE_KEY, compile_policy_set
from kti_policy.loader import load_policy_set
from kti_policy.model import (
    All,
    AnyOf,
    Condition,
    Const,
    Contains,
    ContainsAny,
    Eq,
    In,
    Not,
    Policy,
    PolicySet,
    Present,
    Rule,
    Text,
    Vocabulary,
)

T = Text("s", "r")
CLEAN = Path(__file__).parent / "data" / "clean"


def one_rule(when: Condition, unless: Condition | None = None) -> PolicySet:
    rule = Rule("r", "permit", when, T, "§1", "p", unless=unless)
    return PolicySet(Vocabulary({}), (Policy("p", T, "§1", (rule,), "p.yaml"),), "v")


def compiled_condition(when: Condition, unless: Condition | None = None) -> dict[str, Any]:
    body = compile_policy_set(one_rule(when, unless)).rules["r"]
    assert list(body) == ["all"] and len(body["all"]) == 1
    return body["all"][0]["m"]


@pytest.mark.parametrize(
    ("cond", "json"),
    [
        (Eq("operation", "delete"), {"f__operation": "delete"}),
        (Eq("purpose", None), {"f__purpose": NONE}),
        (Not(Eq("purpose", None)), {"$neq": {"f__purpose": NONE}}),
        (Eq("request.written", True), {"f__request__written": True}),
        (In("recipient.country", ("FI", None)), {"$or": [{"f__recipient__country": "FI"}, {"f__recipient__country": NONE}]}),
        (Not(In("purpose", ("a",))), {"$neq": {"f__purpose": "a"}}),
        (Contains("data_categories", "email"), {"m__data_categories__email": True}),
        (Not(Contains("data_categories", "email")), {"m__data_categories__email": False}),
        (Not(ContainsAny("subject.objections", ("a", "b"))),
         {"$and": [{"m__subject__objections__a": False}, {"m__subject__objections__b": False}]}),
        (Present("data_categories", True), {"$gt": {"n__data_categories": 0}}),
        (Not(Present("data_categories", True)), {"n__data_categories": 0}),
        (Present("recipient.name", False), {"f__recipient__name": NONE}),
        (Const(True), {TRUE_KEY: 1}),
        (Not(Const(True)), {TRUE_KEY: 0}),
        (All(()), {TRUE_KEY: 1}),
        (AnyOf(()), {TRUE_KEY: 0}),
        (Not(All(())), {TRUE_KEY: 0}),
        (Not(AnyOf(())), {TRUE_KEY: 1}),
        (Not(All((Eq("operation", "a"), Eq("purpose", "b")))),
         {"$or": [{"$neq": {"f__operation": "a"}}, {"$neq": {"f__purpose": "b"}}]}),
        (Not(Not(Eq("operation", "a"))), {"f__operation": "a"}),
    ],
)
def test_conditions_compile_to_nnf(cond: Condition, json: dict[str, Any]) -> None:
    assert compiled_condition(cond) == json


def test_unless_is_negated_into_the_condition() -> None:
    assert compiled_condition(Eq("operation", "a"), unless=Contains("subject.consents", "c")) == {
        "$and": [{"f__operation": "a"}, {"m__subject__consents__c": False}]
    }


def test_projection_reads_only_what_rules_use() -> None:
    c = compile_policy_set(one_rule(All((Eq("operation", "a"), Contains("data_categories", "x"),
                                         Present("subject.objections", True)))))
    p = c.projection
    assert p.scalars == ("operation",) and p.members == (("data_categories", "x"),)
    assert p.counts == ("subject.objections",)
    ctx = {"operation": None, "purpose": "ignored", "data_categories": ("x", "y"), "subject.objections": ("m",)}
    assert p.fact(ctx) == {TRUE_KEY: 1, "f__operation": NONE, "m__data_categories__x": True, "n__subject__objections": 1}
    assert p.key(ctx) == (None, True, True)
    assert p.key({**ctx, "purpose": "other", "data_categories": ("x",)}) == p.key(ctx)
    assert p.key({**ctx, "data_categories": ()}) != p.key(ctx)


def test_ruleset_name_is_a_content_hash() -> None:
    a = compile_policy_set(load_policy_set(CLEAN))
    b = compile_policy_set(load_policy_set(CLEAN))
    assert a.name == b.name and a.name.startswith("kti_")
    assert set(a.rules) == {r.id for r in load_policy_set(CLEAN).rules}
    other = compile_policy_set(one_rule(Const(True)))
    assert other.name != a.name
    assert compile_policy_set(one_rule(Const(True))).name == other.name
