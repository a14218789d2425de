"""The policy playground's endpoints (``kti_policy.api.ui``) through Flask's test client.

An edited set must never leak into the service: the loaded set, the files on disk, the decision log
and the durable-rules host stay as they were. Check errors carry file names relative to the policy
folder with line and column, every bad request is the JSON error of CONTRACT section 6, and the
shipped policy tests run against the edited set.
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path
from typing import Any

import pytest

from kti_policy.api.app import create_app
from kti_policy.decide import engine

CLEAN = Path(__file__).parent.parent / "data" / "clean"

TESTS_YAML = """\
# yaml-language-server: $schema=../../schemas/policy-test.schema.json
suite: disclosure
defaults: {at: "2026-03-02T10:00:00+02:00"}
cases:
  - name: an authority under a legal obligation may receive the email
    input:
      operation: disclose
      data_categories: [email]
      recipient: {type: authority, country: FI}
      legal_basis: {type: legal_obligation}
      subject: {id: c-1}
    expect: {decision: allow, rules: [disclosure.authority]}
  - name: a third party may not receive the email
    input:
      operation: disclose
      data_categories: [email]
      recipient: {country: FI, type: third_party}
      subject: {id: c-1}
    expect: {decision: deny, rules: [disclosure.other]}
  - name: consent lets a third party receive the email
    input:
      operation: disclose
      data_categories: [email]
      recipient: {country: FI, type: third_party}
      subject: {id: c-1}
    facts: {consents: [disclosure]}
    expect: {decision: allow, rules: [disclosure.consent]}
"""

THIRD_PARTY = {
    "operation": "disclose",
    "data_categories": ["email"],
    "recipient": {"country": "FI", "type": "third_party"},
    "subject": {"id": "customer-1"},
}
ACCESS = {
    "operation": "subject_request",
    "request": {"type": "access", "received_at": "2026-03-02T10:00:00+02:00",
                "written": True, "signed": True},
    "subject": {"id": "customer-1"},
}


@pytest.fixture
def policy_dir(tmp_path: Path) -> Path:
    target = tmp_path / "policies"
    shutil.copytree(CLEAN, target)
    (target / "tests").mkdir()
    (target / "tests" / "disclosure_test.yaml").write_text(TESTS_YAML, encoding="utf-8")
    return target


@pytest.fixture
def config(app_config: dict[str, Any], policy_dir: Path) -> dict[str, Any]:
    return {**app_config, "KTI_POLICY_DIR": str(policy_dir)}


@pytest.fixture
def client(config: dict[str, Any]) -> Any:
    app = create_app(config)
    yield app.test_client()
    app.extensions["kti"].close()


def assert_error(resp: Any, status: int, code: str) -> dict[str, Any]:
    assert resp.status_code == status, resp.get_data(as_text=True)
    assert resp.mimetype == "application/json"
    body = resp.get_json()
    assert set(body) == {"error", "message", "details"} and body["error"] == code, body
    assert "Traceback" not in resp.get_data(as_text=True)
    return body


def disclosure_text(policy_dir: Path) -> str:
    return (policy_dir / "disclosure.yaml").read_text(encoding="utf-8")


def line_of(text: str, needle: str) -> int:
    """1-based number of the first line holding ``needle``."""
    for number, line in enumerate(text.splitlines(), start=1):
        if needle in line:
            return number
    raise AssertionError(f"{needle!r} not in the text")


def evaluate(client: Any, files: dict[str, str], operation: dict[str, Any],
             facts: dict[str, Any] | None = None, lang: str = "en") -> Any:
    body: dict[str, Any] = {"files": files, "operation": operation}
    if facts is not None:
        body["facts"] = facts
    return client.post("/v1/playground/evaluate", json=body, headers={"Accept-Language": lang})


# --- the page ----------------------------------------------------------------------------------


def test_page_and_assets_are_served_without_a_cdn(client: Any) -> None:
    page = client.get("/ui")
    assert page.status_code == 200 and page.mimetype == "text/html"
    html = page.get_data(as_text=True)
    assert 'data-auth="off"' in html
    assert "/ui/assets/playground.js" in html and "/ui/assets/playground.css" in html
    assert "http://" not in html.replace('href="/openapi.json"', "") and "https://" not in html
    csp = page.headers["Content-Security-Policy"]
    assert "script-src 'self'" in csp and "default-src 'none'" in csp
    js = client.get("/ui/assets/playground.js")
    assert js.status_code == 200 and "javascript" in js.mimetype
    script = js.get_data(as_text=True)
    for sink in (".innerHTML", ".outerHTML", "insertAdjacentHTML", "document.write", "eval("):
        assert sink not in script  # server text goes into the page as text nodes only
    assert client.get("/ui/assets/playground.css").mimetype == "text/css"
    assert_error(client.get("/ui/assets/app.py"), 404, "not_found")
    assert_error(client.get("/ui/assets/..%2fapi%2fui.py"), 404, "not_found")


def test_page_says_when_auth_is_on_and_endpoints_need_a_query_key(config: dict[str, Any]) -> None:
    app = create_app({**config, "KTI_API_KEYS": "q1:query,i1:ingest"})
    try:
        c = app.test_client()
        page = c.get("/ui")  # the page holds no data: no key needed
        assert page.status_code == 200 and 'data-auth="on"' in page.get_data(as_text=True)
        assert c.get("/ui/assets/playground.js").status_code == 200
        ok_body = {"files": {}, "operation": THIRD_PARTY}
        for method, path, body in (
            ("GET", "/v1/playground/policies", None),
            ("GET", "/v1/playground/coverage", None),
            ("POST", "/v1/playground/evaluate", ok_body),
            ("POST", "/v1/playground/test", {"files": {}}),
        ):
            assert_error(c.open(path, method=method, json=body), 401, "unauthorized")
            denied = c.open(path, method=method, json=body, headers={"Authorization": "Bearer i1"})
            assert assert_error(denied, 403, "forbidden")["details"]["required_role"] == "query"
            good = c.open(path, method=method, json=body, headers={"Authorization": "Bearer q1"})
            assert good.status_code == 200, good.get_data(as_text=True)
    finally:
        app.extensions["kti"].close()


# --- browsing the loaded policies ----------------------------------------------------------------


def test_policies_in_plain_words_with_coverage_and_files(client: Any, policy_dir: Path) -> None:
    en = client.get("/v1/playground/policies").get_json()
    fi = client.get("/v1/playground/policies", headers={"Accept-Language": "fi"}).get_json()
    assert en["lang"] == "en" and fi["lang"] == "fi"
    assert en["policy_version"] == client.get("/v1/policies").get_json()["policy_version"]

    def rule(body: dict[str, Any], rid: str) -> dict[str, Any]:
        return next(r for p in body["policies"] for r in p["rules"] if r["id"] == rid)

    other_en, other_fi = rule(en, "disclosure.other"), rule(fi, "disclosure.other")
    assert other_en["effect"] == "forbid" and other_en["source"] == "§7"
    assert other_en["when"] == "operation is disclose"
    assert other_fi["when"] == "operation on disclose"
    assert other_en["unless"].startswith("any of:\n") and "subject.consents includes disclosure" in other_en["unless"]
    assert other_en["reason"] == "Any other disclosure is forbidden."
    assert other_fi["reason"] == "Muu luovutus on kielletty."
    assert other_en["file"] == "disclosure.yaml"
    assert other_en["line"] == line_of(disclosure_text(policy_dir), "id: disclosure.other")
    assert [c["name"] for c in other_en["covered_by"]] == ["a third party may not receive the email"]
    assert rule(en, "request.inquiry")["obligations"][0]["type"] == "respond_by"
    assert rule(en, "cookie.none")["covered_by"] == [] and "cookie.none" in en["uncovered"]
    assert "disclosure.other" not in en["uncovered"]
    assert en["tests"] == {"cases": 3, "passed": 3, "failed": 0, "errors": []}
    assert en["vocabulary"]["recipient_type"]["third_party"]["label"]["fi"] == "Kolmas osapuoli"
    assert set(en["files"]) == {"vocabulary.yaml", "disclosure.yaml", "processing.yaml", "requests.yaml"}
    assert en["files"]["disclosure.yaml"] == disclosure_text(policy_dir)
    assert en["folder_matches_loaded"] is True

    # a file changed on disk but not reloaded: the page must be able to say so
    (policy_dir / "disclosure.yaml").write_text(disclosure_text(policy_dir) + "\n# edited\n", encoding="utf-8")
    assert client.get("/v1/playground/policies").get_json()["folder_matches_loaded"] is False


def test_coverage_maps_every_rule_to_the_cases_naming_it(client: Any) -> None:
    body = client.get("/v1/playground/coverage").get_json()
    assert body["cases"] == 3
    rules = body["rules"]
    assert len(rules) == 15
    assert [c["name"] for c in rules["disclosure.authority"]] == [
        "an authority under a legal obligation may receive the email"
    ]
    assert [c["name"] for c in rules["disclosure.consent"]] == ["consent lets a third party receive the email"]
    assert rules["disclosure.other"][0] == {
        "suite": "disclosure", "name": "a third party may not receive the email", "passed": True,
        "file": "tests/disclosure_test.yaml",
    }
    assert set(body["uncovered"]) == set(rules) - {"disclosure.authority", "disclosure.consent", "disclosure.other"}


def test_coverage_follows_the_test_files_on_disk(client: Any, policy_dir: Path) -> None:
    assert "deletion.always" in client.get("/v1/playground/coverage").get_json()["uncovered"]
    time.sleep(0.01)  # a new mtime, even on coarse file systems
    (policy_dir / "tests" / "deletion_test.yaml").write_text(
        "suite: deletion\ncases:\n  - name: deleting is always allowed\n"
        "    input: {operation: delete, subject: {id: c-2}}\n"
        "    expect: {decision: allow, rules: [deletion.always]}\n",
        encoding="utf-8",
    )
    body = client.get("/v1/playground/coverage").get_json()
    assert body["cases"] == 4 and "deletion.always" not in body["uncovered"]


# --- evaluate ------------------------------------------------------------------------------------


def test_evaluate_without_files_is_the_loaded_set(client: Any) -> None:
    resp = evaluate(client, {}, THIRD_PARTY)
    assert resp.status_code == 200, resp.get_data(as_text=True)
    body = resp.get_json()
    assert body["same"] is True and body["files"] == []
    d = body["edited"]["decision"]
    assert d["decision"] == "deny" and d["allowed"] is False
    assert d["reasons"] == [{"rule": "disclosure.other", "effect": "forbid",
                             "message": "Any other disclosure is forbidden.", "source": "§7", "law": []}]
    assert body["loaded"]["decision"]["reasons"] == d["reasons"]
    assert body["edited"]["policy_version"] == client.get("/v1/policies").get_json()["policy_version"]
    (explained,) = body["edited"]["explanations"]
    assert explained["rule"] == "disclosure.other" and explained["matched"] is True
    assert explained["when"] == {"text": "operation is disclose", "held": True}
    assert explained["unless"]["held"] is False

    fi = evaluate(client, {}, THIRD_PARTY, lang="fi").get_json()
    assert fi["edited"]["decision"]["reasons"][0]["message"] == "Muu luovutus on kielletty."
    assert fi["edited"]["explanations"][0]["when"]["text"] == "operation on disclose"


def test_facts_are_exactly_those_given(client: Any) -> None:
    allowed = evaluate(client, {}, THIRD_PARTY, {"consents": ["disclosure"]}).get_json()
    assert allowed["edited"]["decision"]["decision"] == "allow"
    assert [r["rule"] for r in allowed["edited"]["decision"]["reasons"]] == ["disclosure.consent"]
    objected = evaluate(client, {}, THIRD_PARTY, {"consents": ["disclosure"], "objections": ["disclosure"]})
    # consent lifts disclosure.other, but the objection forbids whatever consent was given
    assert [r["rule"] for r in objected.get_json()["edited"]["decision"]["reasons"]] == ["disclosure.objected"]
    ended = evaluate(client, {}, {"operation": "retain", "subject": {"id": "c"}},
                     {"relationship": "ended", "erasure_requested": False}).get_json()
    assert [r["rule"] for r in ended["edited"]["decision"]["reasons"]] == ["deletion.after_end"]
    active = evaluate(client, {}, {"operation": "retain", "subject": {"id": "c"}}, {"relationship": "active"})
    assert active.get_json()["edited"]["decision"]["decision"] == "allow"


def test_access_request_dates_make_the_fee_chargeable(client: Any) -> None:
    first = evaluate(client, {}, ACCESS, {}).get_json()["edited"]["decision"]
    again = evaluate(client, {}, ACCESS, {"access_requests": ["2026-01-10T09:00:00+02:00"]}).get_json()
    again_d = again["edited"]["decision"]
    long_ago = evaluate(client, {}, ACCESS, {"access_requests": ["2024-01-10T09:00:00+02:00"]})
    fee = {o["type"]: o for o in first["obligations"]}
    assert fee["respond_by"]["due"] == "2026-04-02" and fee["access_fee"]["chargeable"] is False
    assert {o["type"]: o for o in again_d["obligations"]}["access_fee"]["chargeable"] is True
    ago = {o["type"]: o for o in long_ago.get_json()["edited"]["decision"]["obligations"]}
    assert ago["access_fee"]["chargeable"] is False


def test_edited_set_decides_without_touching_the_loaded_one(client: Any, policy_dir: Path, config: dict[str, Any]) -> None:
    before_disk = disclosure_text(policy_dir)
    loaded_version = client.get("/v1/policies").get_json()["policy_version"]
    registered = set(engine._HANDLES)
    edited = before_disk.replace("reason: {fi: Muu luovutus on kielletty., en: Any other disclosure is forbidden.}",
                                 "reason: {fi: Muu luovutus on sallittu., en: Any other disclosure is fine.}")
    edited = edited.replace("effect: forbid\n    when: {operation: disclose}", "effect: permit\n    when: {operation: disclose}")
    assert edited.count("effect: permit") == 3
    resp = evaluate(client, {"disclosure.yaml": edited}, THIRD_PARTY)
    assert resp.status_code == 200, resp.get_data(as_text=True)
    body = resp.get_json()
    assert body["same"] is False and body["files"] == ["disclosure.yaml"]
    assert body["edited"]["decision"]["decision"] == "allow"
    assert body["edited"]["decision"]["reasons"][0]["message"] == "Any other disclosure is fine."
    assert body["edited"]["policy_version"] != loaded_version
    assert body["loaded"]["decision"]["decision"] == "deny"
    # nothing leaked: the service, the folder, the log and the durable-rules host are unchanged
    assert client.get("/v1/policies").get_json()["policy_version"] == loaded_version
    assert client.post("/v1/decisions", json=THIRD_PARTY).get_json()["decision"] == "deny"
    assert disclosure_text(policy_dir) == before_disk
    assert set(engine._HANDLES) == registered
    log_lines = Path(config["KTI_DECISION_LOG"]).read_text(encoding="utf-8").splitlines()
    assert len(log_lines) == 1  # only the POST /v1/decisions above


def test_files_can_be_added_and_dropped(client: Any) -> None:
    inquiry = {"operation": "subject_request", "subject": {"id": "c"},
               "request": {"type": "inquiry", "received_at": "2026-03-02T10:00:00+02:00"}}
    dropped = evaluate(client, {"requests.yaml": ""}, inquiry).get_json()
    assert [r["rule"] for r in dropped["edited"]["decision"]["reasons"]] == ["default.deny"]
    assert dropped["loaded"]["decision"]["decision"] == "allow"
    extra = (
        "policy: extra\ntitle: {fi: Lisä, en: Extra}\nsource: \"§7\"\nrules:\n"
        "  - id: extra.third_party\n    effect: forbid\n"
        "    when: {operation: disclose, recipient.type: third_party}\n"
        "    reason: {fi: Ei kolmansille., en: Not to third parties.}\n"
    )
    added = evaluate(client, {"extra.yaml": extra}, THIRD_PARTY, {"consents": ["disclosure"]}).get_json()
    assert [r["rule"] for r in added["edited"]["decision"]["reasons"]] == ["extra.third_party"]
    assert added["loaded"]["decision"]["decision"] == "allow"


def test_check_errors_name_the_file_line_and_column(client: Any, policy_dir: Path) -> None:
    text = disclosure_text(policy_dir)
    broken = text.replace("effect: forbid", "effect: perhaps", 1)
    err = assert_error(evaluate(client, {"disclosure.yaml": broken}, THIRD_PARTY), 422, "invalid_policies")
    (e,) = err["details"]["errors"]
    line = line_of(broken, "effect: perhaps")
    assert (e["file"], e["line"], e["col"], e["code"]) == ("disclosure.yaml", line, 13, "invalid_value")
    assert err["details"]["messages"] == [f"disclosure.yaml:{line}:13: {e['message']} [invalid_value]"]

    syntax = text.replace("rules:\n", "rules:\n  - id: [unclosed\n", 1)
    err = assert_error(evaluate(client, {"disclosure.yaml": syntax}, THIRD_PARTY), 422, "invalid_policies")
    (e,) = err["details"]["errors"]
    assert e["file"] == "disclosure.yaml" and e["code"] == "policy_parse_error"
    assert e["line"] >= line_of(syntax, "[unclosed")

    dupe = ("policy: dupe\ntitle: {fi: D, en: D}\nsource: \"§7\"\nrules:\n  - id: disclosure.other\n"
            "    effect: forbid\n    when: {operation: delete}\n    reason: {fi: x, en: x}\n")
    err = assert_error(evaluate(client, {"zz_dupe.yaml": dupe}, THIRD_PARTY), 422, "invalid_policies")
    (e,) = err["details"]["errors"]
    assert e["code"] == "duplicate_rule_id" and e["file"] == "zz_dupe.yaml" and e["line"] == 5
    first = line_of(disclosure_text(policy_dir), "id: disclosure.other")
    assert f"already used at disclosure.yaml:{first}:" in e["message"]
    assert str(policy_dir) not in e["message"]

    vocab_typo = evaluate(client, {"disclosure.yaml": text.replace("recipient.type: authority", "recipient.type: authorty", 1)}, THIRD_PARTY)
    (e,) = assert_error(vocab_typo, 422, "invalid_policies")["details"]["errors"]
    assert e["code"] == "unknown_vocabulary_id" and "did you mean 'authority'" in e["message"]
    assert e["line"] == line_of(text, "recipient.type: authority")


def test_yaml_alias_bombs_and_deep_nesting_are_refused(client: Any) -> None:
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    for i in range(1, 9):
        lines.append(f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]")
    started = time.perf_counter()
    err = assert_error(evaluate(client, {"bomb.yaml": "\n".join(lines) + "\n"}, THIRD_PARTY), 422, "invalid_policies")
    assert time.perf_counter() - started < 5
    (e,) = err["details"]["errors"]
    assert e["code"] == "too_large" and e["file"] == "bomb.yaml" and e["line"] >= 1
    for deep in ("x: " + "[" * 200 + "]" * 200 + "\n", "- " * 3000 + "x\n"):  # flow and block style
        (e,) = assert_error(evaluate(client, {"deep.yaml": deep}, THIRD_PARTY), 422, "invalid_policies")["details"]["errors"]
        assert e["code"] == "too_large" and e["file"] == "deep.yaml"
    # anchors within the limits are fine: the loader reports the file's real problems instead
    ok_alias = "policy: a\ntitle: &t {fi: A, en: A}\nsource: \"§7\"\nrules:\n  - id: a.b\n    effect: permit\n" \
               "    when: {operation: delete}\n    reason: *t\n"
    assert evaluate(client, {"alias.yaml": ok_alias}, {"operation": "delete", "subject": {"id": "c"}}).status_code == 200


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"files": {}}, "operation"),
        ({"files": {}, "operation": "disclose"}, "operation"),
        ({"files": {"../disclosure.yaml": "x"}, "operation": THIRD_PARTY}, "files"),
        ({"files": {"sub/disclosure.yaml": "x"}, "operation": THIRD_PARTY}, "files"),
        ({"files": {".hidden.yaml": "x"}, "operation": THIRD_PARTY}, "files"),
        ({"files": {"notes.txt": "x"}, "operation": THIRD_PARTY}, "files"),
        ({"files": {"a.yaml": 5}, "operation": THIRD_PARTY}, "files"),
        ({"files": ["a.yaml"], "operation": THIRD_PARTY}, "files"),
        ({"files": {f"f{i}.yaml": "x" for i in range(65)}, "operation": THIRD_PARTY}, "files"),
        ({"files": {"a.yaml": "x" * (256 * 1024 + 1)}, "operation": THIRD_PARTY}, "files"),
        ({"files": {f"f{i}.yaml": "x" * 200_000 for i in range(6)}, "operation": THIRD_PARTY}, "files"),
        ({"operation": THIRD_PARTY, "facts": {"relationship": 3}}, "facts"),
        ({"operation": THIRD_PARTY, "facts": {"erasure_requested": "yes"}}, "facts"),
        ({"operation": THIRD_PARTY, "facts": {"access_requests": ["yesterday"]}}, "facts"),
        ({"operation": THIRD_PARTY, "facts": {"mood": "good"}}, "facts"),
        ({"operation": THIRD_PARTY, "policy": "x"}, "policy"),
    ],
)
def test_bad_evaluate_bodies_name_the_field(client: Any, body: dict[str, Any], field: str) -> None:
    err = assert_error(client.post("/v1/playground/evaluate", json=body), 400, "bad_request")
    assert field in err["details"]["errors"], err


def test_operation_and_facts_are_checked_against_the_edited_vocabulary(client: Any, policy_dir: Path) -> None:
    bad_op = evaluate(client, {}, {**THIRD_PARTY, "recipient": {"country": "FI", "type": "bank"}})
    err = assert_error(bad_op, 400, "unknown_vocabulary_id")
    assert err["details"]["field"] == "operation.recipient.type" and "third_party" in err["details"]["known"]
    missing = assert_error(evaluate(client, {}, {"operation": "disclose", "subject": {"id": "c"}}), 400, "bad_request")
    assert "operation.recipient" in missing["details"]["errors"]
    bad_fact = assert_error(evaluate(client, {}, THIRD_PARTY, {"consents": ["marketing"]}), 400, "unknown_vocabulary_id")
    assert bad_fact["details"]["field"] == "facts.consents[0]"
    # a recipient type only the edited vocabulary knows: the edited set decides, the loaded one cannot
    vocab = (policy_dir / "vocabulary.yaml").read_text(encoding="utf-8").replace(
        "    third_party: {fi: Kolmas osapuoli, en: Third party}\n",
        "    third_party: {fi: Kolmas osapuoli, en: Third party}\n    bank: {fi: Pankki, en: Bank}\n",
    )
    body = evaluate(client, {"vocabulary.yaml": vocab}, {**THIRD_PARTY, "recipient": {"country": "FI", "type": "bank"}}).get_json()
    assert body["edited"]["decision"]["decision"] == "deny" and body["same"] is False
    assert body["loaded"]["decision"] is None
    assert body["loaded"]["error"]["error"] == "unknown_vocabulary_id"


def test_request_envelope_errors(client: Any, config: dict[str, Any]) -> None:
    raw = client.post("/v1/playground/evaluate", data=b"files=1")
    assert_error(raw, 415, "unsupported_media_type")
    assert_error(client.post("/v1/playground/evaluate", data=b"{nope", content_type="application/json"), 400, "bad_request")
    assert_error(client.post("/v1/playground/test", json=[1]), 400, "bad_request")
    assert_error(client.get("/v1/playground/evaluate"), 405, "method_not_allowed")
    small = create_app({**config, "KTI_MAX_BODY_BYTES": 4096})
    try:
        big = {"files": {"a.yaml": "x" * 5000}, "operation": THIRD_PARTY}
        assert_error(small.test_client().post("/v1/playground/evaluate", json=big), 413, "payload_too_large")
    finally:
        small.extensions["kti"].close()


# --- policy tests against the edited set ---------------------------------------------------------


def test_shipped_tests_against_the_loaded_set(client: Any) -> None:
    body = client.post("/v1/playground/test", json={}).get_json()
    assert (body["passed"], body["failed"], body["ok"], body["changed"]) == (3, 0, True, [])
    assert body["summary"] == "3 passed, 0 failed"
    assert body["policy_version"] == body["loaded_version"]
    assert all(r["passed_with_loaded"] is True for r in body["results"])
    third = next(r for r in body["results"] if r["name"] == "a third party may not receive the email")
    assert third == {
        "suite": "disclosure", "name": "a third party may not receive the email",
        "file": "tests/disclosure_test.yaml", "line": line_of(TESTS_YAML, "a third party may not"),
        "passed": True, "failures": [], "decision": "deny", "rules": ["disclosure.other"],
        "passed_with_loaded": True,
    }


def test_shipped_tests_against_an_edited_set(client: Any, policy_dir: Path) -> None:
    edited = disclosure_text(policy_dir).replace(
        "effect: forbid\n    when: {operation: disclose}", "effect: permit\n    when: {operation: disclose}"
    )
    body = client.post("/v1/playground/test", json={"files": {"disclosure.yaml": edited}}).get_json()
    assert (body["passed"], body["failed"], body["ok"]) == (2, 1, False)
    assert body["changed"] == ["disclosure: a third party may not receive the email"]
    (failed,) = [r for r in body["results"] if not r["passed"]]
    assert failed["passed_with_loaded"] is True and failed["decision"] == "allow"
    assert failed["failures"][0].startswith("decision: expected deny, got allow")
    assert body["policy_version"] != body["loaded_version"]
    assert [c["name"] for c in body["coverage"]["disclosure.other"]] == ["a third party may not receive the email"]
    # the next request sees the loaded set again
    assert client.post("/v1/playground/test", json={}).get_json()["failed"] == 0


def test_shipped_tests_with_broken_files_and_renamed_rules(client: Any, policy_dir: Path) -> None:
    broken = disclosure_text(policy_dir).replace("rules:", "rulez:", 1)
    err = assert_error(client.post("/v1/playground/test", json={"files": {"disclosure.yaml": broken}}), 422, "invalid_policies")
    assert {e["file"] for e in err["details"]["errors"]} == {"disclosure.yaml"}
    assert any(e["code"] == "unknown_key" and e["line"] == line_of(broken, "rulez:") for e in err["details"]["errors"])
    renamed = disclosure_text(policy_dir).replace("id: disclosure.other", "id: disclosure.rest")
    body = client.post("/v1/playground/test", json={"files": {"disclosure.yaml": renamed}}).get_json()
    assert body["ok"] is False
    (e,) = body["errors"]
    assert e["code"] == "unknown_rule" and e["file"] == "tests/disclosure_test.yaml"
    assert "disclosure.other" in e["message"]


# --- OpenAPI -------------------------------------------------------------------------------------


def test_openapi_documents_the_playground(client: Any) -> None:
    spec = client.get("/openapi.json").get_json()
    paths = spec["paths"]
    for path in ("/v1/playground/evaluate", "/v1/playground/test"):
        op = paths[path]["post"]
        ref = op["requestBody"]["content"]["application/json"]["schema"]["$ref"]
        assert ref.startswith("#/components/schemas/Playground")
        assert {"200", "400", "401", "403", "413", "415", "422"} <= set(op["responses"])
        assert "query" in op["description"] and op["security"]
    evaluate_schema = spec["components"]["schemas"]["PlaygroundEvaluateRequest"]
    assert evaluate_schema["required"] == ["operation"]
    operation = evaluate_schema["properties"]["operation"]
    assert {"$ref": "#/components/schemas/Operation"} in [operation, *operation.get("allOf", [])]
    assert evaluate_schema["properties"]["files"]["maxProperties"] == 64
    for path in ("/v1/playground/policies", "/v1/playground/coverage"):
        assert paths[path]["get"]["security"] and "401" in paths[path]["get"]["responses"]
    assert paths["/ui"]["get"]["security"] == []
    assert "text/html" in paths["/ui"]["get"]["responses"]["200"]["content"]
    validator = pytest.importorskip("openapi_spec_validator")
    validator.validate(spec)


_TIMED_FILE = """\
policy: timed
title: {fi: Aika, en: Time}
source: "§8"
rules:
  - id: timed.collect-in-the-first-month
    effect: permit
    law: [GDPR 6(1)(b)]
    when: {operation: collect, subject.relationship_started_at: {within: 1 month}}
    reason: {fi: Ensimmäisen kuukauden ajan., en: In the first month of the relationship.}
"""


@pytest.mark.parametrize(("at", "rules"), [
    ("2026-02-28T22:00:00+02:00", ["timed.collect-in-the-first-month"]),  # the period's last day
    ("2026-03-01T01:00:00+02:00", ["default.deny"]),  # the day after
])
def test_dated_facts_and_at_in_the_playground(client: Any, at: str, rules: list[str]) -> None:
    op = {"operation": "collect", "source": "web_scraping", "subject": {"id": "c"}, "at": at}
    body = evaluate(client, {"timed.yaml": _TIMED_FILE}, op,
                    {"relationship": "active", "relationship_started_at": "2026-01-31T10:00:00+02:00"}).get_json()
    side = body["edited"]
    assert [r["rule"] for r in side["decision"]["reasons"]] == rules
    if rules[0].startswith("timed"):
        assert side["decision"]["reasons"][0]["law"] == ["GDPR 6(1)(b)"]
        assert "1 month" in json.dumps(side["explanations"])
