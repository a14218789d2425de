"""The peer comparison (bench/peer_bench.py) compares engines that decide alike.

The five rules exist three times (bench/peers/five.yaml, five.cedar, durable_five.py); this runs the
bench's agreement check on a few hundred workload operations and its hand-made edge cases, so that
none of the three drifts unseen. No timing is asserted. The Cedar part needs cedarpy
(``pip install -e '.[bench]'``) and is skipped without it.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "bench"
sys.path.insert(0, str(BENCH))

import peer_bench  # noqa: E402
from peers import durable_five  # noqa: E402

from kti_policy.policy.loader import load_policy_set  # noqa: E402

N = 400


@pytest.fixture(scope="module")
def ps():
    return load_policy_set(peer_bench.PEERS)


@pytest.fixture(scope="module")
def items(ps):
    return peer_bench.generate(N, 2026, ps.vocabulary) + peer_bench.edge_items(ps)


def test_the_pack_holds_the_five_rules(ps):
    assert [r.id for r in ps.rules] == list(durable_five.RULES)
    assert {r.id: r.effect for r in ps.rules} == durable_five.EFFECTS


def test_durable_by_hand_agrees_with_kti_policy(ps, items):
    cases = peer_bench.build_cases(items, ps, cedar=False)
    assert peer_bench.agreement(ps, cases, cedar_too=False) == []
    # the workload reaches every rule, and both answers
    reached = set()
    from kti_policy.decide.decision import Decider
    decider = Decider(ps, use_engine=False)
    decisions = [decider.decide(c.op, c.recorded, peer_bench.NOW) for c in cases]
    for d in decisions:
        reached |= d.matched
    assert reached == set(durable_five.RULES)
    assert {d.allowed for d in decisions} == {True, False}


def test_cedar_agrees_with_kti_policy(ps, items):
    pytest.importorskip("cedarpy")
    cases = peer_bench.build_cases(items, ps)
    assert peer_bench.agreement(ps, cases) == []


def test_a_drifted_peer_is_caught_and_the_bench_fails(ps, items, monkeypatch, capsys):
    # durable's outside-parties forgets the consent exception
    rule = durable_five.RULES["disclosure.outside-parties"]
    drifted = {"all": [{"m": {"$and": rule["all"][0]["m"]["$and"][:-1]}}]}
    monkeypatch.setitem(durable_five.RULES, "disclosure.outside-parties", drifted)
    cases = peer_bench.build_cases(items, ps, cedar=False)
    problems = peer_bench.agreement(ps, cases, cedar_too=False)
    assert problems and all("disclosure.outside-parties" in p for p in problems)
    assert peer_bench.main(["-n", "300", "--rounds", "1"]) == 1
    assert "DISAGREEMENT" in capsys.readouterr().err


def test_a_value_list_out_of_step_with_the_vocabulary_is_caught(ps, monkeypatch):
    monkeypatch.setattr(durable_five, "REGISTER_PURPOSES", durable_five.REGISTER_PURPOSES[:-1])
    assert any("register_purposes" in p for p in peer_bench.check_lists(ps))
