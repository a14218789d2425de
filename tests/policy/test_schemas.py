"""The editor schemas (src/kti_policy/policy/schemas/*.schema.json) agree with the loaders.

Every file the loaders accept validates (the example folder, the shipped pack, generated
conditions); the typical mistakes the loaders reject fail the schema too; the schemas list exactly
the keys, fields and kinds the code defines; and every shipped YAML file names its schema on a
``# yaml-language-server: $schema=...`` modeline.
"""

from __future__ import annotations

import copy
import functools
import json
import os
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from jsonschema import Draft202012Validator

from kti_policy.decide.decision import Decider
from kti_policy.decide.operation import OperationSchema, parse_operation
from kti_policy.errors import PolicyErrors
from kti_policy.facts.fold import EVENT_TYPES
from kti_policy.policy import loader
from kti_policy.policy.durations import PeriodSyntaxError, parse_period
from kti_policy.policy.fields import FIELDS, TIME_OPERATORS
from kti_policy.policy.schemas import NAMES, schema_path
from kti_policy.policy.yamlpos import load_text
from kti_policy.verify import policytest

REPO = Path(__file__).resolve().parents[2]
CLEAN = REPO / "tests" / "data" / "clean"
PACK = REPO / "policies"
SCHEMA_DIR = REPO / "src" / "kti_policy" / "policy" / "schemas"  # what the modelines point at, installed or not
MODELINE = "# yaml-language-server: $schema="
CLEAN_VOCAB = (CLEAN / "vocabulary.yaml").read_text(encoding="utf-8")
_VOCAB = loader.load_policy_set(CLEAN).vocabulary
# the example vocabulary with every kind, a named list, a named period and the acts it may cite
FULL_VOCAB = CLEAN_VOCAB + """\
  channel:
    email: {fi: Sähköposti, en: E-mail}
    sms: {fi: Tekstiviesti, en: Text message}
  subject_kind:
    consumer: {fi: Kuluttaja, en: Consumer}
    business_contact: {fi: Yhteyshenkilö, en: Business contact}
  transfer_safeguard:
    scc: {fi: Vakiolausekkeet, en: Standard contractual clauses}
lists:
  nordic_countries:
    label: {fi: Pohjoismaat, en: Nordic countries}
    checked: "2026-12-04"
    source: Nordic Council
    values: [FI, SE, DK, IS, "NO"]
periods:
  accounting_vouchers:
    label: {fi: Tositteiden säilytysaika, en: Retention of vouchers}
    period: 6 years from year end
    law: [KPL 2:10]
laws:
  GDPR: {title: {fi: Tietosuoja-asetus, en: General Data Protection Regulation}, url: https://eur-lex.europa.eu/eli/reg/2016/679/oj}
  KPL:
    title: {fi: Kirjanpitolaki, en: Accounting Act}
"""


@functools.cache
def schema(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(schema_path(name).read_text(encoding="utf-8"))
    return data


def schema_errors(name: str, data: Any) -> list[str]:
    v = Draft202012Validator(schema(name))
    return [f"{'/'.join(map(str, e.absolute_path)) or '<root>'}: {e.message}" for e in v.iter_errors(data)]


def yaml_errors(name: str, text: str) -> list[str]:
    """Schema errors of YAML text read the way the loaders read it (timestamps stay strings)."""
    data, errors = load_text(text, "doc.yaml")
    assert data is not None and not errors, [str(e) for e in errors]
    return schema_errors(name, data)


def kind_of(path: Path) -> str:
    if path.name == loader.VOCABULARY_FILE:
        return "vocabulary"
    return "policy-test" if path.parent.name == policytest.TESTS_DIR else "policy"


def loader_codes(policy_text: str, vocabulary_text: str = CLEAN_VOCAB) -> list[str]:
    """Error codes of loading one policy file beside a vocabulary, in memory ([] when it loads)."""
    sources = {"vocabulary.yaml": ("vocabulary.yaml", vocabulary_text), "p.yaml": ("p.yaml", policy_text)}
    try:
        loader.build_policy_set(sources, "mem")
    except PolicyErrors as exc:
        return [e.code for e in exc.errors]
    return []


@functools.cache
def clean_decider() -> Decider:
    return Decider(loader.load_policy_set(CLEAN))


def dump(doc: Any) -> str:
    return yaml.safe_dump(doc, allow_unicode=True, sort_keys=False)


# --- (a) the schemas themselves ------------------------------------------------------------------


@pytest.mark.parametrize("name", NAMES)
def test_schema_is_a_valid_draft_2020_12_schema(name: str) -> None:
    s = schema(name)
    assert s["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    Draft202012Validator.check_schema(s)


def test_schema_path() -> None:
    assert [schema_path(n).name for n in NAMES] == ["policy.schema.json", "vocabulary.schema.json", "policy-test.schema.json"]
    assert all(schema_path(n).is_file() for n in NAMES)
    with pytest.raises(ValueError, match="unknown schema"):
        schema_path("hooks")


def _properties(node: Any, where: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    """Every (where, property schema) that describes a key, skipping conditional constraints."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key in ("if", "then", "else", "not", "allOf", "$comment"):
                continue
            if key == "properties":
                for prop, sub in value.items():
                    yield f"{where}/{prop}", sub
                    yield from _properties(sub, f"{where}/{prop}")
            else:
                yield from _properties(value, f"{where}/{key}")
    elif isinstance(node, list):
        for i, item in enumerate(node):
            yield from _properties(item, f"{where}[{i}]")


@pytest.mark.parametrize("name", NAMES)
def test_every_property_has_a_title_and_a_description(name: str) -> None:
    s = schema(name)
    missing = []
    for where, sub in _properties(s):
        target = sub
        if "$ref" in sub and not ("title" in sub and "description" in sub):
            target = s["$defs"][sub["$ref"].rsplit("/", 1)[1]]
        if not (isinstance(target.get("title"), str) and isinstance(target.get("description"), str)):
            missing.append(where)
    assert missing == []


def test_only_keywords_draft_07_editors_understand() -> None:
    """YAML language servers before 2.0 (and many editors still ship one) validate with draft-07
    semantics: a newer keyword would silently check nothing there."""
    newer = {"unevaluatedProperties", "unevaluatedItems", "dependentRequired", "dependentSchemas", "prefixItems",
             "$dynamicRef", "$anchor", "minContains", "maxContains"}
    for name in NAMES:
        text = schema_path(name).read_text(encoding="utf-8")
        assert not [k for k in newer if f'"{k}"' in text], name


# --- the schemas list what the code defines ------------------------------------------------------


def test_policy_schema_keys_follow_the_loader() -> None:
    s = schema("policy")
    assert tuple(s["properties"]) == loader._POLICY_KEYS
    assert set(s["required"]) == {"policy", "title", "rules"}
    rule = s["$defs"]["rule"]
    assert tuple(rule["properties"]) == loader._RULE_KEYS
    assert set(rule["required"]) == {"id", "effect", "when", "reason"}
    assert s["properties"]["policy"]["pattern"] == loader.ID_RE.pattern
    # the loader's rule id pattern, with the reserved ids kept out by a lookahead
    rule_id = rule["properties"]["id"]["pattern"]
    assert rule_id.endswith(loader.RULE_ID_RE.pattern[1:]) and rule_id.startswith("^(?!")
    assert not [r for r in loader.RESERVED_RULE_IDS if re.search(rule_id, r)]
    assert re.search(rule_id, "default.denied") and re.search(rule_id, "eval_errors")
    obligation = s["$defs"]["obligation"]["properties"]
    assert set(obligation) == set(loader.OBLIGATION_TYPES) | {m for ms in loader.OBLIGATION_MESSAGES.values() for m in ms}


def test_condition_fields_are_the_fields_of_fields_py() -> None:
    s = schema("policy")
    props = s["$defs"]["condition"]["properties"]
    assert list(props) == list(FIELDS) + ["all", "any", "not"]
    for path, field in FIELDS.items():
        test = s["$defs"][props[path]["$ref"].rsplit("/", 1)[1]]
        operators = test.get("properties") or next(o for o in test["anyOf"] if o.get("type") == "object")["properties"]
        if field.shape == "list":
            assert set(operators) == {"contains", "contains_any", "present"}, path
        elif field.shape == "time":
            assert set(operators) == {*TIME_OPERATORS, "present"}, path
            assert "anyOf" not in test and test["type"] == "object", path  # a time is never compared with =
        elif field.shape == "bool":
            assert set(operators) == {"in", "present"}, path
        else:
            assert set(operators) == {"in", "in_list", "present"}, path
        if field.vocab:
            assert field.vocab in json.dumps(test), path
    assert s["$defs"]["countryTest"]["anyOf"][0]["pattern"] == loader.COUNTRY_RE.pattern
    assert s["$defs"]["inList"]["pattern"] == loader.ID_RE.pattern
    # every operator the loader knows appears somewhere, and obligations count from time fields only
    assert set(loader._OPS) <= {op for name, d in s["$defs"].items() if name.endswith("Test")
                                for op in (d.get("properties") or next(o for o in d["anyOf"] if o.get("type") == "object")["properties"])}
    obligation = s["$defs"]["obligation"]["properties"]
    times = [p for p, f in FIELDS.items() if f.shape == "time"]
    assert obligation["delete_by"]["properties"]["from"]["enum"] == obligation["retain_until"]["properties"]["from"]["enum"] == times
    assert set(obligation["delete_by"]["properties"]) == set(loader.OBLIGATION_TYPES["delete_by"])
    assert set(obligation["retain_until"]["properties"]) == set(loader.OBLIGATION_TYPES["retain_until"])
    assert set(obligation["access_fee"]["properties"]) == set(loader.OBLIGATION_TYPES["access_fee"])


def test_period_and_citation_patterns_follow_the_loader() -> None:
    """The schemas' period and citation patterns accept what durations/loader parse, and reject the
    rest (except what only the pack can tell: which named periods and acts exist)."""
    policy_s, vocab_s = schema("policy"), schema("vocabulary")
    period_ref = policy_s["$defs"]["period"]["pattern"]
    period_text = vocab_s["$defs"]["period"]["pattern"]
    citation = policy_s["$defs"]["citation"]["pattern"]
    assert citation == vocab_s["$defs"]["citation"]["pattern"]
    assert loader.PROVISION_RE.pattern[1:-1] in citation and loader.LAW_ID_RE.pattern[1:-1] in citation
    for text in ["1 month", "1 months", "12 months", "2 business days", "1 business day", "30 days", "1 day", "1000 days",
                 "6 years from year end", "10 years from the year end", "6 years from end of its year", "3 months ago",
                 "1 year from year end ago", "  1 month  ", "1  month", "0001 month",
                 "0 days", "1001 days", "10000 days", "2 weeks", "month", "1 Month", "one month", "1month", "-1 days",
                 "1.5 months", "1 month from now", "1 month ago ago", ""]:
        try:
            parse_period(text)
            ok = True
        except PeriodSyntaxError:
            ok = False
        assert bool(re.search(period_text, text)) is ok, text
        assert bool(re.search(period_ref, text)) is (ok or bool(loader.ID_RE.match(text))), text  # or a period's name
    assert re.search(period_ref, "accounting_vouchers") and not re.search(period_text, "accounting_vouchers")
    assert not re.search(period_ref, "Accounting vouchers")
    for text in ["GDPR 17(3)(b)", "GDPR 12(3)", "GDPR 44-49", "GDPR 21(2)-(3)", "KPL 2:10", "GDPR 6(1)(c)", "TSL 6", "1182/71 3(4)",
                 "GDPR 17", "17(3)(b)", "gdpr 17", "GDPR", "GDPR art. 17", "GDPR 17 (3)", "GDPR:17", " GDPR 17(3)(b) ", ""]:
        assert bool(re.search(citation, text)) is (loader.check_citation(text, {}) is None), text


def test_vocabulary_schema_kinds_are_the_loaders() -> None:
    s = schema("vocabulary")
    voc = s["properties"]["vocabulary"]
    assert tuple(voc["properties"]) == loader.VOCABULARY_KINDS
    assert tuple(voc["required"]) == loader.REQUIRED_KINDS
    assert all(k["propertyNames"]["pattern"] == loader.ID_RE.pattern for k in voc["properties"].values())
    assert tuple(s["properties"]) == loader.VOCABULARY_FILE_KEYS
    assert s["properties"]["lists"]["propertyNames"]["pattern"] == loader.ID_RE.pattern
    assert s["properties"]["periods"]["propertyNames"]["pattern"] == loader.ID_RE.pattern
    assert s["properties"]["laws"]["propertyNames"]["pattern"] == loader.LAW_ID_RE.pattern


def test_policy_test_schema_keys_follow_the_test_loader() -> None:
    s = schema("policy-test")
    assert tuple(s["properties"]) == policytest._FILE_KEYS
    case = s["properties"]["cases"]["items"]
    assert tuple(case["properties"]) == policytest._CASE_KEYS
    assert tuple(s["$defs"]["expect"]["properties"]) == policytest._EXPECT_KEYS
    assert tuple(s["$defs"]["facts"]["properties"]) == policytest._FACT_KEYS
    event = s["$defs"]["event"]
    assert tuple(event["properties"]) == policytest._EVENT_KEYS
    assert event["properties"]["type"]["enum"] == list(EVENT_TYPES)
    assert set(event["properties"]["data"]["properties"]) == {k for d in EVENT_TYPES.values() for k in d}
    expected = s["$defs"]["expect"]["properties"]["obligations"]["items"]["properties"]
    assert expected["type"]["enum"] == list(loader.OBLIGATION_TYPES)


def test_request_schema_is_the_decision_request_body() -> None:
    request = schema("policy-test")["$defs"]["request"]
    body = OperationSchema()
    assert set(request["properties"]) == set(body.fields)
    for name in ("subject", "recipient", "legal_basis", "request", "cookie"):
        nested = body.fields[name].schema  # type: ignore[attr-defined]
        sub = request["properties"][name]
        assert set(sub["properties"]) == set(nested.fields), name
        assert set(sub["required"]) == {k for k, f in nested.fields.items() if f.required}, name


def test_example_ids_are_known_to_the_shipped_vocabulary() -> None:
    """The examples editors offer are the CONTRACT ids, which the shipped vocabulary defines."""
    vocab = loader.load_policy_set(PACK).vocabulary
    s = schema("policy")
    for kind in loader.VOCABULARY_KINDS:
        examples = s["$defs"][f"{kind}Id"]["examples"]
        assert examples and all(vocab.knows(kind, i) for i in examples), kind
        assert schema("vocabulary")["properties"]["vocabulary"]["properties"][kind]["propertyNames"]["examples"] == examples


# --- (b) every shipped YAML file validates -------------------------------------------------------


def yaml_files() -> list[Path]:
    found = sorted(CLEAN.glob("*.yaml"))
    if PACK.is_dir():
        found += sorted(PACK.glob("*.yaml")) + sorted(policytest.test_files(PACK))
    return found


def test_the_pack_is_there() -> None:
    assert (PACK / loader.VOCABULARY_FILE).is_file(), "policies/vocabulary.yaml is missing"
    assert loader.policy_files(PACK), "policies/ has no policy files"
    assert policytest.test_files(PACK), "policies/tests/ has no test files"


@pytest.mark.parametrize("path", yaml_files(), ids=lambda p: str(p.relative_to(REPO)))
def test_shipped_file_validates(path: Path) -> None:
    assert yaml_errors(kind_of(path), path.read_text(encoding="utf-8")) == []


def test_the_files_that_validate_also_load() -> None:
    """The other half of agreement on the shipped files: the loaders accept them too."""
    for folder in (CLEAN, PACK):
        loader.load_policy_set(folder)
    _, errors = policytest.load_cases(PACK)
    assert errors == []


# --- (c) broken documents: rejected by the schema AND the loader ---------------------------------

BASE_POLICY: dict[str, Any] = {
    "policy": "disclosure",
    "title": {"fi": "Luovutus", "en": "Disclosure"},
    "source": "§7",
    "rules": [
        {
            "id": "disclosure.authority",
            "effect": "permit",
            "when": {"operation": "disclose", "recipient.type": "authority", "recipient.country": {"in": ["FI", None]}},
            "reason": {"fi": "Viranomaiselle.", "en": "To an authority."},
        },
        {
            "id": "request.access",
            "effect": "permit",
            "source": "rights",
            "when": {"operation": "subject_request", "request.type": "access", "not": {"request.signed": False}},
            "unless": {"any": [{"subject.objections": {"contains": "disclosure"}}, {"data_categories": {"present": False}}]},
            "reason": {"fi": "Tarkastus.", "en": "Access."},
            "obligations": [
                {"respond_by": {"months": 1}, "message": {"fi": "Viimeistään {due}.", "en": "By {due}."}},
                {"access_fee": {"free_per_months": 12}},
            ],
        },
    ],
}


def _rule(doc: dict[str, Any], i: int = 0) -> dict[str, Any]:
    rule: dict[str, Any] = doc["rules"][i]
    return rule


def _set(**changes: Any) -> Callable[[dict[str, Any]], None]:
    def edit(doc: dict[str, Any]) -> None:
        _rule(doc).update(changes)
    return edit


def _when(**changes: Any) -> Callable[[dict[str, Any]], None]:
    def edit(doc: dict[str, Any]) -> None:
        _rule(doc)["when"].update({k.replace("__", "."): v for k, v in changes.items()})
    return edit


def _obligation(value: Any) -> Callable[[dict[str, Any]], None]:
    def edit(doc: dict[str, Any]) -> None:
        _rule(doc, 1)["obligations"][0] = value
    return edit


# (what, edit, a loader error code it must give)
BROKEN_POLICIES: list[tuple[str, Callable[[dict[str, Any]], None], str]] = [
    ("unknown key in a rule", _set(whn={"operation": "disclose"}), "unknown_key"),
    ("unknown key in the policy", lambda d: d.update(rule=[]), "unknown_key"),
    ("reason without en", _set(reason={"fi": "Syy"}), "missing_translation"),
    ("reason with a third language", _set(reason={"fi": "Syy", "en": "Reason", "sv": "Orsak"}), "unknown_key"),
    ("blank reason text", _set(reason={"fi": "  ", "en": "Reason"}), "wrong_type"),
    ("title without fi", lambda d: d.update(title={"en": "Disclosure"}), "missing_translation"),
    ("effect: allow", _set(effect="allow"), "invalid_value"),
    ("effect missing", lambda d: _rule(d).pop("effect"), "missing_key"),
    ("when missing", lambda d: _rule(d).pop("when"), "missing_key"),
    ("rule id with capitals", _set(id="Disclosure.Authority"), "invalid_id"),
    ("rule id with a space", _set(id="disclosure authority"), "invalid_id"),
    ("rule id ending in a dot", _set(id="disclosure."), "invalid_id"),
    ("reserved rule id", _set(id="default.deny"), "invalid_id"),
    ("policy id with a dash", lambda d: d.update(policy="my-policy"), "invalid_id"),
    ("no rules", lambda d: d.update(rules=[]), "wrong_type"),
    ("no source anywhere", lambda d: d.pop("source"), "missing_key"),
    ("obligation with months and business_days", _obligation({"respond_by": {"months": 1, "business_days": 2}}), "invalid_obligation"),
    ("respond_by in weeks", _obligation({"respond_by": {"weeks": 2}}), "unknown_key"),
    ("respond_by of zero months", _obligation({"respond_by": {"months": 0}}), "invalid_obligation"),
    ("respond_by of a text", _obligation({"respond_by": {"months": "one"}}), "invalid_obligation"),
    ("obligation of both types", _obligation({"respond_by": {"months": 1}, "access_fee": {"free_per_months": 12}}), "invalid_obligation"),
    ("obligation of no known type", _obligation({"reply_by": {"months": 1}}), "invalid_obligation"),
    ("respond_by with an access fee message", _obligation({"respond_by": {"months": 1}, "message_free": {"fi": "a", "en": "b"}}), "unknown_key"),
    ("access_fee without free_per_months", _obligation({"access_fee": {}}), "invalid_obligation"),
    ("message without en", _obligation({"respond_by": {"months": 1}, "message": {"fi": "a"}}), "missing_translation"),
    ("unknown field", _when(recipient__kind="authority"), "unknown_field"),
    ("unknown operator", _when(operation={"one_of": ["disclose"]}), "unknown_operator"),
    ("two operators", _when(operation={"in": ["disclose"], "present": True}), "wrong_type"),
    ("contains on a scalar field", _when(purpose={"contains": "research"}), "invalid_operator"),
    ("in on a list field", _when(data_categories={"in": ["email"]}), "invalid_operator"),
    ("a list field compared to a value", _when(data_categories="email"), "invalid_operator"),
    ("a list without an operator", _when(operation=["disclose", "process"]), "wrong_type"),
    ("empty in", _when(operation={"in": []}), "wrong_type"),
    ("empty contains_any", _when(data_categories={"contains_any": []}), "wrong_type"),
    ("contains null", _when(data_categories={"contains": None}), "wrong_type"),
    ("yes/no as a string", _when(request__written="yes"), "wrong_type"),
    ("present as a string", _when(purpose={"present": "yes"}), "wrong_type"),
    ("a number as an id", _when(operation=5), "wrong_type"),
    ("lowercase country", _when(recipient__country="fi"), "invalid_value"),
    ("all of a mapping", _when(all={"operation": "disclose"}), "wrong_type"),
    ("condition of a string", _set(when="operation == disclose"), "wrong_type"),
]


def test_the_base_policy_is_accepted_by_both() -> None:
    text = dump(BASE_POLICY)
    assert yaml_errors("policy", text) == []
    assert loader_codes(text) == []


@pytest.mark.parametrize(("what", "edit", "code"), BROKEN_POLICIES, ids=[b[0] for b in BROKEN_POLICIES])
def test_broken_policy_is_rejected_by_schema_and_loader(what: str, edit: Callable[[dict[str, Any]], None], code: str) -> None:
    doc = copy.deepcopy(BASE_POLICY)
    edit(doc)
    text = dump(doc)
    assert yaml_errors("policy", text), f"the schema accepts: {what}"
    assert code in loader_codes(text), f"the loader does not report {code} for: {what}"


# A policy with the constructs of CONTRACT v2: duration conditions (a period written out and a named
# one), in_list, law, overrides_notice and every obligation type.
V2_POLICY: dict[str, Any] = {
    "policy": "retention",
    "title": {"fi": "Säilytys", "en": "Retention"},
    "source": "§9",
    "rules": [
        {
            "id": "retention.vouchers",
            "effect": "permit",
            "law": ["KPL 2:10"],
            "when": {"operation": "delete", "subject.relationship_ended_at": {"more_than": "accounting_vouchers"}},
            "reason": {"fi": "Säilytysaika on päättynyt.", "en": "The retention period has ended."},
            "obligations": [
                {"retain_until": {"from": "subject.relationship_ended_at", "period": "6 years from year end", "data_categories": ["email"]}},
            ],
        },
        {
            "id": "retention.erasure",
            "effect": "forbid",
            "law": ["GDPR 17(3)(b)", "GDPR 12(3)", "GDPR 44-49"],
            "overrides_notice": {"notice": "Tiedot poistetaan heti.", "why": {"fi": "Laki edellyttää säilyttämistä.", "en": "The law requires keeping them."}},
            "when": {
                "operation": "process",
                "recipient.country": {"in_list": "nordic_countries"},
                "subject.erasure_requested_at": {"within": "1 month"},
                "any": [
                    {"subject.relationship_started_at": {"more_than": "2 business days ago"}},
                    {"subject.relationship_ended_at": {"present": False}},
                    {"channel": "email", "subject.kind": {"in": ["consumer", None]}, "recipient.safeguards": "scc", "cookie.kind": "statistics"},
                    {"request.identity_verified": True, "request.further_copy": False, "subject.withdrawn_consents": {"contains": "disclosure"}},
                ],
            },
            "reason": {"fi": "Poistopyyntö.", "en": "Erasure requested."},
            "obligations": [
                {"delete_by": {"from": "subject.erasure_requested_at", "after": "10 days", "within": "1 month", "data_categories": ["email", "name"]}},
                {"verify_identity": {}},
                {"notify_recipients": None},
                {"extension_notice_by": {"months": 1}, "message": {"fi": "Viimeistään {due}.", "en": "By {due}."}},
                {"access_fee": {"free_copies": 1}, "message_chargeable": {"fi": "Maksullinen.", "en": "Chargeable."}},
            ],
        },
    ],
}


def _v2(**changes: Any) -> Callable[[dict[str, Any]], None]:
    """Set keys of the second rule (``when__x`` sets when's ``x``, ``obligation`` the first obligation)."""
    def edit(doc: dict[str, Any]) -> None:
        rule = doc["rules"][1]
        for key, value in changes.items():
            if key.startswith("when__"):
                rule["when"][key[6:].replace("__", ".")] = value
            elif key == "obligation":
                rule["obligations"][0] = value
            else:
                rule[key] = value
    return edit


BROKEN_V2: list[tuple[str, Callable[[dict[str, Any]], None], str]] = [
    ("a period in weeks", _v2(when__subject__erasure_requested_at={"within": "2 weeks"}), "invalid_period"),
    ("a period of zero days", _v2(when__subject__erasure_requested_at={"within": "0 days"}), "invalid_period"),
    ("a period of more than 1000", _v2(when__subject__erasure_requested_at={"more_than": "1001 days"}), "invalid_period"),
    ("the unit before the number", _v2(when__subject__erasure_requested_at={"within": "month 1"}), "invalid_period"),
    ("a capitalised unit", _v2(when__subject__erasure_requested_at={"within": "1 Month"}), "invalid_period"),
    ("a period that is a number", _v2(when__subject__erasure_requested_at={"within": 30}), "invalid_period"),
    ("a named period that is not an id", _v2(when__subject__erasure_requested_at={"within": "Accounting vouchers"}), "invalid_period"),
    ("within on a non-time field", _v2(when__operation={"within": "1 month"}), "invalid_operator"),
    ("more_than on a list field", _v2(when__data_categories={"more_than": "1 year"}), "invalid_operator"),
    ("within on a yes/no field", _v2(when__request__written={"within": "1 month"}), "invalid_operator"),
    ("equality on a time field", _v2(when__subject__erasure_requested_at="2026-01-01"), "invalid_operator"),
    ("null on a time field", _v2(when__subject__erasure_requested_at=None), "invalid_operator"),
    ("in on a time field", _v2(when__subject__erasure_requested_at={"in": ["2026-01-01"]}), "invalid_operator"),
    ("a citation without an act", _v2(law=["17(3)(b)"]), "invalid_citation"),
    ("a citation in lowercase", _v2(law=["gdpr 17(3)(b)"]), "invalid_citation"),
    ("a citation without a provision", _v2(law=["GDPR"]), "invalid_citation"),
    ("a citation with 'art.'", _v2(law=["GDPR art. 17"]), "invalid_citation"),
    ("law as a single string", _v2(law="GDPR 17(3)(b)"), "invalid_citation"),
    ("in_list with a name that is not an id", _v2(when__recipient__country={"in_list": "Nordic countries"}), "unknown_list"),
    ("in_list of a list of names", _v2(when__recipient__country={"in_list": ["nordic_countries"]}), "unknown_list"),
    ("in_list on a list field", _v2(when__data_categories={"in_list": "nordic_countries"}), "invalid_operator"),
    ("in_list on a yes/no field", _v2(when__request__written={"in_list": "nordic_countries"}), "invalid_operator"),
    ("overrides_notice without why", _v2(overrides_notice={"notice": "Tiedot poistetaan heti."}), "missing_key"),
    ("overrides_notice with a string why", _v2(overrides_notice={"notice": "x", "why": "because"}), "wrong_type"),
    ("overrides_notice as a string", _v2(overrides_notice="Tiedot poistetaan heti."), "wrong_type"),
    ("overrides_notice with a stray key", _v2(overrides_notice={"notice": "x", "why": {"fi": "a", "en": "b"}, "section": "§9"}), "unknown_key"),
    ("delete_by without from", _v2(obligation={"delete_by": {"within": "1 month"}}), "missing_key"),
    ("delete_by without within", _v2(obligation={"delete_by": {"from": "subject.erasure_requested_at"}}), "missing_key"),
    ("delete_by from a non-time field", _v2(obligation={"delete_by": {"from": "operation", "within": "1 month"}}), "invalid_obligation"),
    ("delete_by within a malformed period", _v2(obligation={"delete_by": {"from": "subject.erasure_requested_at", "within": "a month"}}), "invalid_period"),
    ("delete_by with an empty data_categories", _v2(obligation={"delete_by": {"from": "subject.erasure_requested_at", "within": "1 month", "data_categories": []}}), "wrong_type"),
    ("delete_by with message_free", _v2(obligation={"delete_by": {"from": "subject.erasure_requested_at", "within": "1 month"}, "message_free": {"fi": "a", "en": "b"}}), "unknown_key"),
    ("retain_until without period", _v2(obligation={"retain_until": {"from": "subject.relationship_ended_at"}}), "missing_key"),
    ("retain_until with within", _v2(obligation={"retain_until": {"from": "subject.relationship_ended_at", "period": "1 year", "within": "1 month"}}), "unknown_key"),
    ("verify_identity with a parameter", _v2(obligation={"verify_identity": {"by": "phone"}}), "unknown_key"),
    ("notify_recipients as a list", _v2(obligation={"notify_recipients": []}), "wrong_type"),
    ("extension_notice_by in weeks", _v2(obligation={"extension_notice_by": {"weeks": 2}}), "unknown_key"),
    ("access_fee with both kinds", _v2(obligation={"access_fee": {"free_copies": 1, "free_per_months": 12}}), "invalid_obligation"),
    ("access_fee of zero free copies", _v2(obligation={"access_fee": {"free_copies": 0}}), "invalid_obligation"),
]


def test_the_v2_policy_is_accepted_by_both() -> None:
    text = dump(V2_POLICY)
    assert yaml_errors("policy", text) == []
    assert loader_codes(text, FULL_VOCAB) == []
    assert yaml_errors("vocabulary", FULL_VOCAB) == []


@pytest.mark.parametrize(("what", "edit", "code"), BROKEN_V2, ids=[b[0] for b in BROKEN_V2])
def test_broken_v2_policy_is_rejected_by_schema_and_loader(what: str, edit: Callable[[dict[str, Any]], None], code: str) -> None:
    doc = copy.deepcopy(V2_POLICY)
    edit(doc)
    text = dump(doc)
    assert yaml_errors("policy", text), f"the schema accepts: {what}"
    assert code in loader_codes(text, FULL_VOCAB), f"the loader does not report {code} for: {what}"


@pytest.mark.parametrize(
    ("what", "edit", "code"),
    [
        ("an unknown named period", _v2(when__subject__erasure_requested_at={"within": "accounting_voucher"}), "invalid_period"),
        ("an act the pack does not declare", _v2(law=["TSL 6(1)"]), "invalid_citation"),
        ("an unknown list", _v2(when__recipient__country={"in_list": "eea_countries"}), "unknown_list"),
        ("a list of values of another kind", _v2(when__channel={"in_list": "nordic_countries"}), "unknown_vocabulary_id"),
    ],
)
def test_what_only_the_pack_can_tell_is_left_to_the_loader(what: str, edit: Callable[[dict[str, Any]], None], code: str) -> None:
    """Which periods, lists and acts exist is data of the pack: the schema accepts any well-formed
    name, kti-policy check reports an unknown one."""
    doc = copy.deepcopy(V2_POLICY)
    edit(doc)
    text = dump(doc)
    assert yaml_errors("policy", text) == []
    assert code in loader_codes(text, FULL_VOCAB), f"the loader does not report {code} for: {what}"


BROKEN_VOCABULARIES = [
    ("a kind missing", ("  consent_purpose:\n    disclosure: {fi: Luovutus, en: Disclosure}\n", ""), "missing_key"),
    ("an unknown kind", ("vocabulary:\n", "vocabulary:\n  colour: {}\n"), "unknown_key"),
    ("an id with capitals", ("    email: {", "    Email: {"), "invalid_id"),
    ("an id with a dash", ("    email: {", "    e-mail: {"), "invalid_id"),
    ("short form without en", ("email: {fi: Sähköposti, en: Email}", "email: {fi: Sähköposti}"), "missing_key"),
    ("short form with a stray key", ("email: {fi: Sähköposti, en: Email}", "email: {fi: Sähköposti, en: Email, sv: E-post}"), "unknown_key"),
    ("a label that is a string", ("email: {fi: Sähköposti, en: Email}", "email: Sähköposti"), "wrong_type"),
    ("long form label without en", ("label: {fi: Terveys, en: Health}", "label: {fi: Terveys}"), "missing_translation"),
    ("long form mixed with short", ("      special: true", "      special: true\n      fi: Terveys"), "unknown_key"),
    ("special as a string", ("      special: true", "      special: maybe"), "wrong_type"),
    ("a kind that is a list", ("  relationship:\n", "  relationship: []\n  x_relationship:\n"), "wrong_type"),
    ("an unknown top-level key", ("lists:\n", "list:\n"), "unknown_key"),
    ("a list without values", ('    values: [FI, SE, DK, IS, "NO"]\n', ""), "missing_key"),
    ("a list with empty values", ('values: [FI, SE, DK, IS, "NO"]', "values: []"), "wrong_type"),
    ("a list checked on no date", ('checked: "2026-12-04"', "checked: last week"), "wrong_type"),
    ("a list name with capitals", ("  nordic_countries:", "  Nordic_countries:"), "invalid_id"),
    ("a period in weeks", ("period: 6 years from year end", "period: 2 weeks"), "invalid_period"),
    ("a period naming another period", ("period: 6 years from year end", "period: accounting_records"), "invalid_period"),
    ("a period without a label", ("    label: {fi: Tositteiden säilytysaika, en: Retention of vouchers}\n", ""), "missing_key"),
    ("a period's citation without an act", ("law: [KPL 2:10]", "law: [2:10]"), "invalid_citation"),
    ("an act in lowercase", ("  KPL:\n", "  kpl:\n"), "invalid_id"),
    ("an act without a title", ("    title: {fi: Kirjanpitolaki, en: Accounting Act}\n", "    url: https://finlex.fi\n"), "missing_key"),
]


@pytest.mark.parametrize(("what", "edit", "code"), BROKEN_VOCABULARIES, ids=[b[0] for b in BROKEN_VOCABULARIES])
def test_broken_vocabulary_is_rejected_by_schema_and_loader(what: str, edit: tuple[str, str], code: str) -> None:
    assert edit[0] in FULL_VOCAB
    text = FULL_VOCAB.replace(edit[0], edit[1], 1)
    assert yaml_errors("vocabulary", text), f"the schema accepts: {what}"
    assert code in loader_codes(dump(BASE_POLICY), text), f"the loader does not report {code} for: {what}"


BASE_TESTS = """\
suite: disclosure
description: Disclosure to authorities.
defaults: {at: "2026-03-02T10:00:00+02:00", subject: {id: c-1}}
cases:
  - name: an authority may receive the email
    input:
      operation: disclose
      data_categories: [email]
      recipient: {type: authority, country: FI, name: Ulosottolaitos}
      legal_basis: {type: legal_obligation, reference: "Ulosottokaari 3:64"}
    facts: {consents: [disclosure], objections: [], relationship: active, erasure_requested: false}
    expect: {decision: allow, rules: [disclosure.authority]}
  - name: an access request
    input:
      operation: subject_request
      subject: {id: c-2, consents: [disclosure], relationship: ended, erasure_requested: true}
      request: {type: access, received_at: "2026-03-02T10:00:00+02:00", written: true, signed: true}
    facts: {access_requests: ["2025-06-01T10:00:00+03:00"]}
    expect:
      decision: allow
      obligations:
        - {type: respond_by, due: "2026-04-02"}
        - {type: access_fee, chargeable: true, rule: request.access}
  - name: a cookie needs no subject
    input: {operation: store_cookie, cookie: {kind: strictly_necessary}}
    facts:
    expect: {decision: deny, rules: [default.deny]}
"""

# (what, (old, new) in BASE_TESTS, a test-loader error code it must give, or None when the
# mistake only shows when the case runs: then the case must fail to run instead)
BROKEN_TESTS: list[tuple[str, tuple[str, str], str | None]] = [
    ("unknown key in a case", ("    facts: {access", "    fact: {access"), "unknown_key"),
    ("unknown key in the file", ("suite: disclosure\n", "suite: disclosure\nsuites: x\n"), "unknown_key"),
    ("unknown fact", ("facts: {consents:", "facts: {consent:"), "unknown_key"),
    ("unknown key in expect", ("expect: {decision: deny,", "expect: {decision: deny, reason: x,"), "unknown_key"),
    ("decision permit", ("{decision: allow, rules: [disclosure.authority]}", "{decision: permit}"), "invalid_value"),
    ("no expect", ("    expect: {decision: deny, rules: [default.deny]}\n", ""), "missing_key"),
    ("no input", ("    input: {operation: store_cookie, cookie: {kind: strictly_necessary}}\n", ""), "missing_key"),
    ("no name", ("  - name: a cookie needs no subject\n    input:", "  - input:"), "missing_key"),
    ("rules not a list", ("rules: [default.deny]", "rules: default.deny"), "wrong_type"),
    ("obligation without a type", ("{type: respond_by, due:", "{due:"), "wrong_type"),
    ("no cases", ("cases:\n", "cases: []\nx:\n"), "missing_key"),
    ("defaults not a mapping", ('defaults: {at: "2026-03-02T10:00:00+02:00", subject: {id: c-1}}', "defaults: [x]"), "wrong_type"),
    ("unknown key in the request", ("operation: disclose\n", "operation: disclose\n      purposes: [x]\n"), None),
    ("recipient without a type", ("recipient: {type: authority, ", "recipient: {"), None),
    ("disclose without a recipient", ("      recipient: {type: authority, country: FI, name: Ulosottolaitos}\n", ""), None),
    ("a lowercase country", ("country: FI", "country: fi"), None),
    ("written as a string", ("written: true", "written: 'yes'"), None),
    ("a subject without an id", ("subject: {id: c-2, ", "subject: {"), None),
    ("store_cookie without a cookie", (", cookie: {kind: strictly_necessary}}", "}"), None),
    ("disclose without a country", ("recipient: {type: authority, country: FI, ", "recipient: {type: authority, "), None),
    ("a cookie without a kind", ("cookie: {kind: strictly_necessary}", "cookie: {name: _ga}"), None),
    ("a copy number of zero", ("written: true, signed: true}", "written: true, signed: true, copy: 0}"), None),
    ("unknown fact in v2 facts", ("facts: {access_requests:", "facts: {restricted_since: '2026-01-01', access_requests:"), "unknown_key"),
    ("facts and events together", ("    facts: {access_requests:", "    events: [{type: relationship.ended, occurred_at: '2026-01-01T00:00:00Z'}]\n    facts: {access_requests:"), "invalid_value"),
    ("an unknown event type", ("    facts:\n", "    events: [{type: consent.given, occurred_at: '2026-01-01T00:00:00Z', data: {purpose: disclosure}}]\n"), "invalid_value"),
    ("an event without occurred_at", ("    facts:\n", "    events: [{type: relationship.ended}]\n"), "wrong_type"),
    ("an event at no time", ("    facts:\n", "    events: [{type: relationship.ended, occurred_at: yesterday}]\n"), "invalid_value"),
    ("an event with a stray key", ("    facts:\n", "    events: [{type: relationship.ended, occurred_at: '2026-01-01T00:00:00Z', by: x}]\n"), "unknown_key"),
    ("events not a list", ("    facts:\n", "    events: {type: relationship.ended}\n"), "wrong_type"),
]


def test_the_base_tests_are_accepted_by_both() -> None:
    assert yaml_errors("policy-test", BASE_TESTS) == []
    cases, errors = policytest.load_cases_text(BASE_TESTS, "t.yaml")
    assert errors == [] and len(cases) == 3
    for case in cases:
        parse_operation(case.input, _VOCAB)


@pytest.mark.parametrize(("what", "edit", "code"), BROKEN_TESTS, ids=[b[0] for b in BROKEN_TESTS])
def test_broken_policy_test_is_rejected_by_schema_and_loader(what: str, edit: tuple[str, str], code: str | None) -> None:
    assert edit[0] in BASE_TESTS
    text = BASE_TESTS.replace(edit[0], edit[1], 1)
    assert yaml_errors("policy-test", text), f"the schema accepts: {what}"
    cases, errors = policytest.load_cases_text(text, "t.yaml")
    if code is not None:
        assert code in [e.code for e in errors], f"the test loader does not report {code} for: {what}"
        return
    assert errors == []
    failed = [r for r in (policytest.run_case(clean_decider(), c) for c in cases) if not r.passed]
    assert any("not a valid request" in f for r in failed for f in r.failures), what


def test_operation_in_defaults_makes_its_fields_required() -> None:
    text = """\
suite: requests
defaults: {operation: subject_request, subject: {id: c-1}}
cases:
  - name: a request
    input: {request: {type: inquiry}}
    expect: {decision: allow}
  - name: something else
    input: {operation: delete}
    expect: {decision: allow}
"""
    assert yaml_errors("policy-test", text) == []
    missing = text.replace("    input: {request: {type: inquiry}}", "    input: {at: '2026-03-02T10:00:00+02:00'}")
    assert any("'request' is a required property" in e for e in yaml_errors("policy-test", missing))
    no_subject = text.replace(", subject: {id: c-1}", "")
    assert any("'subject' is a required property" in e for e in yaml_errors("policy-test", no_subject))
    cookies = "defaults: {operation: store_cookie}\ncases:\n  - {name: a, input: {cookie: {kind: statistics}}, expect: {decision: allow}}\n"
    assert yaml_errors("policy-test", cookies) == []
    assert any("'cookie' is a required property" in e for e in yaml_errors("policy-test", cookies.replace("cookie: {kind: statistics}", "")))
    assert any("'operation' is a required property" in e for e in yaml_errors("policy-test", cookies.replace("operation: store_cookie", "")))
    # a visitor's cookie choices need no customer id, also when store_cookie comes from defaults
    visitor = cookies.replace("input: {cookie: {kind: statistics}}", "input: {cookie: {kind: statistics}, subject: {consents: [cookies_statistics]}}")
    assert "subject: {consents" in visitor and yaml_errors("policy-test", visitor) == []
    other_op = visitor.replace("input: {cookie:", "input: {operation: delete, cookie:")
    assert any("'id' is a required property" in e for e in yaml_errors("policy-test", other_op))


# --- property: generated conditions ---------------------------------------------------------------

_PLAIN_TEXT = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x17F), max_size=12)
_FULL = loader.build_policy_set(
    {"vocabulary.yaml": ("vocabulary.yaml", FULL_VOCAB), "p.yaml": ("p.yaml", dump(BASE_POLICY))}, "mem"
).vocabulary
_PERIODS = st.sampled_from(["1 month", "2 business days", "30 days", "1 year", "6 years from year end", "3 months ago", "accounting_vouchers"])


def _value(path: str) -> st.SearchStrategy[Any]:
    field = FIELDS[path]
    if field.shape == "bool":
        return st.booleans()
    if field.vocab:
        return st.sampled_from(_FULL.ids(field.vocab) or list(field.extra_values))
    if path == "recipient.country":
        return st.sampled_from(["FI", "SE", "US"])
    return _PLAIN_TEXT


def _leaf(path: str) -> st.SearchStrategy[Any]:
    value = _value(path)
    present = st.builds(lambda b: {"present": b}, st.booleans())
    if FIELDS[path].shape == "list":
        return st.one_of(
            st.builds(lambda v: {"contains": v}, value),
            st.builds(lambda vs: {"contains_any": vs}, st.lists(value, min_size=1, max_size=3)),
            present,
        )
    if FIELDS[path].shape == "time":
        return st.one_of(
            st.builds(lambda v: {"within": v}, _PERIODS),
            st.builds(lambda v: {"more_than": v}, _PERIODS),
            present,
        )
    leaves = [
        value,
        st.none(),
        st.builds(lambda vs: {"in": vs}, st.lists(st.one_of(value, st.none()), min_size=1, max_size=3)),
        present,
    ]
    if path == "recipient.country" or (FIELDS[path].shape == "scalar" and not FIELDS[path].vocab):
        leaves.append(st.just({"in_list": "nordic_countries"}))  # country codes: free text takes them too
    return st.one_of(*leaves)


_LEAVES = st.sampled_from(list(FIELDS)).flatmap(lambda p: st.tuples(st.just(p), _leaf(p)))


def _mapping(children: st.SearchStrategy[Any]) -> st.SearchStrategy[dict[str, Any]]:
    combinators = st.one_of(
        st.tuples(st.sampled_from(["all", "any"]), st.lists(children, max_size=3)),
        st.tuples(st.just("not"), children),
    )
    return st.lists(st.one_of(_LEAVES, combinators), min_size=1, max_size=4).map(dict)


CONDITIONS = st.recursive(_mapping(st.booleans()), _mapping, max_leaves=8)

# A mistake put into a valid condition: (key, value) the loader must reject.
MISTAKES = st.one_of(
    st.tuples(st.sampled_from(["recipient.kind", "subject.consent", "operations", "Operation", "request"]), st.just("x")),
    st.tuples(st.sampled_from(["operation", "purpose", "subject.relationship"]), st.sampled_from([{"one_of": ["x"]}, ["a", "b"], 3, {"contains": "x"}, {"in": []}])),
    st.tuples(st.sampled_from(["data_categories", "subject.consents"]), st.sampled_from(["email", {"in": ["email"]}, {"contains": None}, {"contains_any": []}])),
    st.tuples(st.sampled_from(["request.written", "subject.erasure_requested"]), st.sampled_from(["yes", "true", 1])),
    st.tuples(st.just("recipient.country"), st.sampled_from(["fi", "FIN", "Finland"])),
    st.tuples(st.sampled_from(["all", "any"]), st.sampled_from([{"operation": "delete"}, "x"])),
    st.tuples(
        st.sampled_from(["subject.relationship_ended_at", "subject.erasure_requested_at"]),
        st.sampled_from(["2026-01-01", None, {"in": ["x"]}, {"within": "2 weeks"}, {"more_than": "0 days"}, {"within": 30},
                         {"within": "month 1"}, {"within": "1 month", "more_than": "1 year"}]),
    ),
    st.tuples(st.sampled_from(["operation", "request.written", "data_categories"]), st.sampled_from([{"within": "1 month"}, {"more_than": "accounting_vouchers"}])),
    st.tuples(st.sampled_from(["recipient.country", "recipient.name"]), st.sampled_from([{"in_list": "Nordic countries"}, {"in_list": ["nordic_countries"]}])),
    st.tuples(st.sampled_from(["data_categories", "request.written", "subject.relationship_ended_at"]), st.just({"in_list": "nordic_countries"})),
)


def _policy_with(when: Any, unless: Any = None) -> str:
    rule: dict[str, Any] = {"id": "p.generated", "effect": "forbid", "when": when, "reason": {"fi": "Syy", "en": "Reason"}}
    if unless is not None:
        rule["unless"] = unless
    return dump({"policy": "p", "title": {"fi": "P", "en": "P"}, "source": "§1", "rules": [rule]})


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(when=CONDITIONS, unless=st.one_of(st.none(), CONDITIONS))
def test_generated_conditions_are_accepted_by_both(when: Any, unless: Any) -> None:
    text = _policy_with(when, unless)
    assert yaml_errors("policy", text) == []
    assert loader_codes(text, FULL_VOCAB) == []


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(when=CONDITIONS, mistake=MISTAKES, nest=st.sampled_from(["top", "all", "not"]))
def test_a_mistake_anywhere_in_a_condition_is_rejected_by_both(when: dict[str, Any], mistake: tuple[str, Any], nest: str) -> None:
    key, value = mistake
    bad = {k: v for k, v in when.items() if k != key}
    bad[key] = value
    if nest == "all":
        bad = {"all": [when, bad]}
    elif nest == "not":
        bad = {"not": bad}
    text = _policy_with(bad)
    assert yaml_errors("policy", text), text
    assert loader_codes(text, FULL_VOCAB), text


# --- (d) modelines --------------------------------------------------------------------------------


def _modeline_target(path: Path) -> tuple[int, Path | None]:
    """(line number, resolved schema path) of a file's modeline; (0, None) when it has none."""
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if line.startswith(MODELINE):
            return number, (path.parent / line[len(MODELINE):].strip()).resolve()
    return 0, None


def pack_files() -> list[Path]:
    return [p for p in yaml_files() if PACK in p.parents]


@pytest.mark.parametrize("path", pack_files(), ids=lambda p: str(p.relative_to(REPO)))
def test_pack_file_starts_with_its_schema_modeline(path: Path) -> None:
    kind = kind_of(path)
    target = SCHEMA_DIR / f"{kind}.schema.json"
    # policies/x.yaml: ../src/kti_policy/policy/schemas/policy.schema.json;
    # policies/tests/x_test.yaml: ../../src/kti_policy/policy/schemas/policy-test.schema.json
    expected = MODELINE + os.path.relpath(target, path.parent)
    assert path.read_text(encoding="utf-8").splitlines()[0] == expected
    assert _modeline_target(path) == (1, target.resolve())


@pytest.mark.parametrize("path", sorted(CLEAN.glob("*.yaml")), ids=lambda p: p.name)
def test_example_file_names_its_schema(path: Path) -> None:
    """The example folder carries the modeline below the lines other tests pin (not first), so that
    their line numbers stay; the YAML language server reads a modeline on any comment line."""
    number, target = _modeline_target(path)
    assert number > 1
    assert target == (SCHEMA_DIR / f"{kind_of(path)}.schema.json").resolve()


def test_modeline_regex_matches_the_yaml_language_server() -> None:
    """Its modeline rule: a comment starting '# yaml-language-server:' then '$schema=<path>'."""
    for path in yaml_files():
        number, _ = _modeline_target(path)
        line = path.read_text(encoding="utf-8").splitlines()[number - 1]
        assert re.match(r"^#\s+(?:yaml-language-server\s*:|\$schema:)", line)
        assert re.search(r"\$schema(?:=|:\s*)(\S+)", line)
