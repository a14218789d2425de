"""loader: the pack's data (named lists, named periods, acts) and the v2 rule keys, with positions."""

from __future__ import annotations

from pathlib import Path

import pytest

from kti_policy.errors import PolicyErrors
from kti_policy.policy.durations import Period
from kti_policy.policy.loader import build_policy_set, check_citation
from kti_policy.policy.model import Elapsed, In

VOCAB = (Path(__file__).parent.parent / "data" / "clean" / "vocabulary.yaml").read_text(encoding="utf-8")
DATA = """
lists:
  nordics:
    label: {fi: Pohjoismaat, en: Nordic countries}
    checked: "2026-12-04"
    source: a map
    values: [FI, SE, "NO", DK, IS]
periods:
  vouchers:
    label: {fi: Tositteet, en: Vouchers}
    period: 6 years from year end
    law: [KPL 2:10]
laws:
  GDPR: {title: {fi: Tietosuoja-asetus, en: GDPR}, url: https://eur-lex.europa.eu/eli/reg/2016/679/oj}
  KPL: {title: {fi: Kirjanpitolaki, en: Accounting Act}}
"""
RULE = """\
policy: p
title: {fi: P, en: P}
source: "§1"
rules:
  - id: p.rule
    effect: permit
    law: [GDPR 6(1)(c), KPL 2:10]
    overrides_notice:
      notice: "Tarkastuspyyntö on lähetettävä kirjallisesti"
      why: {fi: Muotoa ei saa vaatia., en: No form may be required.}
    when:
      operation: disclose
      recipient.country: {in_list: nordics}
      subject.relationship_ended_at: {more_than: vouchers}
    reason: {fi: x, en: x}
"""


def build(vocab_extra: str = DATA, rule: str = RULE) -> object:
    return build_policy_set({"vocabulary.yaml": ("vocabulary.yaml", VOCAB + vocab_extra), "p.yaml": ("p.yaml", rule)})


def test_named_lists_periods_and_acts_are_loaded_and_used() -> None:
    ps = build()
    vocab = ps.vocabulary  # type: ignore[attr-defined]
    assert vocab.lists["nordics"].values == ("FI", "SE", "NO", "DK", "IS") and vocab.lists["nordics"].checked == "2026-12-04"
    assert vocab.periods["vouchers"].period == Period(6, "years", True) and vocab.periods["vouchers"].law == ("KPL 2:10",)
    assert set(vocab.laws) == {"GDPR", "KPL"}
    rule = ps.rules[0]  # type: ignore[attr-defined]
    assert rule.law == ("GDPR 6(1)(c)", "KPL 2:10")
    assert rule.overrides is not None and rule.overrides.notice.startswith("Tarkastuspyyntö")
    country, ended = rule.when.items[1], rule.when.items[2]
    assert isinstance(country, In) and country.list_name == "nordics" and "NO" in country.values
    assert isinstance(ended, Elapsed) and ended.period_name == "vouchers" and not ended.within
    described = ps.to_dict()["policies"][0]["rules"][0]  # type: ignore[attr-defined]
    assert described["law"] == ["GDPR 6(1)(c)", "KPL 2:10"] and described["overrides_notice"]["notice"]
    assert described["when"]["all"][1] == {"recipient.country": {"in_list": "nordics"}}
    assert described["when"]["all"][2] == {"subject.relationship_ended_at": {"more_than": "vouchers"}}


@pytest.mark.parametrize(
    ("extra", "rule", "line", "code", "words"),
    [
        (DATA.replace('"NO"', "NO"), RULE, 7, "wrong_type", "quote them"),
        (DATA.replace("6 years from year end", "six years"), RULE, 11, "invalid_period", "is not a period"),
        (DATA.replace("[KPL 2:10]", "[KPL]"), RULE, 12, "invalid_citation", "article or section"),
        (DATA, RULE.replace("GDPR 6(1)(c)", "TFEU 16"), 7, "invalid_citation", "known act"),
        (DATA, RULE.replace("in_list: nordics", "in_list: nordic"), 13, "unknown_list", "did you mean 'nordics'"),
        (DATA, RULE.replace("more_than: vouchers", "more_than: voucher"), 14, "invalid_period", "named period"),
        (DATA, RULE.replace("more_than: vouchers", "more_than: 1 fortnight"), 14, "invalid_period", "is not a period"),
        (DATA, RULE.replace("recipient.country: {in_list: nordics}", "recipient.country: {within: 1 month}"), 13,
         "invalid_operator", "time fields only"),
        (DATA, RULE.replace("subject.relationship_ended_at: {more_than: vouchers}", "subject.relationship_ended_at: x"),
         14, "invalid_operator", "is a time"),
        (DATA, RULE.replace("      why: {fi: Muotoa ei saa vaatia., en: No form may be required.}\n", ""), 9,
         "missing_key", "'why'"),
    ],
)
def test_data_and_rule_errors_have_positions(extra: str, rule: str, line: int, code: str, words: str) -> None:
    with pytest.raises(PolicyErrors) as exc:
        build(extra, rule)
    errors = exc.value.errors
    file = "vocabulary.yaml" if extra != DATA else "p.yaml"
    hits = [e for e in errors if e.code == code and e.position.file == file]
    assert hits, [str(e) for e in errors]
    vocab_lines = VOCAB.count("\n")
    got = hits[0].position.line - (vocab_lines if file == "vocabulary.yaml" else 0)
    assert got == line and words in hits[0].message, str(hits[0])


@pytest.mark.parametrize("text", ["GDPR 12(3)", "GDPR 17(3)(b)", "GDPR 44-49", "KPL 2:10", "GDPR 21(2)-(3)",
                                  "SVPL 205", "1182/71 3(1)", "GDPR 6(1)(c)"])
def test_citations_that_read_right(text: str) -> None:
    assert check_citation(text, {}) is None


@pytest.mark.parametrize("text", ["GDPR", "GDPR art. 12", "gdpr 12", "GDPR 12 (3)", "PDA 523/1999", 12])
def test_citations_that_do_not(text: object) -> None:
    assert check_citation(text, {}) is not None
