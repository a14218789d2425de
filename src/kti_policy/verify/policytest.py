"""YAML policy tests: load cases with positions, run them, report (text, JUnit) and coverage.

A case gives a decision request (``input``), recorded facts (``facts``) and what must come out
(``expect``: the decision, the exact set of reason rule ids, obligations). A rule counts as
covered when it is among the reasons of at least one case.
"""

from __future__ import annotations

import time
import xml.etree.ElementTree as ET
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from kti_policy.decide.decision import DEFAULT_DENY, Decider
from kti_policy.decide.operation import parse_operation
from kti_policy.errors import KtiError, PolicyError, Position
from kti_policy.facts.fold import EVENT_TYPES, FactEvent, SubjectFacts, fold_events, parse_time
from kti_policy.policy.model import Eq, In, PolicySet
from kti_policy.policy.yamlpos import LList, LMap, load_text

TESTS_DIR = "tests"
_FILE_KEYS = ("suite", "description", "defaults", "cases")
_CASE_KEYS = ("name", "description", "input", "facts", "events", "expect")
_EXPECT_KEYS = ("decision", "rules", "obligations")
_FACT_KEYS = ("consents", "objections", "relationship", "erasure_requested", "access_requests", "kind",
              "relationship_started_at", "relationship_ended_at", "erasure_requested_at", "restricted",
              "restricted_at", "withdrawn_consents")
_EVENT_KEYS = ("type", "occurred_at", "data")


@dataclass(frozen=True)
class TestCase:
    __test__ = False  # not a pytest class
    suite: str
    name: str
    input: dict[str, Any]
    facts: dict[str, Any]
    expect: dict[str, Any]
    position: Position
    # recorded events (type, occurred_at, data), folded as they stood at the input's ``at``
    events: tuple[dict[str, Any], ...] = ()


@dataclass
class CaseResult:
    case: TestCase
    passed: bool
    failures: list[str] = field(default_factory=list)
    decision: dict[str, Any] | None = None
    seconds: float = 0.0
    matched: frozenset[str] = frozenset()  # every rule whose conditions held, deciding or not


@dataclass
class TestRun:
    __test__ = False
    results: list[CaseResult]
    errors: list[PolicyError]
    covered: set[str]
    rule_ids: list[str]
    # rules that apply to every case of their operation (``when: {operation: delete}``): no other side
    unconditional: frozenset[str] = frozenset()

    @property
    def passed(self) -> int:
        return sum(1 for r in self.results if r.passed)

    @property
    def failed(self) -> int:
        return len(self.results) - self.passed

    @property
    def ok(self) -> bool:
        return not self.errors and self.failed == 0 and bool(self.results)

    @property
    def uncovered(self) -> list[str]:
        return [r for r in self.rule_ids if r not in self.covered]

    @property
    def one_sided(self) -> list[str]:
        """Covered rules with no case on the other side.

        The other side is a case with the same operation as one the rule decides, in which the
        rule does not apply: the nearest case that goes the other way. A rule tested only where it
        fires would not notice a condition that was made too wide.
        """
        deciding_ops: dict[str, set[Any]] = {}
        for r in self.results:
            if r.decision:
                for reason in r.decision["reasons"]:
                    deciding_ops.setdefault(reason["rule"], set()).add(r.case.input.get("operation"))
        out = []
        for rid in self.rule_ids:
            ops = deciding_ops.get(rid)
            if rid in self.unconditional:
                continue
            if ops and not any(
                r.decision and rid not in r.matched and r.case.input.get("operation") in ops for r in self.results
            ):
                out.append(rid)
        return out

    def summary(self) -> str:
        line = f"{self.passed} passed, {self.failed} failed"
        if self.errors:
            line += f", {len(self.errors)} errors"
        return line


def _plain(value: Any) -> Any:
    """Positioned YAML data back to plain dicts and lists."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def yaml_files(folder: Path) -> list[Path]:
    """Every ``*.yaml``/``*.yml`` file below ``folder``, sorted (none when it is not a folder)."""
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix in (".yaml", ".yml"))


def test_files(directory: str | Path) -> list[Path]:
    return yaml_files(Path(directory) / TESTS_DIR)


def load_cases_text(text: str, display: str) -> tuple[list[TestCase], list[PolicyError]]:
    data, errors = load_text(text, display)
    cases: list[TestCase] = []
    if data is None:
        return cases, errors

    def err(code: str, msg: str, pos: Position) -> None:
        errors.append(PolicyError(code, msg, pos))

    if not isinstance(data, LMap):
        err("wrong_type", "a test file must be a mapping with suite and cases", Position(display, 1, 1))
        return cases, errors
    for key in data:
        if key not in _FILE_KEYS:
            err("unknown_key", f"unknown key {key!r} in the test file; allowed: {', '.join(_FILE_KEYS)}", data.key_at(key))
    suite = data.get("suite") if isinstance(data.get("suite"), str) else Path(display).stem
    defaults = data.get("defaults") or {}
    if not isinstance(defaults, dict):
        err("wrong_type", "defaults must be a mapping (merged into every case input)", data.at("defaults"))
        defaults = {}
    raw_cases = data.get("cases")
    if not isinstance(raw_cases, LList) or not raw_cases:
        err("missing_key", "the test file needs a non-empty list of cases", data.at("cases"))
        return cases, errors
    seen: dict[str, Position] = {}
    for i, c in enumerate(raw_cases):
        pos = raw_cases.at(i)
        if not isinstance(c, LMap):
            err("wrong_type", f"cases[{i}] must be a mapping", pos)
            continue
        for key in c:
            if key not in _CASE_KEYS:
                err("unknown_key", f"unknown key {key!r} in cases[{i}]; allowed: {', '.join(_CASE_KEYS)}", c.key_at(key))
        name = c.get("name")
        if not isinstance(name, str) or not name.strip():
            err("missing_key", f"cases[{i}] needs a name", pos)
            name = f"case {i + 1}"
        elif name in seen:
            err("duplicate_case", f"case name {name!r} is already used at line {seen[name].line}", c.at("name"))
        seen.setdefault(name, pos)
        inp = c.get("input")
        if not isinstance(inp, LMap):
            err("missing_key", f"case {name!r} needs an input mapping (a decision request)", c.at("input") if "input" in c else pos)
            continue
        facts = c["facts"] if c.get("facts") is not None else LMap()
        if not isinstance(facts, LMap):
            err("wrong_type", f"case {name!r}: facts must be a mapping", c.at("facts"))
            continue
        for key in facts:
            if key not in _FACT_KEYS:
                err("unknown_key", f"case {name!r}: unknown fact {key!r}; allowed: {', '.join(_FACT_KEYS)}", facts.key_at(key))
        events = c.get("events") or LList()
        if not _check_events(events, name, c, err):
            continue
        if events and "facts" in c:
            err("invalid_value", f"case {name!r}: give facts or events, not both", c.key_at("events"))
            continue
        expect = c.get("expect")
        if not isinstance(expect, LMap):
            err("missing_key", f"case {name!r} needs an expect mapping", c.at("expect") if "expect" in c else pos)
            continue
        for key in expect:
            if key not in _EXPECT_KEYS:
                err("unknown_key", f"case {name!r}: unknown key {key!r} in expect; allowed: {', '.join(_EXPECT_KEYS)}", expect.key_at(key))
        if expect.get("decision") not in ("allow", "deny"):
            err("invalid_value", f"case {name!r}: expect.decision must be allow or deny", expect.at("decision"))
            continue
        if "rules" in expect and not (isinstance(expect["rules"], list) and all(isinstance(r, str) for r in expect["rules"])):
            err("wrong_type", f"case {name!r}: expect.rules must be a list of rule ids", expect.at("rules"))
            continue
        if "obligations" in expect and not (isinstance(expect["obligations"], list) and all(isinstance(o, dict) and "type" in o for o in expect["obligations"])):
            err("wrong_type", f"case {name!r}: expect.obligations must be a list of mappings with a type", expect.at("obligations"))
            continue
        merged = {**_plain(defaults), **_plain(inp)}
        cases.append(TestCase(str(suite), name, merged, _plain(facts), _plain(expect), pos, tuple(_plain(events))))
    return cases, errors


def _check_events(events: Any, name: str, c: LMap, err: Any) -> bool:
    """Events of a case: a list of {type, occurred_at, data} with known types and times."""
    if not isinstance(events, LList):
        err("wrong_type", f"case {name!r}: events must be a list of {{type, occurred_at, data}}", c.at("events"))
        return False
    ok = True
    for j, e in enumerate(events):
        where = events.at(j)
        if not isinstance(e, LMap) or "type" not in e or "occurred_at" not in e:
            err("wrong_type", f"case {name!r}: events[{j}] needs type and occurred_at", where)
            ok = False
            continue
        for key in e:
            if key not in _EVENT_KEYS:
                err("unknown_key", f"case {name!r}: events[{j}] has unknown key {key!r}; allowed: {', '.join(_EVENT_KEYS)}", e.key_at(key))
                ok = False
        if e["type"] not in EVENT_TYPES:
            err("invalid_value", f"case {name!r}: events[{j}].type {e['type']!r} is not an event type; known: {', '.join(EVENT_TYPES)}", e.at("type"))
            ok = False
        try:
            parse_time(e["occurred_at"])
        except (TypeError, ValueError):
            err("invalid_value", f"case {name!r}: events[{j}].occurred_at {e['occurred_at']!r} is not an ISO 8601 time", e.at("occurred_at"))
            ok = False
    return ok


def case_facts(case: TestCase, at: datetime | None) -> SubjectFacts:
    """The recorded facts of a case: its ``facts``, or its ``events`` folded as of ``at`` (the
    input's ``at``; None: every event)."""
    if not case.events:
        return SubjectFacts.from_dict(case.facts)
    events = [
        FactEvent(e["type"], parse_time(e["occurred_at"]), e.get("data") or {}, i) for i, e in enumerate(case.events)
    ]
    return fold_events(events, at)


def load_cases(directory: str | Path) -> tuple[list[TestCase], list[PolicyError]]:
    return load_case_files(test_files(directory))


def load_case_files(paths: Iterable[Path]) -> tuple[list[TestCase], list[PolicyError]]:
    """The cases of these test files, and every problem (an unreadable file is one)."""
    cases: list[TestCase] = []
    errors: list[PolicyError] = []
    for path in paths:
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            errors.append(PolicyError("policy_parse_error", f"cannot read: {exc}", Position(str(path))))
            continue
        c, e = load_cases_text(text, str(path))
        cases += c
        errors += e
    return cases, errors


def check_rule_references(cases: list[TestCase], policy_set: PolicySet) -> list[PolicyError]:
    """Expected rule ids must exist: a renamed rule should fail loudly, not silently."""
    known = {r.id for r in policy_set.rules} | {DEFAULT_DENY}
    out = []
    for case in cases:
        for rid in case.expect.get("rules", []):
            if rid not in known:
                out.append(PolicyError("unknown_rule", f"case {case.name!r} expects unknown rule {rid!r}", case.position))
    return out


def run_case(decider: Decider, case: TestCase) -> CaseResult:
    start = time.perf_counter()
    failures: list[str] = []
    try:
        op = parse_operation(case.input, decider.policy_set.vocabulary, field_prefix="input.")
        facts = case_facts(case, op.at)
    except (KtiError, ValueError, TypeError, KeyError) as exc:
        return CaseResult(case, False, [f"the input is not a valid request: {exc}"], None, time.perf_counter() - start)
    decision = decider.decide(op, facts)
    got = decision.to_dict("en")
    exp = case.expect
    if got["decision"] != exp["decision"]:
        failures.append(f"decision: expected {exp['decision']}, got {got['decision']} (reasons: {', '.join(decision.rule_ids)})")
    if "rules" in exp and sorted(set(exp["rules"])) != sorted(set(decision.rule_ids)):
        missing = sorted(set(exp["rules"]) - set(decision.rule_ids))
        extra = sorted(set(decision.rule_ids) - set(exp["rules"]))
        failures.append(f"rules: expected {sorted(exp['rules'])}, got {sorted(decision.rule_ids)}" + (f"; missing {missing}" if missing else "") + (f"; unexpected {extra}" if extra else ""))
    for want in exp.get("obligations", []):
        if not any(all(o.get(k) == v for k, v in want.items()) for o in got["obligations"]):
            failures.append(f"obligation {want} not found; got {[{k: v for k, v in o.items() if k != 'message'} for o in got['obligations']]}")
    return CaseResult(case, not failures, failures, got, time.perf_counter() - start, frozenset(decision.matched))


def run_tests(directory: str | Path, policy_set: PolicySet, decider: Decider | None = None) -> TestRun:
    cases, errors = load_cases(directory)
    errors += check_rule_references(cases, policy_set)
    decider = decider or Decider(policy_set)
    results = [run_case(decider, c) for c in cases]
    covered = {rid for r in results if r.decision for rid in (x["rule"] for x in r.decision["reasons"])}
    unconditional = frozenset(
        r.id for r in policy_set.rules
        if r.unless is None and isinstance(r.when, (Eq, In)) and r.when.path == "operation"
    )
    return TestRun(results, errors, covered, [r.id for r in policy_set.rules], unconditional)


def junit_xml(run: TestRun) -> bytes:
    suites = ET.Element("testsuites", tests=str(len(run.results)), failures=str(run.failed), errors=str(len(run.errors)))
    by_suite: dict[str, list[CaseResult]] = {}
    for r in run.results:
        by_suite.setdefault(r.case.suite, []).append(r)
    for name, results in by_suite.items():
        s = ET.SubElement(
            suites, "testsuite", name=name, tests=str(len(results)),
            failures=str(sum(1 for r in results if not r.passed)), errors="0",
            time=f"{sum(r.seconds for r in results):.6f}",
        )
        for r in results:
            tc = ET.SubElement(s, "testcase", classname=f"policies.{name}", name=r.case.name,
                               file=r.case.position.file, line=str(r.case.position.line), time=f"{r.seconds:.6f}")
            if not r.passed:
                f = ET.SubElement(tc, "failure", message=r.failures[0])
                f.text = "\n".join(r.failures)
    if run.errors:
        s = ET.SubElement(suites, "testsuite", name="policy-test-files", tests=str(len(run.errors)), failures="0", errors=str(len(run.errors)))
        for e in run.errors:
            tc = ET.SubElement(s, "testcase", classname="policies.files", name=str(e.position))
            err = ET.SubElement(tc, "error", message=e.message, type=e.code)
            err.text = str(e)
    return ET.tostring(suites, encoding="utf-8", xml_declaration=True)
