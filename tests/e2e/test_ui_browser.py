"""The playground page in a real browser (Playwright driving Debian's Chromium) against a real
gunicorn on 127.0.0.1 serving a copy of the shipped policy pack.

What the page shows is checked against what the JSON API answers for the same request, so the
tests follow the pack as it evolves. Skipped (with the reason) when /usr/bin/chromium or playwright
is missing. ``KTI_SCREENSHOTS=1`` writes the main views to ``docs/screenshots/*.png``.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from e2e.server import GunicornServer

pytestmark = pytest.mark.timeout(300)

REPO = Path(__file__).resolve().parents[2]
PACK = REPO / "policies"
SCREENSHOTS = REPO / "docs" / "screenshots"
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
    "--no-first-run", "--disable-quic", "--disable-sync",
]
LAPTOP = {"width": 1366, "height": 768}
# what the page sends for: disclose, email, to a third party (the subject id is the form's default)
THIRD_PARTY_EMAIL = {
    "operation": "disclose",
    "data_categories": ["email"],
    "recipient": {"country": "FI", "type": "third_party"},
    "subject": {"id": "playground-subject"},
}


def _sync_playwright() -> Any:
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is missing (apt-get install chromium)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip("playwright is not installed (pip install -e '.[ui]')")
    return sync_playwright


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    sync_playwright = _sync_playwright()
    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        yield b
        b.close()


@pytest.fixture(scope="module")
def pack(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the shipped pack: the service never sees a file change under a running test."""
    if not (PACK / "vocabulary.yaml").exists():
        pytest.fail(f"the shipped policy pack {PACK} is missing")
    target = tmp_path_factory.mktemp("pack") / "policies"
    shutil.copytree(PACK, target)
    return target


@pytest.fixture(scope="module")
def server(browser: Any, pack: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[GunicornServer]:
    with GunicornServer(tmp_path_factory.mktemp("ui"), workers=1, policy_dir=pack) as srv:
        yield srv


@dataclass
class Ui:
    """One browser tab on the playground, collecting script errors and CSP violations."""

    page: Any
    server: GunicornServer
    problems: list[str] = field(default_factory=list)

    def shot(self, name: str) -> None:
        if os.environ.get("KTI_SCREENSHOTS") == "1":
            SCREENSHOTS.mkdir(parents=True, exist_ok=True)
            self.page.evaluate("() => window.scrollTo(0, 0)")  # the view as it opens, answer beside
            self.page.screenshot(path=str(SCREENSHOTS / f"{name}.png"))

    def open(self) -> None:
        self.page.goto(self.server.url + "/ui")

    def wait_for_vocabulary(self) -> None:
        # predicates as functions: the page's CSP forbids the eval() an expression string needs
        self.page.wait_for_function("() => document.querySelector('#f-operation').options.length > 1")

    def api(self, method: str, path: str, lang: str = "en", **kwargs: Any) -> Any:
        resp = self.server.request(method, path, headers={"Accept-Language": lang}, **kwargs)
        assert resp.status_code == 200, resp.text
        return resp.json()

    def fill_third_party_email(self) -> None:
        """Fill the form by its labels (so the labels must be wired to the controls)."""
        vocab = self.api("GET", "/v1/policies")["vocabulary"]
        page = self.page
        page.get_by_label("Operation", exact=True).select_option("disclose")
        page.get_by_label(f"{vocab['data_category']['email']['label']['en']} (email)").check()
        page.get_by_label("Recipient type").select_option("third_party")
        page.get_by_label("Country (ISO code, e.g. FI)").fill("FI")  # required for disclose (RULES v2 D6)

    def assert_no_problems(self, *expected_statuses: int) -> None:
        """No script error or CSP violation; Chromium logs every non-2xx answer as an error, so
        the statuses a test provokes on purpose are named."""
        allowed = tuple(f"the server responded with a status of {s} " for s in expected_statuses)
        assert [p for p in self.problems if not any(a in p for a in allowed)] == []


def _new_ui(browser: Any, server: GunicornServer) -> tuple[Ui, Any]:
    context = browser.new_context(viewport=LAPTOP, locale="en-GB", timezone_id="Europe/Helsinki")
    ui = Ui(context.new_page(), server)
    ui.page.on("console", lambda m: ui.problems.append(m.text) if m.type == "error" else None)
    ui.page.on("pageerror", lambda e: ui.problems.append(str(e)))
    ui.page.set_default_timeout(15_000)
    return ui, context


@pytest.fixture
def ui(browser: Any, server: GunicornServer) -> Iterator[Ui]:
    ui, context = _new_ui(browser, server)
    ui.open()
    ui.wait_for_vocabulary()
    yield ui
    context.close()


def line_of(text: str, needle: str) -> int:
    for number, line in enumerate(text.splitlines(), start=1):
        if needle in line:
            return number
    raise AssertionError(f"{needle!r} not in the text")


def test_deny_with_its_citation_then_finnish(ui: Ui) -> None:
    page = ui.page
    en = ui.api("POST", "/v1/decisions", json=THIRD_PARTY_EMAIL)
    fi = ui.api("POST", "/v1/decisions", lang="fi", json=THIRD_PARTY_EMAIL)
    assert en["decision"] == "deny" and any("§7" in r["source"] for r in en["reasons"])

    ui.fill_third_party_email()
    page.focus("#decide-btn")
    page.keyboard.press("Enter")
    result = page.locator("#decide-result")
    assert result.get_attribute("aria-live") == "polite"
    page.wait_for_selector("#decide-result .verdict.deny")
    assert result.locator(".verdict").inner_text() == "Denied"
    reasons = result.locator(".reasons > li")
    assert reasons.count() == len(en["reasons"])
    for i, reason in enumerate(en["reasons"]):
        item = reasons.nth(i)
        assert item.locator(".message").inner_text() == reason["message"]
        assert item.locator("code").inner_text() == reason["rule"]
        assert item.locator(".citation strong").inner_text() == reason["source"]
    assert "§7" in result.locator(".citation").first.inner_text()
    ui.shot("decide")

    page.get_by_role("button", name="Suomi").click()
    page.wait_for_selector("#decide-result .verdict.deny >> text=Kielletty")
    assert page.locator("html").get_attribute("lang") == "fi"
    assert page.get_by_role("button", name="Suomi").get_attribute("aria-pressed") == "true"
    assert page.locator("#tab-decide").inner_text() == "Kokeile toimenpidettä"
    page.wait_for_function(
        "m => document.querySelector('#decide-result .reasons .message')?.textContent === m",
        arg=fi["reasons"][0]["message"],
    )
    assert [m.strip() for m in result.locator(".reasons .message").all_inner_texts()] == [
        r["message"] for r in fi["reasons"]
    ]
    vocab = ui.api("GET", "/v1/policies")["vocabulary"]
    disclose_fi = vocab["operation"]["disclose"]["label"]["fi"]
    assert page.locator("#f-operation option[value=disclose]").inner_text() == f"{disclose_fi} (disclose)"
    assert page.locator("#f-operation").input_value() == "disclose"  # the form survived the switch
    ui.shot("decide-fi")

    page.get_by_role("button", name="Näytä, mitkä ehdot täyttyivät").click()
    page.wait_for_selector("#decide-result .explanations")
    first_rule = result.locator(".explained h4 code").first.inner_text()
    assert first_rule == fi["reasons"][0]["rule"]
    when = result.locator(".explained .tree").first.text_content() or ""
    assert "täyttyi: operation on disclose" in when  # the marks are spoken words, not only ✓/✗
    ui.assert_no_problems()


def test_access_request_dates_leave_the_first_copy_free(ui: Ui) -> None:
    page = ui.page
    page.get_by_label("Operation", exact=True).select_option("subject_request")
    page.get_by_label("Request type").select_option("access")
    page.get_by_label("Received (Helsinki time)").fill("2026-03-02T10:00")
    page.get_by_label("Made in writing").check()
    page.get_by_label("Signed").check()
    page.get_by_role("button", name="Add a date").click()
    page.get_by_label("Access request date 1", exact=True).fill("2026-01-10T09:00")
    page.get_by_role("button", name="Decide").click()
    page.wait_for_selector("#decide-result .verdict.allow")
    expected = ui.api("POST", "/v1/playground/evaluate", json={
        "files": {},
        "operation": {"operation": "subject_request", "data_categories": [],
                      "request": {"type": "access", "written": True, "signed": True,
                                  "received_at": "2026-03-02T10:00:00+02:00"},
                      "subject": {"id": "playground-subject"}},
        "facts": {"consents": [], "objections": [], "erasure_requested": False,
                  "access_requests": ["2026-01-10T09:00:00+02:00"]},
    })["edited"]["decision"]
    fee = next(o for o in expected["obligations"] if o["type"] == "access_fee")
    due = next(o for o in expected["obligations"] if o["type"] == "respond_by")["due"]
    assert fee["chargeable"] is False  # RULES v2 Q3: an earlier request within 12 months makes no charge
    text = page.locator("#decide-result .obligations").inner_text()
    assert f"Respond by {due}" in text and "Access fee: not chargeable" in text
    assert fee["message"] in text
    ui.assert_no_problems()


def test_erasure_request_shows_each_obligation_its_own_way_with_the_law(ui: Ui) -> None:
    """Every obligation has its own heading (not "Access fee: ..."), with its data categories, and
    each reason shows its law citations (RULES v2 Q1, Q4)."""
    page = ui.page
    page.get_by_label("Operation", exact=True).select_option("subject_request")
    page.get_by_label("Request type").select_option("erasure")
    page.get_by_label("Received (Helsinki time)").fill("2026-03-02T10:00")
    page.get_by_role("button", name="Decide").click()
    page.wait_for_selector("#decide-result .verdict.allow")
    expected = ui.api("POST", "/v1/decisions", json={
        "operation": "subject_request", "data_categories": [],
        "request": {"type": "erasure", "written": False, "signed": False, "received_at": "2026-03-02T10:00:00+02:00"},
        "subject": {"id": "playground-subject"},
    })
    types = [o["type"] for o in expected["obligations"]]
    assert {"respond_by", "verify_identity", "notify_recipients"} <= set(types)
    heads = page.locator("#decide-result .obligation-head").all_inner_texts()
    assert len(heads) == len(types)
    assert "Verify the requester's identity" in heads and "Notify the recipients" in heads
    assert not [h for h in heads if h.startswith("Access fee")]
    rights = next(r for r in expected["reasons"] if r["rule"] == "requests.rights")
    item = page.locator("#decide-result .reasons > li", has=page.locator("code", has_text="requests.rights"))
    assert item.first.locator(".law strong").inner_text() == ", ".join(rights["law"])
    assert "GDPR 12(3)" in rights["law"]

    # the identity-verified field reaches the request: no verify_identity any more
    page.get_by_label("Identity verified").check()
    page.get_by_role("button", name="Decide").click()
    page.wait_for_function("() => !document.querySelector('#decide-result')?.textContent.includes(\"Verify the requester's identity\")")
    ui.shot("decide-obligations")

    # the header links to the notice generated from the loaded pack, in the page's language
    link = page.get_by_role("link", name="Privacy notice generated from the loaded policies")
    assert link.get_attribute("href") == "/v1/notice?lang=en"
    page.get_by_role("button", name="Suomi").click()
    assert page.locator("#notice-link").get_attribute("href") == "/v1/notice?lang=fi"
    page.locator("#notice-link").click()
    page.wait_for_selector("h1")
    assert page.locator("h1").inner_text() == "Tietosuojaseloste"
    assert page.locator("html").get_attribute("lang") == "fi"
    ui.assert_no_problems()


def test_a_delete_by_obligation_names_its_data_categories(ui: Ui) -> None:
    page = ui.page
    vocab = ui.api("GET", "/v1/policies")["vocabulary"]
    page.get_by_label("Operation", exact=True).select_option("delete")
    page.get_by_label(f"{vocab['data_category']['email']['label']['en']} (email)").check()
    page.get_by_label("Customer relationship").select_option("ended")
    page.get_by_role("button", name="Decide").click()
    page.wait_for_selector("#decide-result .verdict")
    expected = ui.api("POST", "/v1/decisions", json={
        "operation": "delete", "data_categories": ["email"],
        "subject": {"id": "playground-subject", "relationship": "ended"},
    })
    delete_by = [o for o in expected["obligations"] if o["type"] == "delete_by"]
    heads = page.locator("#decide-result .obligation-head").all_inner_texts()
    assert [h for h in heads if h.startswith("Delete by")] == [f"Delete by {o['due']}" if o.get("due") else "Delete by" for o in delete_by]
    assert delete_by and delete_by[0]["data_categories"] == ["email"]  # RULES v2 R4
    cats = page.locator("#decide-result .obligations .categories").first.inner_text()
    assert cats == f"Data categories: {vocab['data_category']['email']['label']['en']}"
    ui.assert_no_problems()


def test_policies_with_conditions_citations_and_covering_tests(ui: Ui) -> None:
    page = ui.page
    coverage = ui.api("GET", "/v1/playground/coverage")
    policies = ui.api("GET", "/v1/playground/policies")
    rule = next(r for p in policies["policies"] for r in p["rules"] if r["id"] == "disclosure.outside-parties")

    page.focus("#tab-decide")
    page.keyboard.press("ArrowRight")  # the tabs follow the WAI-ARIA pattern
    assert page.evaluate("document.activeElement.id") == "tab-policies"
    assert page.locator("#tab-policies").get_attribute("aria-selected") == "true"
    assert page.locator("#panel-policies").is_visible() and not page.locator("#panel-decide").is_visible()

    card = page.locator("li.rule", has=page.locator("h3 code", has_text="disclosure.outside-parties"))
    assert card.locator(".effect").inner_text().lower() == "forbids"
    assert card.locator(".message").inner_text() == rule["reason"]
    assert card.locator(".meta strong").first.inner_text() == rule["source"] and "§7" in rule["source"]
    assert card.locator("pre.cond").first.inner_text() == rule["when"]
    assert "operation is disclose" in rule["when"]
    covering = coverage["rules"]["disclosure.outside-parties"]
    assert covering, "the shipped tests cover the disclosure forbid"
    summary = card.locator("summary")
    assert summary.inner_text() == f"Covered by ({len(covering)})"
    summary.focus()
    page.keyboard.press("Enter")
    assert card.locator("details li").first.inner_text() == f"{covering[0]['suite']}: {covering[0]['name']}"

    total = sum(len(p["rules"]) for p in policies["policies"])
    assert page.locator("#rule-count").inner_text() == f"{total} of {total} rules shown"
    page.get_by_label("Only rules no test covers").check()
    assert page.locator("#rule-count").inner_text() == f"{len(coverage['uncovered'])} of {total} rules shown"
    page.get_by_label("Only rules no test covers").uncheck()
    page.get_by_label("Filter rules").fill("disclosure.objected")
    assert page.locator("li.rule").count() == 1
    page.get_by_label("Filter rules").fill("")
    page.locator("#tab-policies").focus()
    ui.shot("policies")
    ui.assert_no_problems()


def _open_editor_with(ui: Ui, name: str, pack: Path) -> str:
    page = ui.page
    page.get_by_role("tab", name="Edit and test").click()
    page.get_by_label("Start from a loaded file").select_option(name)
    page.get_by_role("button", name="Copy into the editor").click()
    text = (pack / name).read_text(encoding="utf-8")
    assert page.locator("#editor").input_value() == text
    assert page.locator("#edit-name").input_value() == name
    return text


def test_a_broken_pasted_policy_shows_its_line(ui: Ui, pack: Path) -> None:
    page = ui.page
    text = _open_editor_with(ui, "disclosure.yaml", pack)
    broken = text.replace("effect: forbid", "effect: perhaps", 1)
    line = line_of(broken, "effect: perhaps")
    page.fill("#editor", broken)
    page.get_by_role("button", name="Check and decide").click()
    page.wait_for_selector("#edit-result .errors li")
    item = page.locator("#edit-result .errors li").first
    assert item.locator(".where").inner_text().startswith(f"disclosure.yaml:{line}:")
    assert "effect must be permit or forbid" in item.inner_text()
    item.get_by_role("button", name=f"Go to line {line}").click()
    assert page.evaluate("document.activeElement.id") == "editor"
    col = int(item.locator(".where").inner_text().split(":")[2])
    assert page.locator("#cursor-pos").inner_text() == f"Line {line}, column {col}"
    ui.shot("edit-error")
    # the loaded set is untouched: the service still denies
    assert ui.api("POST", "/v1/decisions", json=THIRD_PARTY_EMAIL)["decision"] == "deny"
    ui.assert_no_problems(422)


def test_shipped_tests_against_an_edited_set(ui: Ui, pack: Path) -> None:
    page = ui.page
    text = _open_editor_with(ui, "disclosure.yaml", pack)
    page.get_by_role("button", name="Run the shipped policy tests").click()
    loaded = ui.api("POST", "/v1/playground/test", json={})
    page.wait_for_selector("#tests-summary")
    assert page.locator("#tests-summary").inner_text().endswith(loaded["summary"])

    lines = text.splitlines(keepends=True)
    first_forbid = next(i for i, x in enumerate(lines) if x.strip() == "effect: forbid")
    lines[first_forbid] = lines[first_forbid].replace("forbid", "permit")
    edited = "".join(lines)
    expected = ui.api("POST", "/v1/playground/test", json={"files": {"disclosure.yaml": edited}})
    assert expected["failed"] > loaded["failed"] and expected["changed"]

    page.fill("#editor", edited)
    page.get_by_role("button", name="Run the shipped policy tests").click()
    page.wait_for_function(
        "s => document.querySelector('#tests-summary')?.textContent.endsWith(s)", arg=expected["summary"]
    )
    changed = page.locator("#edit-result ul").first.all_inner_texts()[0]
    for name in expected["changed"]:
        assert name in changed
    failing_rows = page.locator("table.tests tr.fail")
    assert failing_rows.count() == expected["failed"]
    assert "with the loaded set: passed" in failing_rows.first.inner_text()
    ui.shot("edit-tests")
    ui.assert_no_problems()


def test_auth_on_asks_for_a_key_and_keeps_it_for_the_tab(browser: Any, pack: Path,
                                                         tmp_path_factory: pytest.TempPathFactory) -> None:
    workdir = tmp_path_factory.mktemp("ui-auth")
    env = {"KTI_API_KEYS": "pq-key:query,pi-key:ingest"}
    with GunicornServer(workdir, env, workers=1, policy_dir=pack) as srv:
        ui, context = _new_ui(browser, srv)
        page = ui.page
        ui.open()
        status = page.locator("#auth-status")
        page.wait_for_selector("#policy-list .error", state="attached")  # the 401 answer is shown, not swallowed
        assert status.inner_text().startswith("This service has authentication on and no API key was given.")
        assert "warn" in (page.locator("#auth").get_attribute("class") or "")
        ui.shot("auth")

        page.get_by_label("API key (role query)").fill("pi-key")
        page.keyboard.press("Enter")
        page.wait_for_function("() => document.querySelector('#auth-status').textContent.includes('lacks the role query')")

        page.get_by_label("API key (role query)").fill("pq-key")
        page.get_by_role("button", name="Use this key").click()
        version = srv.get("/v1/policies", key="pq-key").json()["policy_version"]
        page.wait_for_function("v => document.querySelector('#policy-version').textContent === v", arg=version)
        assert status.inner_text().startswith("Authentication is on; using the API key")
        page.get_by_label("Operation", exact=True).select_option("disclose")
        page.get_by_label("Recipient type").select_option("third_party")
        page.get_by_label("Country (ISO code, e.g. FI)").fill("FI")
        page.get_by_role("button", name="Decide").click()
        page.wait_for_selector("#decide-result .verdict.deny")

        page.reload()  # same tab: the key is still there
        page.wait_for_function("v => document.querySelector('#policy-version').textContent === v", arg=version)
        other = context.browser.new_context(viewport=LAPTOP)
        try:
            second = other.new_page()
            second.goto(srv.url + "/ui")
            second.wait_for_selector("#policy-list .error", state="attached")
            assert "no API key was given" in second.locator("#auth-status").inner_text()
        finally:
            other.close()
        page.get_by_role("button", name="Forget the key").click()
        assert page.evaluate("sessionStorage.length") == 0
        ui.assert_no_problems(401, 403)
        context.close()
