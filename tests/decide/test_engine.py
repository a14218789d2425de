"""engine: the durable-rules host: every matching rule fires, facts are retracted, one registration
per content hash, several rulesets side by side, and safe under threads."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from kti_policy.decide import engine as engine_module
from kti_policy.decide.compile import compile_policy_set
from kti_policy.decide.decision import Decider
from kti_policy.decide.engine import Engine
from kti_policy.errors import EvalError, PolicyErrors
from kti_policy.policy.conditions import matching_rules
from kti_policy.policy.fields import FIELDS
from kti_policy.policy.loader import load_policy_set
from kti_policy.policy.model import (
    Const,
    Contains,
    ContainsAny,
    Eq,
    Policy,
    PolicySet,
    Rule,
    Text,
    Vocabulary,
)

CLEAN = Path(__file__).parent.parent / "data" / "clean"
T = Text("s", "r")
EMPTY: dict[str, Any] = {p: (() if f.shape == "list" else None) for p, f in FIELDS.items()}


def ruleset(*rules: Rule, version: str = "v") -> PolicySet:
    return PolicySet(Vocabulary({}), (Policy("p", T, "§1", rules, "p.yaml"),), version)


def ctx(**kw: Any) -> dict[str, Any]:
    return {**EMPTY, **{k.replace("__", "."): v for k, v in kw.items()}}


@pytest.fixture(scope="module")
def clean() -> tuple[PolicySet, Engine]:
    ps = load_policy_set(CLEAN)
    return ps, Engine(compile_policy_set(ps))


CONTEXTS = [
    ctx(operation="disclose"),
    ctx(operation="disclose", recipient__type="authority", legal_basis__type="legal_obligation",
        subject__consents=("disclosure",), subject__objections=("disclosure",)),
    ctx(operation="process", purpose="direct_marketing", subject__objections=("direct_marketing",),
        data_categories=("health",), subject__relationship="ended"),
    ctx(operation="delete", subject__erasure_requested=True),
    ctx(operation="subject_request", request__type="access", request__written=True),
    ctx(operation="store_cookie"),
    ctx(),
]


@pytest.mark.parametrize("context", CONTEXTS)
def test_every_matching_rule_fires(clean: tuple[PolicySet, Engine], context: dict[str, Any]) -> None:
    ps, eng = clean
    assert eng.matches(eng.compiled.projection.fact(context)) == matching_rules(ps.rules, context)


def test_all_three_matches_not_only_the_first(clean: tuple[PolicySet, Engine]) -> None:
    _, eng = clean
    context = ctx(operation="process", purpose="direct_marketing", subject__objections=("direct_marketing",),
                  data_categories=("health",))
    assert eng.matches(eng.compiled.projection.fact(context)) == {
        "processing.purposes", "processing.special", "processing.objected_marketing"}


def test_facts_are_retracted_after_every_evaluation(clean: tuple[PolicySet, Engine]) -> None:
    """The one test that looks inside: durable's state for sid "0" holds no fact afterwards."""
    _, eng = clean
    for context in CONTEXTS * 3:
        eng.matches(eng.compiled.projection.fact(context))
    assert eng.facts_held() == []


def test_same_compiled_ruleset_registers_once(monkeypatch: pytest.MonkeyPatch) -> None:
    ps = ruleset(Rule("once", "permit", Eq("operation", "retain"), T, "§1", "p"), version="once")
    first = Engine(compile_policy_set(ps))
    calls: list[Any] = []
    monkeypatch.setattr(engine_module._core, "create_ruleset", lambda *a: calls.append(a))
    again = Engine(compile_policy_set(ps))  # the core refuses a second ruleset of the same name
    assert calls == [] and again.name == first.name
    assert again.matches(again.compiled.projection.fact(ctx(operation="retain"))) == {"once"}


def test_two_rulesets_coexist() -> None:
    a = Engine(compile_policy_set(ruleset(Rule("a.r", "permit", Eq("operation", "collect"), T, "§1", "p"))))
    b = Engine(compile_policy_set(ruleset(Rule("b.r", "forbid", Contains("data_categories", "x"), T, "§1", "p"))))
    assert a.name != b.name
    context = ctx(operation="collect", data_categories=("x",))
    for _ in range(3):
        assert a.matches(a.compiled.projection.fact(context)) == {"a.r"}
        assert b.matches(b.compiled.projection.fact(context)) == {"b.r"}


def test_no_match_is_an_empty_set() -> None:
    eng = Engine(compile_policy_set(ruleset(Rule("never", "permit", Const(False), T, "§1", "p"))))
    assert eng.matches(eng.compiled.projection.fact(ctx())) == frozenset()


@pytest.mark.parametrize("call", ["assert_fact", "start_action_for_state", "complete_and_start_action",
                                  "retract_fact"])
def test_durable_failures_become_eval_errors_and_leave_no_state(
        clean: tuple[PolicySet, Engine], monkeypatch: pytest.MonkeyPatch, call: str) -> None:
    """Whichever call into the core fails, the caller gets an EvalError (a deny upstream) and the
    next evaluation starts from an empty state: no fact, no queued action left behind."""
    ps, eng = clean
    context = CONTEXTS[2]  # three rules match: every call above is made
    with monkeypatch.context() as m:
        def boom(*_: Any) -> None:
            raise engine_module._core.error("broken")

        m.setattr(engine_module._core, call, boom)
        with pytest.raises(EvalError, match="durable-rules"):
            eng.matches(eng.compiled.projection.fact(context))
    assert eng.facts_held() == []
    for c in CONTEXTS:
        assert eng.matches(eng.compiled.projection.fact(c)) == matching_rules(ps.rules, c)


def test_an_unexpected_answer_is_an_eval_error(clean: tuple[PolicySet, Engine], monkeypatch: pytest.MonkeyPatch) -> None:
    _, eng = clean
    monkeypatch.setattr(engine_module._core, "assert_fact", lambda *_: (2, 1))  # "observed"
    with pytest.raises(EvalError, match="answered 2"):
        eng.matches(eng.compiled.projection.fact(ctx()))


def test_whole_rules_fire_once_when_they_match(clean: tuple[PolicySet, Engine]) -> None:
    """Compiled with ``fits`` (as the Decider does), a rule's part fires only when the whole rule
    (when and not unless) holds: what durable-rules runs per decision is what matched."""
    ps, _ = clean
    compiled = compile_policy_set(ps, fits=engine_module.fits)
    eng = Engine(compiled)
    for c in CONTEXTS:
        fired = eng.fired(compiled.projection.fact(c))
        assert {name.split("#")[0] for name in fired} == matching_rules(ps.rules, c)
        assert eng.matches(compiled.projection.fact(c)) == matching_rules(ps.rules, c)


def test_threads_get_the_same_answers_as_serially(clean: tuple[PolicySet, Engine]) -> None:
    ps, eng = clean
    other = Engine(compile_policy_set(ruleset(Rule("t.r", "permit", Eq("operation", "delete"), T, "§1", "p"))))
    work = [(e, c) for c in CONTEXTS * 30 for e in (eng, other)]
    serial = [e.matches(e.compiled.projection.fact(c)) for e, c in work]
    with ThreadPoolExecutor(max_workers=8) as pool:
        parallel = list(pool.map(lambda ec: ec[0].matches(ec[0].compiled.projection.fact(ec[1])), work))
    assert parallel == serial
    assert eng.facts_held() == []


def test_more_than_64_alternatives_that_can_hold_at_once_do_not_fit() -> None:
    """durable-rules' core registers an $or of 65 alternatives but fails when a fact makes all of
    them true (error 303, measured): ``fits`` says no, so a reload refuses such a rule and
    ``kti-policy check`` names it; equalities on one field exclude each other and fit."""
    import durable_rules_engine as core

    wide = {"r": {"all": [{"m": {"$or": [{f"m{i}": True} for i in range(65)]}}]}}
    assert engine_module.fits(wide) is not None and "error 303" in str(engine_module.fits(wide))
    handle = core.create_ruleset("wide_probe", json.dumps(wide))  # the core itself takes it ...
    with pytest.raises(core.error, match="303"):  # ... and fails on the fact
        core.assert_fact(handle, json.dumps({"sid": "0", "id": "x", **{f"m{i}": True for i in range(65)}}))
    assert engine_module.fits({"r": {"all": [{"m": {"$or": [{f"m{i}": True} for i in range(64)]}}]}}) is None
    one_field = {"r": {"all": [{"m": {"$or": [{"f": f"v{i}"} for i in range(200)]}}]}}
    assert engine_module.fits(one_field) is None

    cats = tuple(f"c{i}" for i in range(65))
    ps = ruleset(Rule("wide.rule", "forbid", ContainsAny("data_categories", cats), T, "§1", "p"), version="wide")
    with pytest.raises(PolicyErrors) as err:
        Decider(ps)
    assert [e.code for e in err.value.errors] == ["engine_limit"] and "wide.rule" in str(err.value.errors[0])
