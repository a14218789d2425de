"""conditions: the reference meaning of every operator, rule matching with unless, and explain."""

from __future__ import annotations

from typing import Any

import pytest

from kti_policy.policy.conditions import (
    describe,
    explain,
    explain_rule,
    holds,
    matching_rules,
    rule_matches,
)
from kti_policy.policy.fields import FIELDS
from kti_policy.policy.model import (
    All,
    AnyOf,
    Condition,
    Const,
    Contains,
    ContainsAny,
    Eq,
    In,
    Not,
    Present,
    Rule,
    Text,
    condition_to_data,
)

EMPTY: dict[str, Any] = {p: (() if f.shape == "list" else None) for p, f in FIELDS.items()}


def ctx(**kw: Any) -> dict[str, Any]:
    return {**EMPTY, **{k.replace("__", "."): v for k, v in kw.items()}}


CASES: list[tuple[Condition, dict[str, Any], bool]] = [
    (Eq("operation", "delete"), ctx(operation="delete"), True),
    (Eq("operation", "delete"), ctx(operation="process"), False),
    (Eq("purpose", None), ctx(), True),
    (Eq("purpose", None), ctx(purpose="research"), False),
    (Eq("request.written", False), ctx(request__written=False), True),
    (Eq("request.written", False), ctx(), False),  # not given is not false
    (In("recipient.country", ("FI", None)), ctx(), True),
    (In("recipient.country", ("FI", None)), ctx(recipient__country="FI"), True),
    (In("recipient.country", ("FI", None)), ctx(recipient__country="SE"), False),
    (Contains("data_categories", "email"), ctx(data_categories=("name", "email")), True),
    (Contains("data_categories", "email"), ctx(), False),
    (ContainsAny("subject.objections", ("marketing", "direct_marketing")), ctx(subject__objections=("marketing",)), True),
    (ContainsAny("subject.objections", ("marketing",)), ctx(subject__objections=("disclosure",)), False),
    (Present("data_categories", True), ctx(data_categories=("name",)), True),
    (Present("data_categories", False), ctx(), True),
    (Present("recipient.name", True), ctx(recipient__name=""), True),  # given, though empty
    (Present("request.signed", True), ctx(request__signed=False), True),
    (Present("request.signed", False), ctx(), True),
    (All(()), ctx(), True),
    (AnyOf(()), ctx(), False),
    (All((Eq("operation", "delete"), Const(False))), ctx(operation="delete"), False),
    (AnyOf((Eq("operation", "delete"), Const(False))), ctx(operation="delete"), True),
    (Not(Eq("operation", "delete")), ctx(), True),
    (Not(Not(Const(True))), ctx(), True),
]


@pytest.mark.parametrize(("cond", "context", "expected"), CASES)
def test_holds(cond: Condition, context: dict[str, Any], expected: bool) -> None:
    assert holds(cond, context) is expected
    assert holds(Not(cond), context) is (not expected)


def test_missing_context_keys_count_as_not_given() -> None:
    assert holds(Eq("purpose", None), {}) and holds(Present("data_categories", False), {})
    assert not holds(Contains("data_categories", "x"), {})


def test_holds_rejects_non_conditions() -> None:
    with pytest.raises(TypeError):
        holds("operation", ctx())  # type: ignore[arg-type]


T = Text("s", "r")
RULES = (
    Rule("a", "permit", Eq("operation", "disclose"), T, "§7", "p"),
    Rule("b", "forbid", Eq("operation", "disclose"), T, "§7", "p", unless=Contains("subject.consents", "disclosure")),
    Rule("c", "permit", Const(True), T, "§7", "p", unless=Const(True)),
)


@pytest.mark.parametrize(
    ("context", "expected"),
    [
        (ctx(operation="disclose"), {"a", "b"}),
        (ctx(operation="disclose", subject__consents=("disclosure",)), {"a"}),
        (ctx(operation="delete"), set()),
    ],
)
def test_matching_rules_every_match_and_unless(context: dict[str, Any], expected: set[str]) -> None:
    assert matching_rules(RULES, context) == frozenset(expected)
    assert [r.id for r in RULES if rule_matches(r, context)] == sorted(expected)


def test_explain_rule_marks_what_held() -> None:
    rule = Rule("b", "forbid", All((Eq("operation", "disclose"), In("recipient.country", ("FI", None))))
                , T, "§7", "p", unless=Contains("subject.consents", "disclosure"))
    out = explain_rule(rule, ctx(operation="disclose", recipient__country="SE"))
    assert out["matched"] is False
    assert [p["held"] for p in out["when"]["parts"]] == [True, False]
    assert out["when"]["parts"][1]["text"] == "recipient.country is one of FI, (not given)"
    assert out["unless"] == {"text": "subject.consents includes disclosure", "held": False}
    lines = explain(rule.when, ctx(operation="disclose")).lines()
    assert lines == ["✓ all of", "  ✓ operation is disclose", "  ✓ recipient.country is one of FI, (not given)"]


@pytest.mark.parametrize(
    ("cond", "en", "fi"),
    [
        (Eq("purpose", None), "purpose is not given", "purpose puuttuu"),
        (Eq("request.written", True), "request.written is true", "request.written on true"),
        (Present("data_categories", True), "data_categories is given", "data_categories on annettu"),
        (ContainsAny("data_categories", ("health", "religion")), "data_categories includes any of health, religion",
         "data_categories sisältää jonkin seuraavista: health, religion"),
        (Const(False), "never", "ei koskaan"),
        (In("recipient.country", ("FI", None)), "recipient.country is one of FI, (not given)",
         "recipient.country on jokin seuraavista: FI, (ei annettu)"),
        (Not(AnyOf((Const(True),))), "not:\n  any of:\n    always", "ei:\n  jokin seuraavista:\n    aina"),
    ],
)
def test_describe(cond: Condition, en: str, fi: str) -> None:
    assert describe(cond) == en and describe(cond, "fi") == fi


@pytest.mark.parametrize("cond", [c for c, _, _ in CASES])
def test_condition_to_data_is_the_file_shape(cond: Condition) -> None:
    data = condition_to_data(cond)
    assert isinstance(data, (dict, bool))
    if isinstance(cond, (Eq, In, Contains, ContainsAny, Present)):
        assert list(data) == [cond.path]
