"""lint_policy_set: rules that can never decide anything, proved, never guessed."""

from __future__ import annotations

import itertools
import re
import shutil
from pathlib import Path
from typing import Any

from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kti_policy.policy.conditions import rule_matches
from kti_policy.policy.loader import load_policy_set
from kti_policy.policy.model import (
    All,
    AnyOf,
    Condition,
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
    VocabEntry,
    Vocabulary,
)
from kti_policy.tools.cli import main

DATA = Path(__file__).resolve().parent.parent / "data"
REPO = Path(__file__).resolve().parents[2]

LINT = """\
policy: lintme
title: {fi: Tarkistus, en: Lint}
source: "§1"
rules:
  - id: two.operations
    effect: permit
    when: {all: [{operation: process}, {operation: delete}]}
    reason: {fi: a, en: a}
  - id: in.versus.equality
    effect: forbid
    when:
      all:
        - purpose: {in: [customer_relationship, site_statistics]}
        - purpose: direct_marketing
    reason: {fi: a, en: a}
  - id: absent.versus.equality
    effect: permit
    when: {operation: disclose, all: [{recipient.country: {present: false}}, {recipient.country: FI}]}
    reason: {fi: a, en: a}
  - id: unless.always
    effect: permit
    when: {operation: retain}
    unless: {operation: {in: [retain, delete]}}
    reason: {fi: a, en: a}
  - id: collect.scraping
    effect: permit
    when: {operation: collect, source: web_scraping, purpose: direct_marketing}
    reason: {fi: a, en: a}
  - id: collect.no-scraping
    effect: forbid
    when: {source: {in: [web_scraping]}}
    reason: {fi: a, en: a}
  - id: disclose.third-party
    effect: permit
    when: {operation: disclose, recipient.type: third_party}
    reason: {fi: a, en: a}
  - id: disclose.consented
    effect: forbid
    when: {operation: disclose, recipient.type: third_party, subject.consents: {contains: disclosure}}
    reason: {fi: a, en: a}
  - id: disclose.not-consented
    effect: forbid
    when: {operation: disclose, not: {subject.consents: {contains: disclosure}}}
    reason: {fi: a, en: a}
  - id: retain.active
    effect: permit
    when: {operation: retain, subject.relationship: active}
    reason: {fi: a, en: a}
  - id: retain.active-again
    effect: permit
    when: {all: [{subject.relationship: active}, {operation: {in: [retain]}}]}
    reason: {fi: b, en: b}
  # none of these may warn
  - id: cookie.no-country
    effect: permit
    when: {operation: store_cookie, recipient.country: null, all: [{recipient.country: {present: false}}]}
    reason: {fi: a, en: a}
  - id: process.any
    effect: permit
    when: {operation: process}
    reason: {fi: a, en: a}
  - id: process.objected
    effect: forbid
    when: {operation: process, purpose: direct_marketing, subject.objections: {contains: direct_marketing}}
    reason: {fi: a, en: a}
  - id: process.any-other-words
    effect: forbid
    when: {operation: process, data_categories: {contains_any: [health]}}
    reason: {fi: a, en: a}
"""

EXPECTED = {  # rule id -> (code, words the message must hold)
    "two.operations": ("rule_never_matches", "'operation is process' (line 7) and 'operation is delete' (line 7) cannot both hold"),
    "in.versus.equality": ("rule_never_matches", "'purpose is one of customer_relationship, site_statistics' (line 13) "
                           "and 'purpose is direct_marketing' (line 14) cannot both hold"),
    "absent.versus.equality": ("rule_never_matches", "'recipient.country is not given' (line 18) and "
                               "'recipient.country is FI' (line 18) cannot both hold"),
    "unless.always": ("rule_never_matches", "its unless holds whenever its when holds"),
    "collect.scraping": ("permit_always_overridden", "forbid collect.no-scraping ({file}:29:5) matches every case"),
    "disclose.third-party": ("permit_always_overridden",
                             "forbidden by one of disclose.consented, disclose.not-consented"),
    "retain.active-again": ("duplicate_rule", "duplicates retain.active ({file}:45:5): both permit exactly the same cases"),
}


def lint_folder(root: Path) -> Path:
    shutil.copytree(DATA / "clean", root, ignore=shutil.ignore_patterns("disclosure.yaml", "processing.yaml", "requests.yaml"))
    (root / "lint.yaml").write_text(LINT, encoding="utf-8")
    return root


def rule_line(rule_id: str) -> int:
    return next(i for i, line in enumerate(LINT.splitlines(), 1) if line.endswith(f"- id: {rule_id}"))


def test_each_kind_fires_with_the_rules_position(tmp_path: Path) -> None:
    from kti_policy.policy.lint import lint_policy_set

    folder = lint_folder(tmp_path / "p")
    ps = load_policy_set(folder)
    file = str(folder / "lint.yaml")
    found = {w.message.split()[1]: w for w in lint_policy_set(ps)}
    assert sorted(found) == sorted(EXPECTED)
    for rule_id, (code, words) in EXPECTED.items():
        w = found[rule_id]
        assert (w.code, w.severity) == (code, "warning")
        assert (w.position.file, w.position.line, w.position.col) == (file, rule_line(rule_id), 5)
        assert words.format(file=file) in w.message, w.message


def test_check_prints_warnings_and_strict_fails(tmp_path: Path) -> None:
    folder = lint_folder(tmp_path / "p")
    args = ["check", str(folder), "--hooks", str(tmp_path / "no-hooks")]
    res = CliRunner().invoke(main, args)
    assert res.exit_code == 0, res.output
    line = rule_line("unless.always")
    assert (f"{folder / 'lint.yaml'}:{line}:5: warning: rule unless.always can never match: "
            "its unless holds whenever its when holds [rule_never_matches]") in res.stderr
    assert res.stdout.startswith("ok: 1 policies, 15 rules") and "7 warnings" in res.stdout
    strict = CliRunner().invoke(main, [*args, "--strict"])
    assert strict.exit_code == 1 and "7 errors, 0 warnings" in strict.stderr


def test_clean_fixture_and_shipped_pack_give_no_warning() -> None:
    from kti_policy.policy.lint import lint_policy_set

    assert lint_policy_set(load_policy_set(DATA / "clean")) == []
    if (REPO / "policies" / "vocabulary.yaml").exists():
        assert lint_policy_set(load_policy_set(REPO / "policies")) == []


# --- soundness: every warning holds on every context of a small universe ------------------------

IDS = ("a", "b")
VOCAB = Vocabulary({kind: {i: VocabEntry(i, Text(i, i)) for i in IDS} for kind in (
    "operation", "purpose", "data_category", "consent_purpose", "objection_scope", "relationship")})
SCALARS = {"operation": (*IDS, None), "purpose": (*IDS, None), "recipient.country": ("FI", "SE", "", None),
           "request.written": (True, False, None)}
LISTS = {"data_categories": IDS, "subject.objections": (*IDS, "retired")}  # facts may hold an old id


def universe() -> list[dict[str, Any]]:
    subsets = {p: [tuple(c) for n in range(len(v) + 1) for c in itertools.combinations(v, n)] for p, v in LISTS.items()}
    keys = [*SCALARS, *LISTS]
    return [dict(zip(keys, combo)) for combo in itertools.product(*SCALARS.values(), *subsets.values())]


UNIVERSE = universe()


def leaf() -> st.SearchStrategy[Condition]:
    scalar = st.sampled_from(["operation", "purpose", "recipient.country", "request.written"])
    listf = st.sampled_from(list(LISTS))

    def values(p: str) -> st.SearchStrategy[Any]:
        if p == "request.written":
            return st.sampled_from([True, False, None])
        if p == "recipient.country":
            return st.sampled_from(["FI", "SE", None])
        return st.sampled_from([*IDS, None])

    return st.one_of(
        scalar.flatmap(lambda p: values(p).map(lambda v: Eq(p, v))),
        scalar.flatmap(lambda p: st.lists(values(p), min_size=1, max_size=3).map(lambda vs: In(p, tuple(vs)))),
        st.builds(Present, st.sampled_from([*SCALARS, *LISTS]), st.booleans()),
        st.builds(Contains, listf, st.sampled_from(IDS)),
        st.builds(lambda p, vs: ContainsAny(p, tuple(vs)), listf, st.lists(st.sampled_from(IDS), min_size=1, max_size=2)),
    )


conditions = st.recursive(leaf(), lambda inner: st.one_of(
    st.lists(inner, min_size=1, max_size=3).map(lambda xs: All(tuple(xs))),
    st.lists(inner, min_size=1, max_size=3).map(lambda xs: AnyOf(tuple(xs))),
    inner.map(Not),
), max_leaves=6)


@st.composite
def policy_sets(draw: st.DrawFn) -> PolicySet:
    rules = []
    for i in range(draw(st.integers(2, 5))):
        unless = draw(st.none() | conditions)
        rules.append(Rule(f"r{i}", draw(st.sampled_from(["permit", "forbid"])), draw(conditions), Text("x", "x"), "§", "p", unless))
    return PolicySet(VOCAB, (Policy("p", Text("p", "p"), "§", tuple(rules), "p.yaml"),), "v")


@settings(max_examples=150, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(policy_sets())
def test_warnings_are_sound(ps: PolicySet) -> None:
    from kti_policy.policy.lint import lint_policy_set

    rules = {r.id: r for r in ps.rules}
    matched = {rid: [rule_matches(r, ctx) for ctx in UNIVERSE] for rid, r in rules.items()}
    for w in lint_policy_set(ps):
        rid = w.message.split()[1]
        if w.code == "rule_never_matches":
            assert not any(matched[rid]), w.message
        elif w.code == "permit_always_overridden":
            forbids = [f for f in rules.values() if f.effect == "forbid"]
            assert all(any(matched[f.id][i] for f in forbids) for i, m in enumerate(matched[rid]) if m), w.message
        else:
            other = re.search(r"duplicates (\S+) ", w.message).group(1)  # type: ignore[union-attr]
            assert matched[rid] == matched[other] and rules[rid].effect == rules[other].effect, w.message


def test_a_rule_that_matches_somewhere_never_gets_never_matches() -> None:
    """Completeness on the small universe for plain contradictions: the warning does fire."""
    from kti_policy.policy.lint import lint_policy_set

    dead = Rule("dead", "permit", All((In("purpose", ("a",)), Not(Eq("purpose", "a")))), Text("x", "x"), "§", "p")
    live = Rule("live", "permit", All((In("purpose", ("a", None)), Not(Eq("purpose", "a")))), Text("x", "x"), "§", "p")
    ps = PolicySet(VOCAB, (Policy("p", Text("p", "p"), "§", (dead, live), "p.yaml"),), "v")
    assert [(w.code, w.message.split()[1]) for w in lint_policy_set(ps)] == [("rule_never_matches", "dead")]


_TIMED_LINT = """\
policy: timed
title: {fi: Aika, en: Time}
source: "§8"
rules:
  - id: timed.both-within-and-past
    effect: forbid
    when:
      operation: retain
      subject.relationship_ended_at: {within: 1 month}
      not: {subject.relationship_ended_at: {within: 1 month}}
    reason: {fi: x, en: x}
  - id: timed.within-a-month
    effect: permit
    when: {operation: retain, subject.relationship_ended_at: {within: 1 month}}
    reason: {fi: x, en: x}
  - id: timed.within-a-year
    effect: permit
    when: {operation: retain, subject.relationship_ended_at: {within: 1 year}}
    reason: {fi: x, en: x}
"""


def test_duration_conditions_are_linted_soundly(tmp_path: Path) -> None:
    """A contradiction over one period is proved; two periods of one path are not confused."""
    from kti_policy.policy.lint import lint_policy_set

    folder = tmp_path / "p"
    shutil.copytree(DATA / "clean", folder, ignore=shutil.ignore_patterns("disclosure.yaml", "processing.yaml", "requests.yaml"))
    (folder / "timed.yaml").write_text(_TIMED_LINT, encoding="utf-8")
    found = {w.message.split()[1]: w.code for w in lint_policy_set(load_policy_set(folder))}
    assert found == {"timed.both-within-and-past": "rule_never_matches"}
