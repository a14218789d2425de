"""kti-policy diff: replaying a real decision log and policy tests against an edited copy of a folder."""

from __future__ import annotations

import gzip
import json
import shutil
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from kti_policy.api.decision_log import DecisionLog
from kti_policy.decide.decision import Decider
from kti_policy.decide.operation import parse_operation
from kti_policy.facts.fold import SubjectFacts
from kti_policy.policy.loader import load_policy_set
from kti_policy.store.pseudonym import Pseudonymizer
from kti_policy.tools.cli import main

DATA = Path(__file__).resolve().parent.parent / "data"
LOGGED_AT = datetime(2026, 1, 15, 8, 0, tzinfo=UTC)  # when the logged decisions were made

DM = {"operation": "process", "purpose": "direct_marketing", "data_categories": ["email"]}
CR = {"operation": "process", "purpose": "customer_relationship", "data_categories": ["name"]}
AUTHORITY = {"operation": "disclose", "recipient": {"type": "authority", "country": "FI"},
             "legal_basis": {"type": "legal_obligation"}}
ACCESS = {"operation": "subject_request",
          "request": {"type": "access", "written": True, "signed": True, "received_at": "2026-01-12T09:00:00+02:00"}}
ACCESS_NO_TIME = {"operation": "subject_request", "request": {"type": "access", "written": True, "signed": True}}
OBJECTED = {"consents": [], "objections": ["direct_marketing"], "relationship": "active", "erasure_requested": False}

# (request, recorded facts) per log line, and what the edit in ``edited`` does to each
LOG = [
    (DM, None),  # line 1: allow -> deny (direct_marketing is no longer a listed purpose)
    (CR, None),  # unchanged
    (DM, None),  # line 3: allow -> deny
    (AUTHORITY, None),  # unchanged
    (ACCESS, None),  # line 5: obligations (respond_by one month -> two business days)
    (DM, OBJECTED),  # unchanged: the objection's forbid decided before and still does
    (CR, None),  # unchanged
    (ACCESS_NO_TIME, None),  # line 8: obligations, due counted from the logged time
    (DM, None),  # line 9: allow -> deny
]
PURPOSES = "purpose: {in: [customer_relationship, direct_marketing, site_statistics]}"
ACCESS_DUE = "respond_by: {months: 1}\n      - access_fee"


def folder(root: Path) -> Path:
    """tests/data/clean with the policy tests of tests/data/diff."""
    shutil.copytree(DATA / "clean", root)
    (root / "tests").mkdir()
    shutil.copy(DATA / "diff" / "clean_test.yaml", root / "tests" / "clean_test.yaml")
    return root


def edit(root: Path, name: str, old: str, new: str) -> None:
    path = root / name
    text = path.read_text(encoding="utf-8")
    assert text.count(old) == 1, f"{old!r} not once in {path}"
    path.write_text(text.replace(old, new), encoding="utf-8")


def edited(root: Path) -> Path:
    edit(root, "processing.yaml", PURPOSES, "purpose: {in: [customer_relationship, site_statistics]}")
    edit(root, "requests.yaml", ACCESS_DUE, "respond_by: {business_days: 2}\n      - access_fee")
    return root


def write_log(policies: Path, path: Path, lines: list[tuple[dict[str, Any], dict[str, Any] | None]]) -> Path:
    """Decide each request as the service does and append its line with the real decision log."""
    ps = load_policy_set(policies)
    decider = Decider(ps)
    pseudonyms = Pseudonymizer("test-pseudonym-key-0123456789")
    log = DecisionLog.open(str(path))
    for i, (body, facts) in enumerate(lines):
        op = parse_operation({**body, "subject": {"id": f"customer-{i}"}}, ps.vocabulary)
        decision = decider.decide(op, SubjectFacts.from_dict(facts), LOGGED_AT)
        log.write(decision.log_record(pseudonyms.subject_key(op.subject_id or "")))
    log.close()
    return path


@pytest.fixture
def setup(tmp_path: Path) -> tuple[Path, Path, Path]:
    old = folder(tmp_path / "old")
    new = edited(folder(tmp_path / "new"))
    log = write_log(old, tmp_path / "decisions.jsonl", LOG)
    return old, new, log


def run(*args: str, input: bytes | None = None) -> tuple[int, str, str]:
    res = CliRunner().invoke(main, ["diff", *args], input=input)
    return res.exit_code, res.stdout, res.stderr


def test_log_holds_no_clear_subject_id_and_unchanged_folders_exit_0(setup: tuple[Path, Path, Path], tmp_path: Path) -> None:
    old, _, log = setup
    assert "customer-0" not in log.read_text()
    same = folder(tmp_path / "same")
    code, out, _ = run(str(old), str(same), "--log", str(log))
    assert code == 0, out
    assert "replayed 9 logged decisions and 2 policy test cases: 0 changed, 11 unchanged" in out


def test_json_counts_groups_and_examples(setup: tuple[Path, Path, Path]) -> None:
    old, new, log = setup
    code, out, err = run(str(old), str(new), "--log", str(log), "--format", "json", "--examples", "2")
    assert code == 1, err
    body = json.loads(out)
    s = body["summary"]
    assert (s["log_lines"], s["test_cases"], s["changed"], s["unchanged"]) == (9, 2, 6, 5)
    assert s["transitions"] == {"allow->deny": 4, "obligations": 2}
    assert s["log_mismatches"] == 0  # replayed at the logged time, the old set reproduces the log
    groups = {g["rule"]: g for g in body["groups"]}
    assert [g["rule"] for g in body["groups"]] == ["processing.purposes", "default.deny", "request.access"]
    purposes = groups["processing.purposes"]
    assert (purposes["status"], purposes["changed"], purposes["disappears"], purposes["appears"]) == ("changed", 4, 4, 0)
    assert groups["default.deny"]["appears"] == 4 and groups["default.deny"]["status"] == "built-in"
    access = groups["request.access"]
    assert (access["obligations"], access["transitions"]) == (2, {"obligations": 2})
    assert body["untested_rule_changes"] == []

    first, second = purposes["examples"]  # --examples 2, in log order
    assert first["source"] == f"{log}:1" and second["source"] == f"{log}:3"
    assert first["id"].startswith("dec_") and first["request"]["subject"]["id"].startswith("hs_")
    assert first["old"]["rules"] == ["processing.purposes"] and first["new"] == {
        "decision": "deny", "rules": ["default.deny"], "obligations": []}

    # the deadline of a request without received_at or at comes from the logged time, not today
    timeless = access["examples"][1]
    assert timeless["source"] == f"{log}:8"
    assert [o["due"] for o in timeless["old"]["obligations"] if o["type"] == "respond_by"] == ["2026-02-16"]
    assert [o["due"] for o in timeless["new"]["obligations"] if o["type"] == "respond_by"] == ["2026-01-19"]


def test_test_cases_are_replayed_once_and_named_by_position(setup: tuple[Path, Path, Path]) -> None:
    old, new, _ = setup
    code, out, _ = run(str(old), str(new), "--format", "json")
    assert code == 1
    body = json.loads(out)
    assert body["summary"]["test_cases"] == 2 and body["summary"]["log_lines"] == 0
    (example,) = body["groups"][0]["examples"]
    assert example["source"] == f"{new / 'tests' / 'clean_test.yaml'}:6:5"
    assert example["id"] == "clean :: direct marketing is a listed purpose"
    assert run(str(old), str(new), "--no-cases")[0] == 0
    code, out, _ = run(str(old), str(new), "--cases", str(DATA / "diff" / "clean_test.yaml"), "--format", "json")
    assert json.loads(out)["summary"]["changed"] == 1


def test_text_and_markdown_reports(setup: tuple[Path, Path, Path]) -> None:
    old, new, log = setup
    code, out, _ = run(str(old), str(new), "--log", str(log), "--examples", "1")
    assert code == 1
    assert "replayed 9 logged decisions and 2 policy test cases: 6 changed, 5 unchanged" in out
    assert "processing.purposes [changed]  4 changed: disappears 4 (allow->deny 4)" in out
    assert f"  {log}:1 dec_" in out
    assert "    allow [processing.purposes] -> deny [default.deny]" in out
    assert "operation=process purpose=direct_marketing data_categories=email" in out
    assert "  ... and 3 more" in out

    code, md, _ = run(str(old), str(new), "--log", str(log), "--format", "markdown", "--examples", "1")
    assert code == 1
    lines = md.splitlines()
    assert lines[0] == "### Policy impact: 6 of 11 replayed decisions change"
    assert "| allow \u2192 deny | 4 |" in lines and "| unchanged | 5 |" in lines
    assert "| `processing.purposes` | changed | 4 | 0 | 4 | 0 | allow \u2192 deny: 4 |" in lines
    section = lines.index("#### `processing.purposes` (changed): 4 decisions")
    assert lines[section + 2].startswith(f"- `{log}:1` `dec_")
    assert "**allow \u2192 deny**" in lines[section + 2]
    assert lines.index("#### `request.access` (changed): 2 decisions") > section


def test_untested_rule_change_is_noted(setup: tuple[Path, Path, Path], tmp_path: Path) -> None:
    old, _, log = setup
    new = folder(tmp_path / "collect")
    edit(new, "processing.yaml", "source: data_subject}", "source: {in: [data_subject, web_scraping]}}")
    code, out, _ = run(str(old), str(new), "--log", str(log), "--format", "json")
    assert code == 0
    assert json.loads(out)["untested_rule_changes"] == [{"rule": "collect.sources", "status": "changed"}]
    code, out, _ = run(str(old), str(new), "--log", str(log))
    assert "no replayed decision exercises these rule changes: collect.sources (changed)" in out


def test_an_id_the_new_vocabulary_drops_is_a_change(setup: tuple[Path, Path, Path], tmp_path: Path) -> None:
    old, _, log = setup
    new = folder(tmp_path / "novocab")
    edit(new, "processing.yaml", PURPOSES, "purpose: {in: [direct_marketing, site_statistics]}")
    edit(new, "vocabulary.yaml", "    customer_relationship: {fi: Asiakassuhde, en: Customer relationship}\n", "")
    code, out, err = run(str(old), str(new), "--log", str(log), "--format", "json", "--no-cases")
    assert code == 1, err
    s = json.loads(out)["summary"]
    assert s["transitions"] == {"allow->invalid": 2}
    example = json.loads(out)["groups"][0]["examples"][0]
    assert example["old"]["rules"] == ["processing.purposes"]
    assert example["new"]["decision"] == "invalid" and "unknown id 'customer_relationship'" in example["new"]["error"]


def test_gzip_and_stdin_logs(setup: tuple[Path, Path, Path], tmp_path: Path) -> None:
    old, new, log = setup
    gz = tmp_path / "decisions.jsonl.gz"
    gz.write_bytes(gzip.compress(log.read_bytes()))
    for args, stdin in (([str(gz)], None), (["-"], log.read_bytes())):
        code, out, _ = run(str(old), str(new), "--no-cases", "--format", "json", "--log", *args, input=stdin)
        assert code == 1 and json.loads(out)["summary"]["changed"] == 5


def test_unreadable_log_lines_exit_2_naming_file_and_line(setup: tuple[Path, Path, Path], tmp_path: Path) -> None:
    old, new, log = setup
    lines = log.read_text().splitlines()
    bad = tmp_path / "bad.jsonl"
    bad.write_text("\n".join([lines[0], '{"request": ', lines[1], "", '{"facts": {}}',
                              lines[2].replace('"operation":"process"', '"operation":7')]) + "\n")
    code, out, err = run(str(old), str(new), "--log", str(bad))
    assert code == 2 and out == ""
    assert f"{bad}:2:13: not JSON: Expecting value [bad_log_line]" in err
    assert f"{bad}:5:1: the line has no 'request' [bad_log_line]" in err
    assert f"{bad}:6:1: the logged request is not valid: invalid request: operation: Not a valid string." in err
    assert f"error: 3 unreadable lines in {bad}" in err


def test_policy_errors_bad_folders_and_usage_exit_2(setup: tuple[Path, Path, Path], tmp_path: Path) -> None:
    old, new, log = setup
    edit(new, "processing.yaml", "effect: forbid\n    when:\n      operation: {in", "effect: deny\n    when:\n      operation: {in")
    code, _, err = run(str(old), str(new), "--log", str(log))
    assert code == 2
    assert f"{new / 'processing.yaml'}:10:13: rule processing.special: effect must be permit or forbid" in err
    assert f"error: the new policies ({new}) do not load" in err
    code, _, err = run(str(old), str(tmp_path / "missing"))
    assert code == 2 and "does not exist" in err
    assert run(str(old))[0] == 2  # one folder needs --old
    assert run(str(old), str(old), "--old", "HEAD")[0] == 2
    code, _, err = run(str(old), str(old), "--log", str(tmp_path / "nolog.jsonl"))
    assert code == 2 and "cannot read the decision log" in err


def git(repo: Path, *args: str) -> None:
    subprocess.run(["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@example.org", *args],
                   check=True, capture_output=True)


def test_old_revision_read_from_git(setup: tuple[Path, Path, Path], tmp_path: Path) -> None:
    old, new, log = setup
    repo = tmp_path / "repo"
    repo.mkdir()
    git(repo, "init", "-q")
    shutil.copytree(old, repo / "policies")
    git(repo, "add", ".")
    git(repo, "commit", "-q", "-m", "clean")
    for f in ("processing.yaml", "requests.yaml"):
        shutil.copy(new / f, repo / "policies" / f)
    git(repo, "commit", "-q", "-am", "edited")
    policies = repo / "policies"

    code, out, err = run("--old", "HEAD~1", str(policies), "--log", str(log), "--format", "json")
    assert code == 1, err
    body = json.loads(out)
    assert body["old"]["source"] == "HEAD~1:policies"
    assert body["old"]["policy_version"] == load_policy_set(old).version  # same content, same version
    assert body["summary"]["test_cases"] == 2 and body["summary"]["transitions"] == {"allow->deny": 4, "obligations": 2}
    assert run("--old", "HEAD", str(policies), "--log", str(log))[0] == 0
    code, _, err = run("--old", "no-such-rev", str(policies))
    assert code == 2 and "unknown git revision 'no-such-rev'" in err
    code, _, err = run("--old", "HEAD", str(tmp_path / "old"))
    assert code == 2 and "not inside a git repository" in err

    # a policy error at the old revision names the file as REV:path:line:col
    text = (policies / "processing.yaml").read_text().replace("effect: forbid", "effect: deny", 1)
    (policies / "processing.yaml").write_text(text)
    git(repo, "commit", "-q", "-am", "broken")
    git(repo, "checkout", "-q", "HEAD~1", "--", "policies/processing.yaml")
    code, _, err = run("--old", "HEAD", str(policies))
    assert code == 2 and "HEAD:policies/processing.yaml:10:13: rule processing.special: effect must be" in err


def test_real_process(setup: tuple[Path, Path, Path]) -> None:
    old, new, log = setup
    exe = Path(sys.executable).parent / "kti-policy"
    res = subprocess.run([str(exe), "diff", str(old), str(new), "--log", str(log), "--format", "json"],
                         capture_output=True, text=True, check=False, timeout=120)
    assert res.returncode == 1, res.stderr
    assert json.loads(res.stdout)["summary"]["changed"] == 6
    res = subprocess.run([str(exe), "diff", str(old), str(old), "--log", str(log)],
                         capture_output=True, text=True, check=False, timeout=120)
    assert res.returncode == 0 and "0 changed" in res.stdout
    res = subprocess.run([str(exe), "diff", str(old)], capture_output=True, text=True, check=False, timeout=120)
    assert res.returncode == 2 and "give OLD_DIR and NEW_DIR" in res.stderr


def test_markdown_leaves_examples_out_rather_than_exceed_a_comment(setup: tuple[Path, Path, Path],
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    from kti_policy.tools import diff

    old, new, log = setup
    report = diff.run_diff(diff.load_folder(old), diff.load_folder(new), [str(log)], examples=5)
    full = diff.render_markdown(report)
    assert "#### `request.access`" in full and "left out" not in full
    monkeypatch.setattr(diff, "MARKDOWN_LIMIT", full.index("#### `default.deny`") + 10)
    cut = diff.render_markdown(report)
    assert "#### `processing.purposes`" in cut and "#### `default.deny`" not in cut
    assert cut.endswith("_Examples of the other 2 rules left out to fit a comment; `--format json` has them all._")


def test_a_line_logged_before_dated_facts_replays_with_defaults(setup: tuple[Path, Path, Path], tmp_path: Path) -> None:
    """A v1 log line (no recipient.country, no dated facts, reasons without law) still replays."""
    old, new, _ = setup
    line = {"decision_id": "dec_old", "time": "2025-06-01T08:00:00+00:00", "decision": "allow",
            "request": {"operation": "disclose", "data_categories": [], "recipient": {"type": "authority"},
                        "legal_basis": {"type": "legal_obligation"}, "subject": {"id": "hs_x"}},
            "facts": {"consents": [], "objections": [], "relationship": "active", "erasure_requested": False,
                      "access_requests": [], "last_access_request_at": None},
            "rules": ["disclosure.authority"], "obligations": [], "policy_version": "v1"}
    log = tmp_path / "v1.jsonl"
    log.write_text(json.dumps(line) + "\n", encoding="utf-8")
    code, out, _ = run(str(old), str(new), "--log", str(log), "--no-cases", "--format", "json")
    summary = json.loads(out)["summary"]
    assert code == 0 and summary["replayed"] == 1 and summary["invalid_in_both"] == 0, summary
    assert summary["log_mismatches"] == 0  # the old line's own decision is what v2 gives


def test_a_change_that_only_adds_citations_changes_nothing(setup: tuple[Path, Path, Path], tmp_path: Path) -> None:
    old, _, log = setup
    cited = folder(tmp_path / "cited")
    edit(cited, "processing.yaml", "  - id: deletion.always\n", "  - id: deletion.always\n    law: [GDPR 17(1)]\n")
    code, out, _ = run(str(old), str(cited), "--log", str(log), "--format", "json")
    assert code == 0, out
    assert json.loads(out)["summary"]["changed"] == 0
