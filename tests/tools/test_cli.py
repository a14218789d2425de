"""The kti-policy command: exit codes and output, through click's runner and as a real process."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from click.testing import CliRunner
from test_policytest import TESTS, make_folder

from kti_policy.tools.cli import main

REPO = Path(__file__).resolve().parents[2]


def run(*args: str, input: str | None = None) -> tuple[int, str, str]:
    res = CliRunner().invoke(main, list(args), input=input)
    return res.exit_code, res.stdout, res.stderr


def test_check_clean_folder(tmp_path: Path) -> None:
    folder = make_folder(tmp_path / "p")
    code, out, _ = run("check", str(folder), "--hooks", str(tmp_path / "none"))
    assert code == 0
    assert out.startswith("ok: 1 policies, 3 rules, 4 test cases")


def test_check_reports_file_line_col_and_fails(tmp_path: Path) -> None:
    folder = make_folder(tmp_path / "p")
    text = (folder / "disclosure.yaml").read_text().replace("effect: forbid", "effect: deny")
    (folder / "disclosure.yaml").write_text(text)
    code, _, err = run("check", str(folder), "--hooks", str(tmp_path / "none"))
    assert code == 1
    assert f"{folder / 'disclosure.yaml'}:10:13: rule disclosure.others: effect must be permit or forbid" in err


def test_check_json_format(tmp_path: Path) -> None:
    folder = make_folder(tmp_path / "p")
    (folder / "disclosure.yaml").write_text("policy: [\n")
    code, out, _ = run("check", str(folder), "--format", "json", "--hooks", str(tmp_path / "none"))
    assert code == 1
    body = json.loads(out)
    assert body["ok"] is False and body["problems"][0]["code"] == "policy_parse_error"
    assert body["problems"][0]["line"] == 2


_OVERRIDE = """    law: [GDPR 6(1)(a)]
    overrides_notice:
      notice: "Ei luovuteta kenellekään."
      why: {fi: Suostumuksella saa luovuttaa., en: Consent allows a disclosure.}
"""


def test_check_lists_notice_conflicts_as_information(tmp_path: Path) -> None:
    from test_policytest import POLICY

    policy = POLICY.replace("    effect: forbid\n", "    effect: forbid\n" + _OVERRIDE, 1)
    folder = make_folder(tmp_path / "p", policy=policy)
    line = policy.splitlines().index("  - id: disclosure.others") + 1
    code, out, err = run("check", str(folder), "--hooks", str(tmp_path / "none"))
    assert code == 0 and err == ""  # information, not an error or a warning
    lines = out.splitlines()
    assert lines[0].startswith("ok: 1 policies, 3 rules")
    assert lines[1] == ("notice conflicts (information, not errors): 1 rules follow the law where "
                        "1 sentences of the register notice say otherwise")
    assert lines[2] == '  notice: "Ei luovuteta kenellekään."'
    assert lines[3] == f"    {folder / 'disclosure.yaml'}:{line}:5: disclosure.others [GDPR 6(1)(a)]"
    assert lines[4] == "    law in force: Consent allows a disclosure."
    assert run("check", str(folder), "--hooks", str(tmp_path / "none"), "--lang", "fi")[1].splitlines()[4] == (
        "    law in force: Suostumuksella saa luovuttaa.")
    code, out, _ = run("check", str(folder), "--format", "json", "--hooks", str(tmp_path / "none"))
    assert code == 0
    assert json.loads(out)["notice_conflicts"] == [{"notice": "Ei luovuteta kenellekään.", "rules": [
        {"rule": "disclosure.others", "where": f"{folder / 'disclosure.yaml'}:{line}:5", "law": ["GDPR 6(1)(a)"],
         "why": "Consent allows a disclosure."}]}]
    # without overrides there is no section; an error elsewhere keeps its exit code
    assert "notice conflicts" not in run("check", str(make_folder(tmp_path / "q")), "--hooks", str(tmp_path / "none"))[1]
    (folder / "tests" / "disclosure_test.yaml").write_text("cases: [\n")
    code, out, _ = run("check", str(folder), "--hooks", str(tmp_path / "none"))
    assert code == 1 and "notice conflicts (information, not errors)" in out


def test_check_lists_the_shipped_packs_notice_conflicts() -> None:
    code, out, _ = run("check", str(REPO / "policies"), "--hooks", str(REPO / "hooks"))
    assert code == 0
    section = out.split("notice conflicts (information, not errors)")[1]
    for notice, rule in [
        ("Tarkastuspyyntö tulee lähettää kirjallisesti ja allekirjoitettuna.", "requests.rights"),
        ("Tarkastusoikeus on maksuton enintään kerran vuodessa (12 kuukautta).", "requests.access-fee [GDPR 12(5), GDPR 15(3)]"),
        ("Huomioithan, että KTI katsoo sinun hyväksyneen evästeiden käytön, ellet poista niitä käytöstä.", "cookies.without-consent [SVPL 205]"),
        ("Henkilötietolain (523/99) 10 §:n mukainen rekisteriseloste ja tietosuoja.", "purposes.register"),
        ("Tietoja voidaan poistaa Asiakkaan vaatimuksesta tai asiakassuhteen loppumisen vuoksi.", "retention.vouchers-keep [KPL 2:10"),
        ("Rekisterinpitäjä ei luovuta Asiakkaiden henkilötietoja ulkopuolisille, paitsi Suomen viranomaistoimien niin edellyttäessä.",
         "disclosure.internal-or-processor [GDPR 28(3)"),
    ]:
        assert f'notice: "{notice}"' in section
        assert rule in section.split(f'notice: "{notice}"')[1].split("notice:")[0]


def test_test_command_summary_junit_coverage(tmp_path: Path) -> None:
    folder = make_folder(tmp_path / "p")
    junit = tmp_path / "junit.xml"
    code, out, _ = run("test", str(folder), "--junit", str(junit), "--coverage")
    assert code == 0, out
    assert "coverage: 3/3 rules" in out
    assert "both sides: 3/3 rules" in out
    assert out.strip().splitlines()[-1] == "4 passed, 0 failed"
    assert junit.read_bytes().startswith(b"<?xml")


def test_test_command_fails_on_failing_case_and_on_missing_coverage(tmp_path: Path) -> None:
    folder = make_folder(tmp_path / "p", tests=TESTS.replace("2026-12-22", "2026-12-23"))
    code, out, _ = run("test", str(folder))
    assert code == 1 and "FAIL" in out and "1 failed" in out
    folder2 = make_folder(tmp_path / "q", tests=TESTS.split("  - name: partner denied")[0])
    assert run("test", str(folder2))[0] == 0
    code, out, _ = run("test", str(folder2), "--coverage")
    assert code == 1 and "not exercised: disclosure.others" in out
    folder3 = make_folder(tmp_path / "r", tests=TESTS.split("  - name: an access request is no inquiry")[0])
    code, out, _ = run("test", str(folder3), "--coverage")
    assert code == 1 and "tested on one side only: requests.inquiry" in out


def test_eval_prints_reasons_and_explains(tmp_path: Path) -> None:
    folder = make_folder(tmp_path / "p")
    req = json.dumps({"operation": "disclose", "recipient": {"country": "FI", "type": "partner"}, "subject": {"id": "c-1"}})
    code, out, _ = run("eval", req, "--policies", str(folder), "--lang", "fi", "--explain")
    assert code == 0
    assert out.startswith("DENY")
    assert "disclosure.others [§7]: Ei luovuteta ulkopuolisille." in out
    assert "MATCH forbid disclosure.others" in out


def test_eval_stdin_json_and_bad_input(tmp_path: Path) -> None:
    folder = make_folder(tmp_path / "p")
    req = json.dumps({"operation": "disclose", "recipient": {"country": "FI", "type": "authority"}, "legal_basis": {"type": "legal_obligation"}, "subject": {"id": "c-1"}})
    code, out, _ = run("eval", "-", "--policies", str(folder), "--json", input=req)
    assert code == 0 and json.loads(out)["decision"] == "allow"
    code, _, err = run("eval", '{"operation": "disclose", "recipient": {"country": "FI", "type": "alien"}, "subject": {"id": "x"}}', "--policies", str(folder))
    assert code == 2 and "unknown id 'alien'" in err and "authority, partner" in err
    code, _, err = run("eval", "{not json", "--policies", str(folder))
    assert code == 2 and "not valid JSON" in err


def test_installed_console_script_runs(tmp_path: Path) -> None:
    folder = make_folder(tmp_path / "p")
    exe = Path(sys.executable).parent / "kti-policy"
    proc = subprocess.run([str(exe), "test", str(folder)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "4 passed, 0 failed" in proc.stdout


# --- time: eval --at and --events -----------------------------------------------------------------

_TIMED_VOCAB_EXTRA = "  subject_kind:\n    consumer: {fi: Kuluttaja, en: Consumer}\n"
_TIMED = """\
policy: timed
title: {fi: Aika, en: Time}
source: "§8"
rules:
  - id: timed.retain-until-a-month-after-the-end
    effect: permit
    law: [GDPR 5(1)(e)]
    when: {operation: retain, subject.relationship_ended_at: {within: 1 month}}
    reason: {fi: Säilytys kuukauden ajan., en: Kept for a month after the end.}
"""
_EVENTS = json.dumps([
    {"type": "relationship.started", "occurred_at": "2026-01-01T10:00:00Z"},
    {"type": "relationship.ended", "occurred_at": "2026-01-31T10:00:00+02:00"},
])


def _timed_folder(tmp_path: Path) -> Path:
    folder = tmp_path / "timed"
    folder.mkdir()
    (folder / "vocabulary.yaml").write_text(
        "vocabulary:\n" + "".join(
            f"  {k}:\n    {v}: {{fi: x, en: x}}\n" for k, v in (
                ("operation", "retain"), ("purpose", "p"), ("data_category", "name"), ("recipient_type", "authority"),
                ("source", "s"), ("objection_scope", "marketing"), ("consent_purpose", "disclosure"),
                ("request_type", "access"), ("legal_basis_type", "consent"), ("relationship", "active"))
        ) + _TIMED_VOCAB_EXTRA, encoding="utf-8")
    (folder / "timed.yaml").write_text(_TIMED, encoding="utf-8")
    return folder


def test_eval_at_with_events_decides_as_of_that_day(tmp_path: Path) -> None:
    folder = _timed_folder(tmp_path)
    req = '{"operation": "retain", "subject": {"id": "c-1"}}'
    # one month from 31 January is 28 February: the day of is within, the day after is not
    code, out, _ = run("eval", req, "--policies", str(folder), "--events", _EVENTS, "--at", "2026-02-28T23:00:00+02:00")
    assert code == 0 and out.startswith("ALLOW") and "(GDPR 5(1)(e))" in out
    code, out, _ = run("eval", req, "--policies", str(folder), "--events", _EVENTS, "--at", "2026-03-01T00:30:00+02:00")
    assert code == 0 and out.startswith("DENY") and "default.deny" in out
    # before the end, as the facts stood then: the relationship had not ended, nothing permits
    code, out, _ = run("eval", req, "--policies", str(folder), "--events", _EVENTS, "--at", "2026-01-15T12:00:00Z",
                       "--json", "--explain")
    body = json.loads(out)
    assert body["decision"] == "deny" and body["explain"][0]["when"]["held"] is False


def test_eval_rejects_bad_events(tmp_path: Path) -> None:
    folder = _timed_folder(tmp_path)
    code, _, err = run("eval", '{"operation": "retain", "subject": {"id": "c"}}', "--policies", str(folder),
                       "--events", '{"type": "x"}')
    assert code == 2 and "--events" in err


def test_check_names_a_rule_too_complex_for_the_engine(tmp_path: Path) -> None:
    import shutil

    from test_app import _too_complex_rule

    folder = tmp_path / "p"
    shutil.copytree(Path(__file__).parent.parent / "data" / "clean", folder)
    (folder / "big.yaml").write_text(_too_complex_rule(), encoding="utf-8")
    code, _, err = run("check", str(folder))
    assert code == 1
    assert f"{folder / 'big.yaml'}:5:5: rule big.too-complex is too complex for the rule engine" in err + _
    assert "[engine_limit]" in err + _


def test_eval_obligation_lines_say_date_fee_or_nothing() -> None:
    """An obligation without a date or a fee (verify_identity) is not printed as "(free)"."""
    req = json.dumps({"operation": "subject_request", "request": {"type": "access", "written": True,
                      "identity_verified": False, "received_at": "2026-03-02T10:00:00+02:00"},
                      "subject": {"id": "c-1"}, "at": "2026-03-02T10:00:00+02:00"})
    code, out, _ = run("eval", req, "--policies", str(REPO / "policies"))
    assert code == 0, out
    lines = [ln.strip() for ln in out.splitlines() if ln.strip().startswith("obligation ")]
    assert any(ln.startswith("obligation verify_identity: ") for ln in lines), lines
    assert any(ln.startswith("obligation respond_by (2026-04-02): ") for ln in lines), lines
    assert any(ln.startswith("obligation access_fee (free): ") for ln in lines), lines


def test_check_names_a_holds_id_the_vocabulary_does_not_know(tmp_path: Path) -> None:
    """``holds`` decides which systems get deletion tasks: a misspelt category is an error at its
    line, checked against the pack's vocabulary; the known ones pass."""
    hooks = tmp_path / "hooks"
    hooks.mkdir()
    (hooks / "crm.yaml").write_text(
        "subscriptions:\n"
        "  - id: crm\n"
        "    url: http://127.0.0.1:9000/kti\n"
        "    events: [erasure.requested]\n"
        "    secret_env: KTI_HOOK_SECRET_CRM\n"
        "    holds: [email, emial]\n", encoding="utf-8")
    code, out, err = run("check", str(REPO / "policies"), "--hooks", str(hooks))
    assert code == 1
    assert f"{hooks / 'crm.yaml'}:6:20: holds: unknown data category 'emial'" in out + err
    (hooks / "crm.yaml").write_text((hooks / "crm.yaml").read_text().replace("emial", "name"), encoding="utf-8")
    code, out, err = run("check", str(REPO / "policies"), "--hooks", str(hooks))
    assert code == 0, out + err
