"""The facts cache end to end: two gunicorn servers (two replicas, two workers each) on one
database. One decides (and caches), the other records an objection; the first one's very next
decisions, on whichever worker, see it. SQLite (a shared file) and PostgreSQL (a fresh schema)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import requests
from conftest import EventsDb

from e2e.server import REPO, GunicornServer

SUBJECT = "cust-e2e-cache-1"
MARKETING = {"operation": "process", "purpose": "direct_marketing", "data_categories": ["email"],
             "channel": "email", "subject": {"id": SUBJECT, "consents": ["direct_marketing"]}}
OBJECTION = {"id": "ev-e2e-cache-objection", "type": "objection.registered", "subject_id": SUBJECT,
             "occurred_at": "2026-03-01T10:00:00+02:00", "data": {"scope": "direct_marketing"}}


def _server(workdir: Path, db: EventsDb) -> GunicornServer:
    env = {"KTI_POLICY_DIR": str(REPO / "policies"), "KTI_DATABASE_URL": db.url}
    if db.schema:
        env["KTI_DATABASE_SCHEMA"] = db.schema
    return GunicornServer(workdir, env, workers=2, threads=2)


def _decisions(url: str, n: int) -> list[str]:
    """``n`` decisions, each on a new connection (so both workers answer some)."""
    out = []
    for _ in range(n):
        resp = requests.post(f"{url}/v1/decisions", json=MARKETING, timeout=10)
        assert resp.status_code == 200, resp.text
        out.append(resp.json()["decision"])
    return out


def _hits(url: str) -> float:
    text = requests.get(f"{url}/metrics", timeout=10).text
    found = re.findall(r'^kti_facts_cache_total\{result="hit"\} ([0-9.e+]+)$', text, re.M)
    return sum(float(x) for x in found)


@pytest.mark.timeout(120)
def test_an_objection_recorded_on_one_replica_stops_marketing_on_the_other_at_once(
    db_url: EventsDb, tmp_path: Path
) -> None:
    if db_url.backend == "sqlite":  # both replicas on one file
        db_url = EventsDb("sqlite", f"sqlite:///{tmp_path / 'shared.sqlite3'}")
    with _server(tmp_path / "deciding", db_url) as deciding, _server(tmp_path / "ingesting", db_url) as ingesting:
        assert _decisions(deciding.url, 30) == ["allow"] * 30
        assert _hits(deciding.url) > 0  # the workers answered from their caches
        resp = requests.post(f"{ingesting.url}/v1/events", json=OBJECTION, timeout=10)
        assert resp.status_code == 201, resp.text
        assert _decisions(deciding.url, 30) == ["deny"] * 30
        again = requests.post(f"{ingesting.url}/v1/events", json=OBJECTION, timeout=10)
        assert again.status_code == 200  # a duplicate: recorded once, nothing changes
        assert _decisions(deciding.url, 10) == ["deny"] * 10
