"""Policy tests: loading cases with positions, running them, JUnit and coverage."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from kti_policy.policy.loader import load_policy_set
from kti_policy.verify.policytest import junit_xml, load_cases_text, run_tests

VOCAB = """\
vocabulary:
  operation: {disclose: {fi: Luovutus, en: Disclosure}, subject_request: {fi: Pyyntö, en: Request}}
  purpose: {research: {fi: Tutkimus, en: Research}}
  data_category: {email: {fi: Sähköposti, en: Email}}
  recipient_type: {authority: {fi: Viranomainen, en: Authority}, partner: {fi: Kumppani, en: Partner}}
  source: {client: {fi: Toimeksiantaja, en: Client}}
  objection_scope: {disclosure: {fi: Luovutus, en: Disclosure}}
  consent_purpose: {disclosure: {fi: Luovutus, en: Disclosure}}
  request_type: {inquiry: {fi: Kysymys, en: Inquiry}, access: {fi: Tarkastus, en: Access}}
  legal_basis_type: {legal_obligation: {fi: Lakisääteinen velvoite, en: Legal obligation}}
  relationship: {active: {fi: Voimassa, en: Active}, ended: {fi: Päättynyt, en: Ended}}
"""
POLICY = """\
policy: disclosure
title: {fi: Luovutukset, en: Disclosures}
source: "§7"
rules:
  - id: disclosure.authority
    effect: permit
    when: {operation: disclose, recipient.type: authority, legal_basis.type: legal_obligation}
    reason: {fi: Viranomaiselle lain nojalla., en: To an authority under a legal obligation.}
  - id: disclosure.others
    effect: forbid
    when: {operation: disclose}
    unless: {any: [{recipient.type: authority, legal_basis.type: legal_obligation}, {subject.consents: {contains: disclosure}}]}
    reason: {fi: Ei luovuteta ulkopuolisille., en: Not disclosed to outsiders.}
  - id: requests.inquiry
    effect: permit
    source: "§2"
    when: {operation: subject_request, request.type: inquiry}
    reason: {fi: Kysymyksiin vastataan., en: Inquiries are answered.}
    obligations: [{respond_by: {business_days: 2}}]
"""
TESTS = """\
suite: disclosure
defaults: {at: "2026-12-18T10:00:00+02:00"}
cases:
  - name: authority allowed
    input: {operation: disclose, recipient: {country: FI, type: authority}, legal_basis: {type: legal_obligation}, subject: {id: c-1}}
    expect: {decision: allow, rules: [disclosure.authority]}
  - name: partner denied
    input: {operation: disclose, recipient: {country: FI, type: partner}, subject: {id: c-1}}
    expect: {decision: deny, rules: [disclosure.others]}
  - name: inquiry answered in two business days
    input: {operation: subject_request, request: {type: inquiry, received_at: "2026-12-18T10:00:00+02:00"}, subject: {id: c-1}}
    expect:
      decision: allow
      obligations: [{type: respond_by, due: "2026-12-22"}]
  - name: an access request is no inquiry
    input: {operation: subject_request, request: {type: access, received_at: "2026-12-18T10:00:00+02:00"}, subject: {id: c-1}}
    expect: {decision: deny, rules: [default.deny]}
"""


def make_folder(root: Path, tests: str = TESTS, policy: str = POLICY) -> Path:
    (root / "tests").mkdir(parents=True)
    (root / "vocabulary.yaml").write_text(VOCAB, encoding="utf-8")
    (root / "disclosure.yaml").write_text(policy, encoding="utf-8")
    (root / "tests" / "disclosure_test.yaml").write_text(tests, encoding="utf-8")
    return root


def test_passing_suite_covers_every_rule(tmp_path: Path) -> None:
    folder = make_folder(tmp_path / "p")
    run = run_tests(folder, load_policy_set(folder))
    assert run.ok, [r.failures for r in run.results]
    assert run.summary() == "4 passed, 0 failed"
    assert run.uncovered == []


def test_failing_case_names_what_differs(tmp_path: Path) -> None:
    wrong = TESTS.replace("expect: {decision: deny, rules: [disclosure.others]}", "expect: {decision: allow, rules: [disclosure.authority]}")
    folder = make_folder(tmp_path / "p", tests=wrong)
    run = run_tests(folder, load_policy_set(folder))
    assert run.failed == 1 and not run.ok
    (bad,) = [r for r in run.results if not r.passed]
    assert "decision: expected allow, got deny" in bad.failures[0]
    assert "missing ['disclosure.authority']" in bad.failures[1]
    assert bad.case.position.line == 7


def test_wrong_obligation_date_fails(tmp_path: Path) -> None:
    folder = make_folder(tmp_path / "p", tests=TESTS.replace("2026-12-22", "2026-12-21"))
    run = run_tests(folder, load_policy_set(folder))
    assert run.failed == 1
    assert "obligation" in run.results[2].failures[0]


def test_coverage_lists_unexercised_rules(tmp_path: Path) -> None:
    only_first = TESTS.split("  - name: partner denied")[0]
    folder = make_folder(tmp_path / "p", tests=only_first)
    run = run_tests(folder, load_policy_set(folder))
    assert run.ok
    assert run.uncovered == ["disclosure.others", "requests.inquiry"]


def test_one_sided_rules_are_reported(tmp_path: Path) -> None:
    # Without the access case, requests.inquiry is only ever seen firing: a condition made too
    # wide (say, dropping request.type) would go unnoticed.
    folder = make_folder(tmp_path / "p", tests=TESTS.split("  - name: an access request is no inquiry")[0])
    run = run_tests(folder, load_policy_set(folder))
    assert run.ok and run.uncovered == []
    assert run.one_sided == ["requests.inquiry"]
    full = make_folder(tmp_path / "q")
    assert run_tests(full, load_policy_set(full)).one_sided == []


def test_rule_holding_for_its_whole_operation_needs_no_other_side(tmp_path: Path) -> None:
    policy = POLICY + """  - id: deletion.always
    effect: permit
    when: {operation: delete}
    reason: {fi: Saa poistaa., en: May delete.}
"""
    vocab_tests = TESTS + """  - name: delete
    input: {operation: delete, subject: {id: c-1}}
    expect: {decision: allow, rules: [deletion.always]}
"""
    folder = make_folder(tmp_path / "p", tests=vocab_tests, policy=policy)
    (folder / "vocabulary.yaml").write_text(VOCAB.replace("subject_request: {fi: Pyyntö, en: Request}}", "subject_request: {fi: Pyyntö, en: Request}, delete: {fi: Poisto, en: Deletion}}"))
    run = run_tests(folder, load_policy_set(folder))
    assert run.ok, [r.failures for r in run.results]
    assert run.one_sided == [] and "deletion.always" in run.unconditional


@pytest.mark.parametrize(
    "text, code, line",
    [
        ("suite: x\ncases:\n  - name: a\n    input: {operation: disclose}\n    expect: {decision: maybe}\n", "invalid_value", 5),
        ("suite: x\ncases:\n  - name: a\n    inputs: {}\n    expect: {decision: deny}\n", "unknown_key", 4),
        ("suite: x\ncases: []\n", "missing_key", 2),
        ("suite: x\ncases:\n  - name: a\n    input: {operation: disclose}\n    facts: {consent: [x]}\n    expect: {decision: deny}\n", "unknown_key", 5),
        ("suite: [\n", "policy_parse_error", 2),
    ],
)
def test_broken_test_files_have_positions(text: str, code: str, line: int) -> None:
    _, errors = load_cases_text(text, "t.yaml")
    assert errors, "expected an error"
    assert errors[0].code == code
    assert errors[0].position.line == line


def test_unknown_expected_rule_is_an_error(tmp_path: Path) -> None:
    folder = make_folder(tmp_path / "p", tests=TESTS.replace("rules: [disclosure.others]", "rules: [disclosure.renamed]"))
    run = run_tests(folder, load_policy_set(folder))
    assert [e.code for e in run.errors] == ["unknown_rule"]
    assert not run.ok


def test_invalid_input_fails_the_case_not_the_run(tmp_path: Path) -> None:
    folder = make_folder(tmp_path / "p", tests=TESTS.replace("type: partner", "type: neighbour"))
    run = run_tests(folder, load_policy_set(folder))
    (bad,) = [r for r in run.results if not r.passed]
    assert "unknown id 'neighbour'" in bad.failures[0] and "input.recipient.type" in bad.failures[0]


def test_junit_xml(tmp_path: Path) -> None:
    folder = make_folder(tmp_path / "p", tests=TESTS.replace("2026-12-22", "2026-12-21"))
    run = run_tests(folder, load_policy_set(folder))
    root = ET.fromstring(junit_xml(run))
    assert root.get("tests") == "4" and root.get("failures") == "1"
    cases = root.findall(".//testcase")
    assert [c.get("name") for c in cases][0] == "authority allowed"
    assert len(root.findall(".//failure")) == 1
