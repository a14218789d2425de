"""loader: a clean folder loads; a broken one reports every problem at once, sorted, with file:line:col."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from kti_policy.decide.compile import compile_policy_set
from kti_policy.errors import PolicyError, PolicyErrors
from kti_policy.policy.durations import Period
from kti_policy.policy.loader import check_directory, load_policy_set
from kti_policy.policy.model import (
    All,
    AnyOf,
    Const,
    Contains,
    ContainsAny,
    Elapsed,
    Eq,
    In,
    Not,
    Present,
)

DATA = Path(__file__).parent.parent / "data"
CLEAN = DATA / "clean"
BROKEN = DATA / "broken"


def errors_of(directory: Path, overrides: dict[str, str] | None = None) -> list[PolicyError]:
    with pytest.raises(PolicyErrors) as info:
        load_policy_set(directory, overrides)
    return info.value.errors


def where(e: PolicyError) -> tuple[str, int, int, str]:
    return (Path(e.position.file).name, e.position.line, e.position.col, e.code)


def policy(when: str, extra: str = "", rule_id: str = "x.r") -> str:
    """A one-rule policy file whose rule's ``when`` is ``when`` (flow YAML), at line 7."""
    return (
        "policy: x\n"
        "title: {fi: X, en: X}\n"
        "source: \"§1\"\n"
        "rules:\n"
        f"  - id: {rule_id}\n"
        "    effect: permit\n"
        f"    when: {when}\n"
        "    reason: {fi: Syy, en: Reason}\n"
        f"{extra}"
    )


# --- the clean folder ----------------------------------------------------------------------------


def test_clean_folder_loads() -> None:
    ps = load_policy_set(CLEAN)
    assert [p.id for p in ps.policies] == ["disclosure", "processing", "requests"]
    assert len({r.id for r in ps.rules}) == len(ps.rules) == 15
    assert ps.vocabulary.knows("data_category", "health")
    assert ps.vocabulary.kinds["data_category"]["health"].special
    assert ps.vocabulary.label("operation", "delete", "fi") == "Poisto"
    objected = ps.rule("disclosure.objected")
    assert objected is not None and objected.source == "rights" and objected.policy == "disclosure"
    assert ps.rule("disclosure.other").source == "§7"  # the policy's citation by default
    assert objected.pos is not None and objected.pos.line == 25
    access = ps.rule("request.access")
    assert [o.type for o in access.obligations] == ["respond_by", "access_fee"]
    assert access.obligations[0].param("within") == ("months", 1)
    inquiry = ps.rule("request.inquiry")
    assert inquiry.obligations[0].message("message").en == "Answer by {due}."
    assert ps.to_dict()["rule_ids"] == [r.id for r in ps.rules]
    assert check_directory(CLEAN)[1] == []


@pytest.mark.parametrize(
    ("when", "expected"),
    [
        ("{operation: delete}", Eq("operation", "delete")),
        ("{recipient.name: null}", Eq("recipient.name", None)),
        ("{request.written: false}", Eq("request.written", False)),
        ("{recipient.country: {in: [FI, null]}}", In("recipient.country", ("FI", None))),
        ("{data_categories: {contains: email}}", Contains("data_categories", "email")),
        ("{subject.objections: {contains_any: [disclosure]}}", ContainsAny("subject.objections", ("disclosure",))),
        ("{data_categories: {present: false}}", Present("data_categories", False)),
        ("true", Const(True)),
        ("{not: {operation: delete}}", Not(Eq("operation", "delete"))),
        ("{any: []}", AnyOf(())),
        ("{all: [{operation: delete}, false]}", All((Eq("operation", "delete"), Const(False)))),
        ("{operation: delete, purpose: null}", All((Eq("operation", "delete"), Eq("purpose", None)))),
    ],
)
def test_conditions_build_the_ast(when: str, expected: object) -> None:
    ps = load_policy_set(CLEAN, {"x.yaml": policy(when)})
    assert ps.rule("x.r").when == expected


# --- every error at once -------------------------------------------------------------------------

BROKEN_EXPECTED = [
    ("a_syntax.yaml", 3, 6, "policy_parse_error"),
    ("b_rules.yaml", 7, 5, "unknown_key"),
    ("b_rules.yaml", 12, 23, "unknown_vocabulary_id"),
    ("b_rules.yaml", 17, 13, "missing_translation"),
    ("b_rules.yaml", 19, 13, "invalid_value"),
    ("b_rules.yaml", 20, 29, "wrong_type"),
    ("b_rules.yaml", 24, 22, "invalid_operator"),
    ("b_rules.yaml", 31, 21, "invalid_obligation"),
    ("b_rules.yaml", 31, 22, "unknown_key"),
    ("c_dupes.yaml", 5, 5, "duplicate_rule_id"),
    ("c_dupes.yaml", 7, 32, "duplicate_key"),
]


def test_broken_folder_reports_every_error_sorted() -> None:
    errors = errors_of(BROKEN)
    assert [where(e) for e in errors] == BROKEN_EXPECTED
    assert errors == sorted(errors, key=PolicyError.sort_key)
    _, listed = check_directory(BROKEN)
    assert listed == errors


@pytest.mark.parametrize(
    ("code", "words"),
    [
        ("unknown_key", ["'whn'", "did you mean 'when'?"]),
        ("unknown_vocabulary_id", ["'proces'", "did you mean 'process'?", "known: collect, process, disclose"]),
        ("missing_translation", ["no 'fi' text"]),
        ("invalid_operator", ["contains works on list fields only"]),
        ("duplicate_rule_id", ["'shared.rule'", "b_rules.yaml:32:5"]),
        ("duplicate_key", ["'operation'", "first at line 7"]),
        ("policy_parse_error", ["YAML syntax"]),
    ],
)
def test_broken_folder_messages(code: str, words: list[str]) -> None:
    messages = [e.message for e in errors_of(BROKEN) if e.code == code]
    assert any(all(w in m for w in words) for m in messages), messages


def test_errors_render_as_file_line_col_and_json() -> None:
    with pytest.raises(PolicyErrors) as info:
        load_policy_set(BROKEN)
    exc = info.value
    lines = str(exc).splitlines()
    assert len(lines) == len(BROKEN_EXPECTED) == len(exc.details["errors"])
    assert lines[1].endswith("[unknown_key]") and "b_rules.yaml:7:5: " in lines[1]
    first = exc.details["errors"][0]
    assert (Path(first["file"]).name, first["line"], first["col"], first["code"]) == BROKEN_EXPECTED[0]
    assert exc.code == "invalid_policies" and exc.message == "11 problems in the policies"


@pytest.mark.parametrize(
    ("when", "extra", "code", "marker", "words"),
    [
        ("{purpos: direct_marketing}", "", "unknown_field", "purpos:", "did you mean 'purpose'?"),
        ("{purpose: {equals: x}}", "", "unknown_operator", "equals", "use one of in, contains"),
        ("{purpose: {contain: x}}", "", "unknown_operator", "contain:", "did you mean 'contains'?"),
        ("{purpose: {in: [site_statistics], present: true}}", "", "wrong_type", "{in", "exactly one"),
        ("{purpose: {in: []}}", "", "wrong_type", "[]", "non-empty list"),
        ("{purpose: [a, b]}", "", "wrong_type", "[a", "needs an operator"),
        ("{purpose: 3}", "", "wrong_type", "3}", "must be a string, not a number"),
        ("{data_categories: email}", "", "invalid_operator", "email", "is a list"),
        ("{data_categories: {in: [email]}}", "", "invalid_operator", "in:", "not in"),
        ("{subject.relationship: {contains_any: [ended]}}", "", "invalid_operator", "contains_any", "list fields only"),
        ("{data_categories: {present: 1}}", "", "wrong_type", "1}", "true or false"),
        ("{recipient.country: fi}", "", "invalid_value", "fi}", "ISO 3166"),
        ("{data_categories: {contains: salary}}", "", "unknown_vocabulary_id", "salary", "known: name, email, health"),
        ("{all: {operation: delete}}", "", "wrong_type", "{operation", "list of conditions"),
        ("{not: [true]}", "", "wrong_type", "[true]", "must be a mapping"),
        ("yes please", "", "wrong_type", "yes please", "must be a mapping, not a string"),
        ("{operation: delete}", "    obligations: {respond_by: {months: 1}}\n", "wrong_type", "{respond_by", "must be a list"),
        ("{operation: delete}", "    obligations:\n      - access_fee: {free_per_months: 0}\n", "invalid_obligation", "0}", "at least 1"),
        ("{operation: delete}", "    obligations:\n      - respond_by: {months: 1, business_days: 2}\n", "invalid_obligation", "{months", "one of months or business_days"),
        ("{operation: delete}", "    obligations:\n      - {respond_by: {months: 1}, access_fee: {free_per_months: 12}}\n", "invalid_obligation", "{respond_by", "exactly one of"),
        ("{operation: delete}", "    obligations:\n      - notify: {}\n", "invalid_obligation", "notify", "exactly one of"),
        ("{operation: delete}", "    obligations:\n      - respond_by: {months: 1}\n        message: {en: x}\n", "missing_translation", "{en: x}", "no 'fi' text"),
        ("{operation: delete}", "    unless: 7\n", "wrong_type", "7", "must be a mapping, not a number"),
        ("{operation: delete}", "    description: {fi: a, en: b, sv: c}\n", "unknown_key", "sv:", "unknown language 'sv'"),
    ],
)
def test_rule_errors(when: str, extra: str, code: str, marker: str, words: str) -> None:
    """Each mistake is reported once, at the first place ``marker`` occurs after the rule's id."""
    text = policy(when, extra)
    offset = text.index(marker, text.index("effect:"))
    line = text.count("\n", 0, offset) + 1
    col = offset - text.rfind("\n", 0, offset)
    errors = errors_of(CLEAN, {"x.yaml": text})
    assert [(e.code, e.position.line, e.position.col) for e in errors] == [(code, line, col)], [str(e) for e in errors]
    assert words in errors[0].message and Path(errors[0].position.file).name == "x.yaml"


@pytest.mark.parametrize(
    ("text", "code"),
    [
        ("- just a list\n", "wrong_type"),
        ("policy: x\ntitle: {fi: X, en: X}\nrules: []\n", "wrong_type"),
        ("policy: X-Y\ntitle: {fi: X, en: X}\nsource: s\nrules: [{id: a, effect: permit, when: true, reason: {fi: a, en: b}}]\n", "invalid_id"),
        ("policy: x\ntitle: {fi: X, en: X}\nrules: [{id: a, effect: permit, when: true, reason: {fi: a, en: b}}]\n", "missing_key"),
        ("policy: x\ntitle: {fi: X, en: X}\nsource: s\nrules: {a: 1}\n", "wrong_type"),
        ("policy: x\ntitle: {fi: X, en: X}\nsource: s\nrules: [{id: default.deny, effect: forbid, when: true, reason: {fi: a, en: b}}]\n", "invalid_id"),
        ("policy: x\ntitle: {fi: X, en: X}\nsource: s\nrules: [{id: Bad Id, effect: forbid, when: true, reason: {fi: a, en: b}}]\n", "invalid_id"),
        ("policy: x\nsource: s\nrules: [{id: a, effect: permit, when: true, reason: {fi: a, en: b}}]\n", "missing_key"),
        ("policy: x\ntitle: {fi: X, en: X}\nsource: s\nrules: [{effect: permit, reason: {fi: a, en: b}}]\n", "missing_key"),
        ("policy: x\ntitle: {fi: X, en: X}\nsource: s\nrules: [{id: a, effect: permit, when: true, reason: Syy}]\n", "wrong_type"),
    ],
)
def test_policy_file_errors(text: str, code: str) -> None:
    assert code in [e.code for e in errors_of(CLEAN, {"x.yaml": text})]


def test_duplicate_policy_id() -> None:
    errors = errors_of(CLEAN, {"zz.yaml": (CLEAN / "requests.yaml").read_text().replace("id: request.", "id: other.")})
    assert [where(e) for e in errors] == [("zz.yaml", 1, 1, "duplicate_policy_id")]
    assert "requests.yaml" in errors[0].message


# --- time, lists, citations and v2 obligations: kti-policy check reports file:line:col [code] ---

# (what, when, extra, code, line, marker: the text the error points at on that line, words in the message)
V2_ERRORS = [
    ("a malformed duration", "{subject.relationship_ended_at: {within: 2 weeks}}", "", "invalid_period", 7, "2 weeks", "is not a period"),
    ("a duration of zero", "{subject.relationship_ended_at: {within: 0 days}}", "", "invalid_period", 7, "0 days", "between 1 and 1000"),
    ("a duration that is a number", "{subject.relationship_ended_at: {within: 30}}", "", "invalid_period", 7, "30}", "not a number"),
    ("an unknown named period", "{subject.relationship_ended_at: {more_than: accounting_voucher}}", "", "invalid_period", 7,
     "accounting_voucher", "neither a period like '1 month' nor a named period"),
    ("within on a non-time field", "{operation: {within: 1 month}}", "", "invalid_operator", 7, "within", "works on time fields only"),
    ("more_than on a list field", "{data_categories: {more_than: 1 year}}", "", "invalid_operator", 7, "more_than", "works on time fields only"),
    ("equality on a time field", "{subject.erasure_requested_at: 2026-01-01}", "", "invalid_operator", 7, "2026-01-01", "is a time"),
    ("in on a time field", "{subject.erasure_requested_at: {in: [2026-01-01]}}", "", "invalid_operator", 7, "in:", "is a time"),
    ("a citation without an act", "{operation: delete}", "    law: [17(3)(b)]\n", "invalid_citation", 9, "17(3)(b)", "does not start with a known act"),
    ("a citation without a provision", "{operation: delete}", "    law: [GDPR 17(3)(b), GDPR art. 17]\n", "invalid_citation", 9, "GDPR art. 17",
     "after the act comes an article or section"),
    ("a citation of an unknown act", "{operation: delete}", "    law:\n      - GDPR 17(3)(b)\n      - EUCHR 8\n", "invalid_citation", 11, "EUCHR 8",
     "known: GDPR, TSL, SVPL, KPL, 1182/71"),
    ("law that is not a list", "{operation: delete}", "    law: GDPR 17(3)(b)\n", "invalid_citation", 9, "GDPR 17(3)(b)", "must be a list of citations"),
    ("an unknown list in in_list", "{recipient.country: {in_list: eea_countries}}", "", "unknown_list", 7, "eea_countries", "unknown list 'eea_countries'"),
    ("in_list on a list field", "{data_categories: {in_list: eea_countries}}", "", "invalid_operator", 7, "data_categories", "single-value fields"),
    ("delete_by without from", "{operation: delete}", "    obligations:\n      - delete_by: {within: 1 month}\n", "missing_key", 10, "{within",
     "needs 'from'"),
    ("delete_by from a non-time field", "{operation: delete}", "    obligations:\n      - delete_by: {from: operation, within: 1 month}\n",
     "invalid_obligation", 10, "operation,", "must be a time field"),
    ("delete_by within a malformed period", "{operation: delete}",
     "    obligations:\n      - delete_by:\n          from: subject.erasure_requested_at\n          within: a month\n", "invalid_period", 12, "a month",
     "is not a period"),
    ("retain_until without period", "{operation: delete}", "    obligations:\n      - retain_until: {from: subject.relationship_ended_at}\n",
     "missing_key", 10, "{from", "needs 'period'"),
    ("verify_identity with a parameter", "{operation: delete}", "    obligations:\n      - verify_identity: {by: phone}\n", "unknown_key", 10, "by:",
     "unknown key 'by'"),
    ("access_fee with both kinds", "{operation: delete}", "    obligations:\n      - access_fee: {free_copies: 1, free_per_months: 12}\n",
     "invalid_obligation", 10, "1,", "one of free_copies or free_per_months"),
    ("overrides_notice without why", "{operation: delete}", "    overrides_notice: {notice: Tiedot poistetaan heti.}\n", "missing_key", 9, "{notice",
     "needs 'why'"),
]


@pytest.mark.parametrize(("what", "when", "extra", "code", "line", "marker", "words"), V2_ERRORS, ids=[e[0] for e in V2_ERRORS])
def test_check_reports_v2_mistakes_at_file_line_col(
    tmp_path: Path, what: str, when: str, extra: str, code: str, line: int, marker: str, words: str
) -> None:
    """``kti-policy check`` (check_directory) reports the mistake once, at the exact line, with its code."""
    folder = tmp_path / "p"
    shutil.copytree(CLEAN, folder)
    text = policy(when, extra)
    (folder / "x.yaml").write_text(text, encoding="utf-8")
    policy_set, errors = check_directory(folder)
    assert policy_set is None
    assert [(Path(e.position.file).name, e.code, e.position.line) for e in errors] == [("x.yaml", code, line)], [str(e) for e in errors]
    source_line = text.splitlines()[line - 1]
    assert marker in source_line, source_line
    col = source_line.index(marker) + 1
    assert errors[0].position.col == col
    assert str(errors[0]).startswith(f"{errors[0].position.file}:{line}:{col}: ") and str(errors[0]).endswith(f" [{code}]")
    assert words in errors[0].message, errors[0].message


V2_VOCAB = (CLEAN / "vocabulary.yaml").read_text(encoding="utf-8") + """\
lists:
  nordic_countries:
    label: {fi: Pohjoismaat, en: Nordic countries}
    checked: "2026-12-04"
    values: [FI, SE, DK, IS, "NO"]
periods:
  accounting_vouchers:
    label: {fi: Tositteiden säilytysaika, en: Retention of vouchers}
    period: 6 years from year end
    law: [KPL 2:10]
laws:
  GDPR: {title: {fi: Tietosuoja-asetus, en: General Data Protection Regulation}}
  KPL: {title: {fi: Kirjanpitolaki, en: Accounting Act}}
"""


def test_named_periods_lists_and_acts_of_the_vocabulary_load() -> None:
    when = ("{recipient.country: {in_list: nordic_countries}, subject.relationship_ended_at: {more_than: accounting_vouchers},"
            " subject.erasure_requested_at: {within: 1 month from year end ago}}")
    extra = ("    law: [KPL 2:10, GDPR 17(3)(b)]\n"
             "    overrides_notice: {notice: Tiedot poistetaan heti., why: {fi: Laki, en: The law}}\n"
             "    obligations:\n"
             "      - delete_by: {from: subject.erasure_requested_at, after: accounting_vouchers, within: 2 business days}\n"
             "      - retain_until: {from: subject.relationship_ended_at, period: accounting_vouchers, data_categories: [email]}\n"
             "      - verify_identity: {}\n"
             "      - notify_recipients:\n")
    ps = load_policy_set(CLEAN, {"vocabulary.yaml": V2_VOCAB, "x.yaml": policy(when, extra)})
    rule = ps.rule("x.r")
    assert rule is not None and rule.law == ("KPL 2:10", "GDPR 17(3)(b)")
    assert rule.overrides is not None and rule.overrides.notice == "Tiedot poistetaan heti."
    assert rule.when == All((
        In("recipient.country", ("FI", "SE", "DK", "IS", "NO")),
        Elapsed("subject.relationship_ended_at", Period(6, "years", True), False),
        Elapsed("subject.erasure_requested_at", Period(1, "months", True), True),
    ))
    assert rule.when.items[0].list_name == "nordic_countries" and rule.when.items[1].period_name == "accounting_vouchers"
    assert [o.type for o in rule.obligations] == ["delete_by", "retain_until", "verify_identity", "notify_recipients"]
    assert rule.obligations[0].param("after") == Period(6, "years", True)
    assert rule.obligations[0].param("within") == Period(2, "business_days")
    # with acts declared, only those may be cited
    errors = errors_of(CLEAN, {"vocabulary.yaml": V2_VOCAB, "x.yaml": policy("{operation: delete}", "    law: [TSL 6(1)]\n")})
    assert [(where(e), "known: GDPR, KPL" in e.message) for e in errors] == [(("x.yaml", 9, 11, "invalid_citation"), True)]


# --- the vocabulary ------------------------------------------------------------------------------

VOCAB = (CLEAN / "vocabulary.yaml").read_text(encoding="utf-8")


@pytest.mark.parametrize(
    ("edit", "code", "line"),
    [
        (("  consent_purpose:", "  consent_purpos:"), "unknown_key", 29),
        (("    name: {fi: Nimi, en: Name}", "    Name: {fi: Nimi, en: Name}"), "invalid_id", 15),
        (("    name: {fi: Nimi, en: Name}", "    name: {fi: Nimi}"), "missing_key", 15),
        (("    name: {fi: Nimi, en: Name}", "    name: Nimi"), "wrong_type", 15),
        (("      special: true", "      special: maybe"), "wrong_type", 19),
        (("      label: {fi: Terveys, en: Health}", "      label: {en: Health}"), "missing_translation", 18),
        (("vocabulary:", "vocabulary: []\nx:"), "wrong_type", 1),
    ],
)
def test_vocabulary_errors(edit: tuple[str, str], code: str, line: int) -> None:
    assert edit[0] in VOCAB
    errors = errors_of(CLEAN, {"vocabulary.yaml": VOCAB.replace(edit[0], edit[1], 1)})
    assert any(e.code == code and e.position.line == line for e in errors), [str(e) for e in errors]


def test_vocabulary_label_of_the_wrong_type_is_reported_where_it_is() -> None:
    errors = errors_of(CLEAN, {"vocabulary.yaml": VOCAB.replace("name: {fi: Nimi,", "name: {fi: 1,")})
    assert any(e.code == "wrong_type" and e.position.line == 15 for e in errors), [str(e) for e in errors]


def test_missing_vocabulary_and_empty_folder(tmp_path: Path) -> None:
    (tmp_path / "p.yaml").write_text(policy("true"), encoding="utf-8")
    assert [e.code for e in errors_of(tmp_path)] == ["missing_vocabulary"]
    (tmp_path / "p.yaml").unlink()
    (tmp_path / "vocabulary.yaml").write_text(VOCAB, encoding="utf-8")
    assert [e.code for e in errors_of(tmp_path)] == ["no_policies"]
    assert [e.code for e in errors_of(tmp_path / "nope")] == ["policy_dir_missing"]


# --- silently dropped or crashing rules (core bugs) ----------------------------------------------


def test_contains_null_is_an_error() -> None:
    errors_of(CLEAN, {"x.yaml": policy("{data_categories: {contains: null}}")})


def test_contains_any_null_is_an_error_not_a_compile_crash() -> None:
    try:
        ps = load_policy_set(CLEAN, {"x.yaml": policy("{subject.consents: {contains_any: [disclosure, null]}}")})
    except PolicyErrors:
        return
    compile_policy_set(ps)


# --- version hash and overrides ------------------------------------------------------------------


def test_version_is_a_content_hash(tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    shutil.copytree(CLEAN, a)
    shutil.copytree(CLEAN, b)
    (a / "tests").mkdir()
    (a / "tests" / "x_test.yaml").write_text("suite: x\n", encoding="utf-8")  # not read here
    (a / "notes.txt").write_text("not a policy", encoding="utf-8")
    v = load_policy_set(CLEAN).version
    assert load_policy_set(CLEAN).version == v
    assert load_policy_set(a).version == load_policy_set(b).version == v
    path = a / "requests.yaml"
    path.write_text(path.read_text(encoding="utf-8").replace("An inquiry.", "An inquiry!"), encoding="utf-8")
    changed = load_policy_set(a).version
    assert changed != v
    (a / "requests.yaml").rename(a / "requests2.yaml")  # same text under another name
    assert load_policy_set(a).version not in (v, changed)


def test_overrides_replace_drop_and_add_without_touching_the_folder(tmp_path: Path) -> None:
    folder = tmp_path / "p"
    shutil.copytree(CLEAN, folder)
    before = {p.name: p.read_text(encoding="utf-8") for p in folder.iterdir()}
    base = load_policy_set(folder)

    dropped = load_policy_set(folder, {"requests.yaml": ""})
    assert "requests" not in [p.id for p in dropped.policies] and dropped.version != base.version

    added = load_policy_set(folder, {"x.yaml": policy("true")})
    assert added.rule("x.r") is not None and added.version != base.version

    replaced = load_policy_set(folder, {"requests.yaml": (folder / "requests.yaml").read_text(encoding="utf-8")})
    assert replaced.version == base.version

    errors = errors_of(folder, {"processing.yaml": "policy: [\n"})
    assert [where(e)[0] for e in errors] == ["processing.yaml"]
    assert {p.name: p.read_text(encoding="utf-8") for p in folder.iterdir()} == before
