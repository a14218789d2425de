"""compile: condition AST -> durable-rules JSON (negation pushed to the leaves) and the projection."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kti_policy.decide.compile import (
    NONE,
    TRUE_KEY,
    Projection,
    _Collector,
    compile_policy_set,
    disjuncts,
    encode,
)
from kti_policy.policy.loader import load_policy_set
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
    Policy,
    PolicySet,
    Present,
    Rule,
    Text,
    Vocabulary,
)

T = Text("s", "r")
CLEAN = Path(__file__).parent.parent / "data" / "clean"


def one_rule(when: Condition, unless: Condition | None = None) -> PolicySet:
    rule = Rule("r", "permit", when, T, "§1", "p", unless=unless)
    return PolicySet(Vocabulary({}), (Policy("p", T, "§1", (rule,), "p.yaml"),), "v")


def compiled_condition(when: Condition) -> dict[str, Any]:
    """One condition in durable-rules JSON (what each part of a rule compiles to)."""
    return _Collector().compile(when)


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
        (Present("data_categories", True), {"n__data_categories": True}),
        (Not(Present("data_categories", True)), {"n__data_categories": False}),
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


def test_unless_is_its_own_positive_parts() -> None:
    c = compile_policy_set(one_rule(Eq("operation", "a"), unless=Contains("subject.consents", "c")), short_names=False)
    assert c.rules == {"r#w0": {"all": [{"m": {"f__operation": "a"}}]},
                       "r#u0": {"all": [{"m": {"m__subject__consents__c": True}}]}}
    assert c.parts == {"r": (frozenset({"r#w0"}), frozenset({"r#u0"}))}
    assert c.matched(frozenset({"r#w0"})) == {"r"}
    assert c.matched(frozenset({"r#w0", "r#u0"})) == frozenset() and c.matched(frozenset({"r#u0"})) == frozenset()


A, B, C = Eq("operation", "a"), Eq("purpose", "b"), Eq("source", "c")


@pytest.mark.parametrize(
    ("cond", "parts"),
    [
        (A, [A]),
        (AnyOf((A, AnyOf((B, C)))), [A, B, C]),
        (AnyOf(()), []),
        (Not(All((A, B))), [Not(A), Not(B)]),
        (Not(Not(AnyOf((A, B)))), [A, B]),
        (Not(AnyOf((A, B))), [Not(AnyOf((A, B)))]),  # a conjunction stays one part
        (All((A, AnyOf((B, C)))), [All((A, B)), All((A, C))]),
        (All((A, B)), [All((A, B))]),
    ],
)
def test_rules_split_into_disjuncts(cond: Condition, parts: list[Condition]) -> None:
    assert disjuncts(cond) == parts


def test_a_long_unless_is_split_so_durable_rules_takes_it() -> None:
    """40 exceptions of four conditions each: one durable condition would exceed 32 expressions."""
    from kti_policy.decide.engine import Engine
    from kti_policy.policy.conditions import matching_rules

    exceptions = tuple(All((Eq("operation", f"op{i}"), Eq("purpose", "p"), Eq("source", "s"), Eq("channel", "c")))
                       for i in range(40))
    ps = one_rule(Eq("subject.erasure_requested", True), unless=AnyOf(exceptions))
    compiled = compile_policy_set(ps)
    assert len(compiled.parts["r"][1]) == 40
    engine = Engine(compiled)
    base = {"subject.erasure_requested": True, "purpose": "p", "source": "s", "channel": "c"}
    for ctx in ({**base, "operation": "op7"}, {**base, "operation": "op99"}, {**base, "operation": "op7", "channel": "x"}):
        assert engine.matches(compiled.projection.fact(ctx)) == matching_rules(ps.rules, ctx)


def test_projection_reads_only_what_rules_use() -> None:
    c = compile_policy_set(one_rule(All((Eq("operation", "a"), Contains("data_categories", "x"),
                                         Present("subject.objections", True)))))
    p = c.projection
    assert p.scalars == ("operation",) and p.members == (("data_categories", "x"),)
    assert p.counts == ("subject.objections",)
    ctx = {"operation": None, "purpose": "ignored", "data_categories": ("x", "y"), "subject.objections": ("m",)}
    readable = {TRUE_KEY: 1, "f__operation": NONE, "m__data_categories__x": True, "n__subject__objections": True}
    assert p.readable(p.fact(ctx)) == readable
    assert p.fact(ctx) == {"kt": 1, "k0": NONE, "k1": True, "k2": True}  # the names durable-rules reads
    assert p.key(ctx) == (NONE, True, True)
    assert p.key({**ctx, "purpose": "other", "data_categories": ("x",)}) == p.key(ctx)
    assert p.key({**ctx, "data_categories": ()}) != p.key(ctx)


def test_short_names_rename_every_field_of_every_part() -> None:
    """The served compilation names fields k0, k1, ...: the same rules, field for field, as the
    readable one (durable-rules' core reads short names about twice as fast)."""
    ps = load_policy_set(CLEAN)
    readable, short = compile_policy_set(ps, short_names=False), compile_policy_set(ps)
    assert readable.rules.keys() == short.rules.keys() and readable.parts == short.parts
    labels = dict(zip(short.projection.fields, short.projection.labels, strict=True))
    assert set(labels) == {"kt", *(f"k{i:x}" for i in range(len(labels) - 1))}

    def back(cond: Any) -> Any:
        if isinstance(cond, list):
            return [back(c) for c in cond]
        if isinstance(cond, dict):
            return {labels.get(k, k): back(v) if isinstance(v, (dict, list)) else v for k, v in cond.items()}
        return cond

    assert {n: back(c) for n, c in short.rules.items()} == readable.rules
    assert "f__" not in json.dumps(short.rules) and "m__" not in json.dumps(short.rules)


def test_ruleset_name_is_a_content_hash() -> None:
    a = compile_policy_set(load_policy_set(CLEAN))
    b = compile_policy_set(load_policy_set(CLEAN))
    assert a.name == b.name and a.name.startswith("kti_")
    assert set(a.parts) == {r.id for r in load_policy_set(CLEAN).rules}
    assert {name.split("#")[0] for name in a.rules} == set(a.parts)
    other = compile_policy_set(one_rule(Const(True)))
    assert other.name != a.name
    assert compile_policy_set(one_rule(Const(True))).name == other.name


_VALUES = st.one_of(st.none(), st.booleans(), st.integers(-1, 2), st.sampled_from(["x", "y", "", NONE, NONE + "x", "a" + NONE]))
_HAVE = st.one_of(_VALUES, st.lists(_VALUES, max_size=4).flatmap(
    lambda items: st.sampled_from([tuple(items), list(items), frozenset(v for v in items if v is None or not isinstance(v, list))])))


@settings(max_examples=500, deadline=None)
@given(st.fixed_dictionaries({"operation": _VALUES, "purpose": _VALUES, "data_categories": _HAVE, "channel": _HAVE}))
def test_projection_key_is_each_field_read_as_the_fact_holds_it(ctx: dict[str, Any]) -> None:
    """The key's inline encoding and member lookups answer as ``encode`` and ``in``, value for value."""
    p = Projection(scalars=("operation", "purpose"), members=(("channel", "x"), ("data_categories", "x"),
                                                            ("data_categories", "y"), ("data_categories", NONE)),
                   counts=("data_categories",))
    have = {path: ctx.get(path) or () for path, _ in p.members}
    try:
        expected = (*(encode(ctx.get(path)) for path in p.scalars),
                    *(value in have[path] for path, value in p.members), bool(ctx.get("data_categories")))
    except TypeError:  # a member asked of a value that is no collection: the decision fails closed
        with pytest.raises(TypeError):
            p.key(ctx)
        return
    key = p.key(ctx)
    assert key == expected and [type(v) for v in key] == [type(v) for v in expected]
