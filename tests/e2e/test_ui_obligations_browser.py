"""The playground's "Requests and deadlines" tab in Chromium (issue 12), like test_ui_browser.py:
a real gunicorn, cases opened through ``POST /v1/requests``, and the tab checked against what
``GET /v1/obligations`` answers. ``KTI_SCREENSHOTS=1`` writes docs/screenshots/obligations*.png.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from e2e.server import GunicornServer
from e2e.test_ui_browser import _new_ui, browser, pack  # noqa: F401 - fixtures

pytestmark = pytest.mark.timeout(300)
SUBJECT = "browser-subject-4711"


@pytest.fixture(scope="module")
def server(browser: Any, pack: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[GunicornServer]:  # noqa: F811
    with GunicornServer(tmp_path_factory.mktemp("ui-obl"), workers=1, policy_dir=pack) as srv:
        now = datetime.now(UTC)
        for ref, rtype, days_ago in [("KIRJE-2026-118", "access", 45), ("TIKETTI-88", "inquiry", 0),
                                     ("TIKETTI-90", "rectification", 3), ("DONE-1", "access", 2)]:
            r = srv.post("/v1/requests", json={
                "type": rtype, "subject_id": SUBJECT, "reference": ref,
                "received_at": (now - timedelta(days=days_ago)).isoformat()})
            assert r.status_code == 201, r.text
            if ref == "DONE-1":
                assert srv.post(f"/v1/obligations/{r.json()['id']}/complete").status_code == 200
        yield srv


def test_requests_and_deadlines_tab(browser: Any, server: GunicornServer) -> None:  # noqa: F811
    ui, context = _new_ui(browser, server)
    try:
        page = ui.page
        ui.open()
        ui.wait_for_vocabulary()
        page.get_by_role("tab", name="Requests and deadlines").click()
        assert page.locator("#panel-obligations").is_visible()
        listed = [o for o in server.get("/v1/obligations").json()["items"]
                  if o["status"] in ("open", "extended")]
        rows = page.locator("#obl-rows tr")
        page.wait_for_function("() => document.querySelectorAll('#obl-rows tr[data-id]').length > 0")
        assert rows.count() == len(listed) == 3
        refs = [rows.nth(i).locator("td").nth(1).inner_text() for i in range(rows.count())]
        assert refs == [o["reference"] for o in listed]  # soonest due first, as the API
        assert refs[0] == "KIRJE-2026-118" and "DONE-1" not in refs
        first = rows.nth(0)
        assert "overdue" in first.get_attribute("class") and "overdue" in first.inner_text().lower()
        assert page.locator("#obl-status").inner_text() == "3 open, 1 overdue"
        assert SUBJECT not in page.content()
        ui.shot("obligations")
        page.get_by_label("Only overdue").check()
        assert page.locator("#obl-rows tr").count() == 1
        page.get_by_label("Only overdue").uncheck()
        page.get_by_role("button", name="Suomi").click()
        assert page.get_by_role("tab", name="Pyynnöt ja määräajat").get_attribute("aria-selected") == "true"
        assert page.locator("#obl-status").inner_text() == "3 avoinna, 1 myöhässä"
        assert "myöhässä" in page.locator("#obl-rows tr").nth(0).inner_text().lower()
        assert page.locator("th").filter(has_text="Määräpäivä").count() == 1
        ui.shot("obligations-fi")
        ui.assert_no_problems()
    finally:
        context.close()
