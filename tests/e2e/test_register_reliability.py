"""The obligations register survives ``kill -9`` (issue 12, "nothing lost, nothing twice").

The real ``kti-policy serve`` (background delivery and the reminder pass every 0.2 s) takes events
and ``POST /v1/requests`` from four client threads while its webhook receiver holds every request
(the sender hangs mid-send); it is killed with SIGKILL mid-run. Then, from the database alone: every
answered event and request has its case, every recorded erasure has both systems' tasks (the event
and its obligations committed together, or neither), and no case exists twice. After a restart,
every obligation's ``obligation.overdue`` and every task's ``deletion.due`` arrive, and the history
shows exactly one reminder per obligation. SQLite file bytes hold no clear subject id.
"""

from __future__ import annotations

import random
import threading
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import requests
import sqlalchemy as sa
from conftest import EventsDb, new_hook_secret

from e2e.receiver import WebhookReceiver
from e2e.test_reliability_e2e import INGEST_KEY, SECRET_ENV, Serve, full_env, kti_env, open_store
from e2e.test_reliability_e2e import procs as procs  # noqa: F401 - the fixture
from kti_policy.register.tables import history_t, obligations_t
from kti_policy.store.tables import deliveries_t

pytestmark = pytest.mark.timeout(240)
REPO = Path(__file__).resolve().parents[2]


def _hooks(folder: Path, rx: WebhookReceiver) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "hooks.yaml").write_text(
        "subscriptions:\n"
        f"  - id: billing\n    url: {rx.url('/billing')}\n"
        f"    events: [obligation.due_soon, obligation.overdue]\n"
        f"    secret_env: {SECRET_ENV}\n    holds: [name, email]\n"
        f"  - id: marketing\n    url: {rx.url('/marketing')}\n    events: [consent.withdrawn]\n"
        f"    secret_env: {SECRET_ENV}\n    holds: [email]\n"
    )
    return folder


def test_kill9_mid_run_loses_no_case_and_reminds_once(
    db_url: EventsDb, tmp_path: Path, procs: list[Any]  # noqa: F811
) -> None:
    secret = new_hook_secret()
    rx = WebhookReceiver(secret).start()
    try:
        rx.hold()
        env = full_env(kti_env(tmp_path, db_url, _hooks(tmp_path / "hooks", rx), secret,
                               KTI_POLICY_DIR=str(REPO / "policies"),
                               KTI_OBLIGATION_SCAN_SECONDS="0.2"))
        first = Serve("serve-1", env, tmp_path)
        procs.append(first)
        first.start()
        # received 40 days ago: every case and task is overdue at once (the real clock)
        received = (datetime.now(UTC) - timedelta(days=40)).isoformat()
        answered: dict[str, str] = {}  # event id / reference -> what it opens
        lock = threading.Lock()
        stop = threading.Event()

        def client(n: int) -> None:
            rnd = random.Random(n)
            session = requests.Session()
            headers = {"Authorization": f"Bearer {INGEST_KEY}"}
            i = 0
            while not stop.is_set():
                i += 1
                ref = f"c{n}-{i}"
                kind = rnd.choice(["access_request.received", "erasure.requested", "request"])
                try:
                    if kind == "request":
                        r = session.post(first.url + "/v1/requests", headers=headers, timeout=5,
                                         json={"type": rnd.choice(["access", "erasure"]),
                                               "subject_id": f"subject-{ref}",
                                               "received_at": received, "reference": ref})
                        opened = r.json().get("request_type") if r.status_code == 201 else None
                    else:
                        r = session.post(first.url + "/v1/events", headers=headers, timeout=5,
                                         json={"id": ref, "type": kind,
                                               "subject_id": f"subject-{ref}",
                                               "occurred_at": received,
                                               "data": {} if kind.startswith("erasure") else
                                               {"written": True, "signed": False}})
                        opened = ("erasure" if kind.startswith("erasure") else "access") \
                            if r.status_code == 201 else None
                except (requests.RequestException, ValueError):
                    return  # the server died under us: this one may or may not be recorded
                assert opened, (r.status_code, r.text)
                with lock:
                    answered[ref] = opened

        threads = [threading.Thread(target=client, args=(n,)) for n in range(4)]
        for t in threads:
            t.start()
        deadline = time.monotonic() + 60
        while (len(answered) < 150 or len(rx.snapshot()) < 3) and time.monotonic() < deadline:
            time.sleep(0.05)
        first.kill9()  # mid-post and mid-send (the receiver holds what it got)
        stop.set()
        for t in threads:
            t.join(timeout=30)
        assert len(answered) >= 150, first.log_text()[-2000:]

        store = open_store(db_url)
        try:
            with store.engine.connect() as conn:
                rows = conn.execute(sa.select(obligations_t)).all()
            # the dead process's leases would hold its in-flight rows for minutes: expire them
            # now, as test_reliability_e2e does, instead of waiting
            with store._write() as conn:
                conn.execute(deliveries_t.update().where(deliveries_t.c.status == "pending")
                             .values(claimed_until=datetime.now(UTC) - timedelta(seconds=1)))
        finally:
            store.close()
        cases = [r for r in rows if r.kind == "case"]
        case_refs = Counter(r.reference for r in cases)
        assert max(case_refs.values()) == 1  # no case twice
        assert {ref: kind for ref, kind in answered.items()} == {
            ref: r.request_type for r in cases for ref in [r.reference] if ref in answered}
        tasks = Counter(r.reference for r in rows if r.kind == "task")
        for r in cases:  # an erasure and its tasks were committed together
            assert tasks[r.reference] == (2 if r.request_type == "erasure" else 0), r.reference

        rx.release()
        second = Serve("serve-2", env, tmp_path)
        procs.append(second)
        second.start()
        expected = {f"obligation-{r.id}-obligation_overdue" for r in rows}
        expected |= {f"obligation-{r.id}-deletion_due" for r in rows if r.kind == "task"}
        missing = rx.wait_for_acked(expected, timeout=120)
        assert not missing, (sorted(missing)[:5], second.log_text()[-2000:])
        store = open_store(db_url)
        try:
            with store.engine.connect() as conn:
                reminders = Counter(
                    (r.obligation_id, r.what)
                    for r in conn.execute(sa.select(history_t).where(
                        history_t.c.what.in_(["overdue", "due_soon"])))
                )
        finally:
            store.close()
        assert set(reminders) == {(r.id, "overdue") for r in rows}
        assert set(reminders.values()) == {1}
        if db_url.backend == "sqlite":
            db_file = Path(db_url.url[len("sqlite:///"):])
            raw = b"".join(p.read_bytes() for p in db_file.parent.glob(db_file.name + "*"))
            assert len(raw) > 100_000
            assert b"subject-c" not in raw
    finally:
        rx.release()
        rx.stop()
