"""kti-policy beside its peers on one workload: the same five rules in every engine (issue 14).

    python bench/peer_bench.py [-n 20000] [--seed 2026] [--rounds 5] [--json FILE]

The five rules of ``bench/peers/five.yaml`` (disclosure.outside-parties, marketing.objected,
retention.relationship-ended, content.special-categories, purposes.register) are written three
ways: the kti-policy pack itself, Cedar (``bench/peers/five.cedar``, run by cedarpy, Cedar's Rust
core, when installed: ``pip install -e '.[bench]'``) and durable-rules by hand
(``bench/peers/durable_five.py``: natural fields, assert + retract).

The seeded workload of ``bench/workload.py`` is mapped once, outside the timed loops, to each
engine's input: a kti ``Operation`` and the recorded ``SubjectFacts``; a durable fact; a Cedar
request and the data subject as a Cedar entity. The facts a request carries inline are joined
to the recorded ones with kti-policy's ``SubjectFacts.merge_inline`` for the peers (kti-policy does
that inside ``decide``). Before timing, every engine decides every operation (and some hand-made
edge cases) and the run stops with exit code 1 unless all agree on allow/deny and on the rules
that decided: engines deciding different things would make the comparison worthless.

Each engine is then timed per decision, best of ``--rounds`` (by decisions/s; the engines take
turns round by round, so a slow spell of a shared machine is spread over all); the table gives
decisions/s, mean and p99 microseconds and the ratio to kti-policy with its match cache off.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
PEERS = BENCH / "peers"
sys.path.insert(0, str(BENCH))

from machine import describe, machine  # noqa: E402
from peers import durable_five  # noqa: E402
from workload import generate  # noqa: E402

from kti_policy.decide.decision import DEFAULT_DENY, Decider  # noqa: E402
from kti_policy.decide.operation import Operation, parse_operation  # noqa: E402
from kti_policy.facts.fold import SubjectFacts  # noqa: E402
from kti_policy.policy.loader import load_policy_set  # noqa: E402
from kti_policy.policy.model import PolicySet  # noqa: E402

try:
    import cedarpy
except ImportError:  # optional: pip install -e '.[bench]'
    cedarpy = None

NOW = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)
CEDAR_POLICIES = PEERS / "five.cedar"
CEDAR_SCHEMA = PEERS / "five.cedarschema"
PRINCIPAL = {"type": "System", "id": "peer-bench"}
KTI_UNCACHED = "kti-policy, match cache off"


class Disagreement(Exception):
    """The engines decided some operation differently."""


@dataclass(frozen=True)
class Case:
    """One operation, in every engine's input."""

    body: dict[str, Any]
    op: Operation
    recorded: SubjectFacts  # what kti-policy is given (it joins the inline facts itself)
    facts: SubjectFacts  # recorded joined with inline: what the peers are given
    durable: dict[str, Any]
    cedar_request: dict[str, Any] | None
    cedar_entities: Any


# --- the workload in each engine's input ------------------------------------------------------

def subject_attrs(facts: SubjectFacts) -> dict[str, Any]:
    """The data subject's facts the five rules read (``relationship`` only when known)."""
    attrs: dict[str, Any] = {"consents": sorted(facts.consents), "objections": sorted(facts.objections),
                             "erasure_requested": facts.erasure_requested}
    if facts.relationship is not None:
        attrs["relationship"] = facts.relationship
    return attrs


def cedar_request(body: dict[str, Any]) -> dict[str, Any]:
    context: dict[str, Any] = {"data_categories": list(body.get("data_categories") or ())}
    for key in ("purpose", "source"):
        if body.get(key) is not None:
            context[key] = body[key]
    if body.get("recipient"):
        context["recipient"] = {k: v for k, v in body["recipient"].items() if k in ("type", "country")}
    if body.get("legal_basis"):
        context["legal_basis"] = {k: v for k, v in body["legal_basis"].items() if k in ("type", "reference")}
    return {"principal": PRINCIPAL, "action": {"type": "Action", "id": body["operation"]},
            "resource": {"type": "DataSubject", "id": body["subject"]["id"]}, "context": context}


def build_cases(items: Iterable[tuple[dict[str, Any], SubjectFacts]], ps: PolicySet,
                cedar: bool = True) -> list[Case]:
    entities: dict[str, Any] = {}  # one parsed Cedar entity per distinct subject state
    cases = []
    for i, (body, recorded) in enumerate(items):
        op = parse_operation(body, ps.vocabulary)
        facts = recorded.merge_inline(op.inline_facts)
        attrs = subject_attrs(facts)
        request = handle = None
        if cedar and cedarpy is not None:
            request = cedar_request(body)
            doc = json.dumps([{"uid": request["resource"], "attrs": attrs, "parents": []}], sort_keys=True)
            handle = entities.get(doc)
            if handle is None:
                handle = entities[doc] = cedarpy.Entities.from_json_str(doc)
        cases.append(Case(body, op, recorded, facts, durable_five.fact(body, attrs, f"f{i}"), request, handle))
    return cases


def edge_items(ps: PolicySet) -> list[tuple[dict[str, Any], SubjectFacts]]:
    """Hand-made operations the workload rarely or never reaches: every purpose, every special
    category, every recipient type, record_call, subject_request, Finnish authorities with and
    without a legal obligation, for subjects clean, ended, objected and consented."""
    v = ps.vocabulary
    states = [
        SubjectFacts(),
        SubjectFacts(relationship="ended"),
        SubjectFacts(relationship="ended", erasure_requested=True, consents=frozenset({"disclosure"})),
        SubjectFacts(objections=frozenset({"marketing"})),
        SubjectFacts(objections=frozenset({"direct_marketing", "disclosure"})),
        SubjectFacts(consents=frozenset({"disclosure", "direct_marketing"})),
    ]
    bodies: list[dict[str, Any]] = []
    for purpose in v.ids("purpose"):
        bodies += [{"operation": op, "purpose": purpose, "data_categories": ["email"], **extra}
                   for op, extra in [("process", {}), ("collect", {"source": "data_subject"}),
                                     ("record_call", {}),
                                     ("disclose", {"recipient": {"type": "partner", "country": "FI"}})]]
    for cat in v.ids("data_category"):
        bodies += [{"operation": op, "data_categories": ["name", cat], **extra}
                   for op, extra in [("process", {"purpose": "research"}), ("retain", {}), ("delete", {}),
                                     ("collect", {"source": "client"})]]
    for rtype in v.ids("recipient_type"):
        for country in ("FI", "SE", "US"):
            for basis in (None, "legal_obligation", "consent"):
                body: dict[str, Any] = {"operation": "disclose", "data_categories": ["email"],
                                        "recipient": {"type": rtype, "country": country}}
                if basis:
                    body["legal_basis"] = {"type": basis, "reference": "Ulosottokaari 3:64"}
                bodies.append(body)
    bodies += [{"operation": "record_call"}, {"operation": "delete"},
               {"operation": "subject_request", "request": {"type": "access"}}]
    out = []
    for k, state in enumerate(states):
        for body in bodies:
            out.append(({**body, "subject": {"id": f"edge-{k}"}, "at": "2026-03-02T08:00:00+00:00"}, state))
    return out


# --- the engines --------------------------------------------------------------------------------

def kti(decider_factory: Callable[[], Decider]) -> Callable[[list[Case]], Callable[[Case], bool]]:
    def prepare(_cases: list[Case]) -> Callable[[Case], bool]:
        decide = decider_factory().decide
        return lambda c: decide(c.op, c.recorded, NOW).allowed
    return prepare


def durable(_cases: list[Case]) -> Callable[[Case], bool]:
    decide = durable_five.DurableFive().decide
    return lambda c: decide(c.durable)


def cedar_policies() -> Any:
    text = CEDAR_POLICIES.read_text(encoding="utf-8")
    result = cedarpy.validate_policies(text, CEDAR_SCHEMA.read_text(encoding="utf-8"))
    if not result.validation_passed:
        raise SystemExit(f"{CEDAR_POLICIES} does not validate against {CEDAR_SCHEMA}: {result.errors}")
    return cedarpy.PolicySet.from_str(text)


def cedar(_cases: list[Case]) -> Callable[[Case], bool]:
    policies = cedar_policies()
    authorize = cedarpy.is_authorized
    return lambda c: authorize(c.cedar_request, policies, c.cedar_entities).allowed


def engines(ps: PolicySet) -> dict[str, Callable[[list[Case]], Callable[[Case], bool]]]:
    out = {
        "durable-rules, the same rules by hand (assert + retract)": durable,
        "cedarpy is_authorized (Cedar's Rust core)": cedar,
        KTI_UNCACHED: kti(lambda: Decider(ps, cache_size=0)),
        "kti-policy, reference evaluator": kti(lambda: Decider(ps, use_engine=False)),
        # a new Decider each round, so that every round is a first pass through an empty cache
        "kti-policy, match cache on (first pass)": kti(lambda: Decider(ps)),
    }
    if cedarpy is None:
        del out["cedarpy is_authorized (Cedar's Rust core)"]
    return out


# --- agreement ------------------------------------------------------------------------------------

def check_lists(ps: PolicySet) -> list[str]:
    """The value lists written out in the peers are the vocabulary's."""
    problems = []
    lists = {"register_purposes": durable_five.REGISTER_PURPOSES,
             "marketing_purposes": durable_five.MARKETING_PURPOSES}
    for name, written in lists.items():
        if sorted(ps.vocabulary.lists[name].values) != sorted(written):
            problems.append(f"durable_five: {name} differs from vocabulary.yaml")
    special = sorted(e.id for e in ps.vocabulary.kinds["data_category"].values() if e.special)
    if special != sorted(durable_five.SPECIAL):
        problems.append("durable_five: the special categories differ from vocabulary.yaml")
    if cedarpy is not None:
        text = CEDAR_POLICIES.read_text(encoding="utf-8")
        for value in [*ps.vocabulary.lists["register_purposes"].values, *special]:
            if f'"{value}"' not in text:
                problems.append(f"five.cedar: {value!r} is missing")
    return problems


def agreement(ps: PolicySet, cases: list[Case], cedar_too: bool = True) -> list[str]:
    """Every engine's decision and deciding rules for every case; the differences, described."""
    reference = Decider(ps, use_engine=False)
    uncached = Decider(ps, cache_size=0)
    cached = Decider(ps)
    peers = durable_five.DurableFive()
    policies = cedar_policies() if cedar_too and cedarpy is not None else None
    problems = check_lists(ps)
    for i, c in enumerate(cases):
        ref = reference.decide(c.op, c.recorded, NOW)
        deciding = set(ref.rule_ids) - {DEFAULT_DENY}
        seen: dict[str, Any] = {"reference": (ref.allowed, sorted(ref.matched))}
        for name, d in (("kti uncached", uncached), ("kti cached", cached)):
            got = d.decide(c.op, c.recorded, NOW)
            seen[name] = (got.allowed, sorted(got.matched))
        fired = peers.matches(c.durable)
        seen["durable"] = (peers.decide(c.durable), sorted(set(fired)))  # durable fires a rule once per $or branch that holds
        if policies is not None:
            res = cedarpy.is_authorized(c.cedar_request, policies, c.cedar_entities)
            ids = res.diagnostics.id_annotations_by_reason
            if res.diagnostics.errors:
                problems.append(f"case {i}: Cedar evaluation errors {res.diagnostics.errors}: {c.body}")
            # Cedar names only the policies that decided (the forbids of a deny, the permits of an allow)
            seen["cedar"] = (res.allowed, sorted(ids.get(r, r) for r in res.diagnostics.reasons))
            if set(seen["cedar"][1]) != deciding:
                problems.append(f"case {i}: Cedar decided by {seen['cedar'][1]}, kti by {sorted(deciding)}: "
                                f"{c.body} facts {subject_attrs(c.facts)}")
        decisions = {k: v[0] for k, v in seen.items()}
        matched = {k: v[1] for k, v in seen.items() if k != "cedar"}
        if len(set(decisions.values())) > 1 or len({tuple(m) for m in matched.values()}) > 1:
            problems.append(f"case {i}: {seen}: {c.body} facts {subject_attrs(c.facts)}")
    return problems


# --- timing ---------------------------------------------------------------------------------------

def run(decide: Callable[[Case], bool], cases: list[Case]) -> dict[str, Any]:
    times: list[float] = []
    allowed = 0
    clock = time.perf_counter_ns
    start = clock()
    for c in cases:
        t0 = clock()
        ok = decide(c)
        times.append((clock() - t0) / 1000)
        allowed += ok
    total = (clock() - start) / 1e9
    times.sort()
    return {"decisions": len(cases), "decisions_per_s": round(len(cases) / total),
            "mean_us": round(statistics.fmean(times), 1),
            "p99_us": round(times[min(len(times) - 1, int(len(times) * 0.99))], 1),
            "allowed": allowed}


def best_of(engines: dict[str, Callable[[list[Case]], Callable[[Case], bool]]], cases: list[Case],
            rounds: int) -> dict[str, dict[str, Any]]:
    """Each engine's best round (by decisions/s). The rounds take turns (every engine once, then
    again), so that a slow spell of the shared machine does not fall on one engine alone."""
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in engines}
    for _ in range(rounds):
        for name, prepare in engines.items():
            decide = prepare(cases)  # outside the timing: registration, parsing
            runs[name].append(run(decide, cases))
    out = {}
    for name, rs in runs.items():
        best = max(rs, key=lambda r: r["decisions_per_s"])
        out[name] = {**best, "rounds_decisions_per_s": [r["decisions_per_s"] for r in rs]}
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--policies", default=str(PEERS), help="the five-rule kti-policy pack")
    ap.add_argument("-n", type=int, default=20_000)
    ap.add_argument("--seed", type=int, default=2026)
    ap.add_argument("--rounds", type=int, default=5, help="timed rounds per engine; the best counts")
    ap.add_argument("--json", metavar="FILE")
    args = ap.parse_args(argv)

    info = machine()
    print(describe(info))
    ps = load_policy_set(args.policies)
    cases = build_cases(generate(args.n, args.seed, ps.vocabulary), ps)
    edges = build_cases(edge_items(ps), ps)
    print(f"policies: {args.policies} ({len(ps.rules)} rules: {', '.join(r.id for r in ps.rules)}; "
          f"version {ps.version}); {args.n} operations, seed {args.seed}, best of {args.rounds}")
    if cedarpy is None:
        print("cedarpy is not installed (pip install -e '.[bench]'): the Cedar row is skipped")

    problems = agreement(ps, cases + edges)
    if problems:
        print(f"DISAGREEMENT: the engines decide {len(problems)} operations differently; no timings:",
              file=sys.stderr)
        for p in problems[:20]:
            print("  " + p, file=sys.stderr)
        return 1
    allowed = sum(Decider(ps, use_engine=False).decide(c.op, c.recorded, NOW).allowed for c in cases)
    print(f"agreement: every engine decides all {len(cases)} operations and {len(edges)} edge cases alike "
          f"(allow/deny and the deciding rules); {allowed} allowed, {len(cases) - allowed} denied")

    todo = engines(ps)
    for prepare in todo.values():  # warm up: imports, registration, first-call caches
        run(prepare(cases[:200]), cases[:200])
    results = best_of(todo, cases, args.rounds)
    for name, r in results.items():
        if r["allowed"] != allowed:
            print(f"{name} allowed {r['allowed']} in the timed run, not {allowed}", file=sys.stderr)
            return 1
    base = results[KTI_UNCACHED]["decisions_per_s"]
    print(f"{'engine':58} {'dec/s':>9} {'mean us':>9} {'p99 us':>9} {'vs kti uncached':>16}")
    for name, r in results.items():
        r["vs_kti_uncached"] = round(r["decisions_per_s"] / base, 2)
        print(f"{name:58} {r['decisions_per_s']:>9,} {r['mean_us']:>9} {r['p99_us']:>9} "
              f"{r['vs_kti_uncached']:>15}x")
    print("decisions/s of every round, in the order above: " + "; ".join(
        "/".join(f"{x:,}" for x in r["rounds_decisions_per_s"]) for r in results.values()))
    if args.json:
        report = {"machine": info, "policy_version": ps.version, "rules": [r.id for r in ps.rules],
                  "workload": {"n": args.n, "seed": args.seed, "rounds": args.rounds},
                  "cedarpy": getattr(cedarpy, "__version__", None) if cedarpy else None,
                  "agreement": {"operations": len(cases), "edge_cases": len(edges), "allowed": allowed},
                  "results": results}
        Path(args.json).write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
