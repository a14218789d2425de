"""The obligations register end to end (CONTRACT section 8, issue 12), through the app and a real
webhook receiver, with a frozen clock (``KTI_CLOCK``) instead of sleeps. SQLite and PostgreSQL.

The must-show cases of the issue are the first two tests; the rest pin the edges (transitions and
their 409s, idempotency, filters and paging, roles, the CSV, no clear subject id at rest).
"""

from __future__ import annotations

import csv
import io
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from conftest import EventsDb, new_hook_secret
from e2e.receiver import WebhookReceiver

from kti_policy.api.app import create_app
from kti_policy.hooks.delivery import Worker
from kti_policy.register.ledger import _request_event_id
from kti_policy.register.scheduler import OBLIGATIONS, ObligationScheduler
from kti_policy.register.tables import history_t, obligations_t
from kti_policy.store.tables import events_t

ADMIN, INGEST, QUERY = "adm-" + secrets.token_hex(8), "ing-" + secrets.token_hex(8), "q-" + secrets.token_hex(8)
H = {key: {"Authorization": f"Bearer {key}"} for key in (ADMIN, INGEST, QUERY)}
SUBJECT = "customer-4711"


@dataclass
class Env:
    client: Any
    app: Any
    now: list[datetime]
    rx: WebhookReceiver
    worker: Worker
    scheduler: ObligationScheduler

    def at(self, iso: str) -> None:
        self.now[0] = datetime.fromisoformat(iso).astimezone(UTC)

    def store(self) -> Any:
        return self.app.extensions["kti"].store

    def send(self) -> None:
        """One reminder pass at the frozen time, then deliver everything due to the receiver."""
        self.scheduler.run_once()
        self.worker.drain()

    def received(self, event_type: str) -> list[dict[str, Any]]:
        return [s.payload for s in self.rx.requests if s.payload["type"] == event_type]


@pytest.fixture
def env(db_url: EventsDb, tmp_path: Path) -> Iterator[Env]:
    secret = new_hook_secret()
    with WebhookReceiver(secret) as rx:
        hooks = tmp_path / "hooks"
        hooks.mkdir()
        (hooks / "systems.yaml").write_text(
            f"""subscriptions:
  - id: billing
    url: {rx.url('/billing')}
    events: [obligation.due_soon, obligation.overdue]
    secret_env: KTI_HOOK_SECRET_T
    holds: [name, email, accounting_records, accounting_vouchers]
  - id: marketing
    url: {rx.url('/marketing')}
    events: [consent.withdrawn]
    secret_env: KTI_HOOK_SECRET_T
    holds: [email, mobile_phone]
  - id: archive
    url: {rx.url('/archive')}
    events: [consent.withdrawn]
    secret_env: KTI_HOOK_SECRET_T
""",
            encoding="utf-8",
        )
        now = [datetime(2026, 12, 24, 8, 0, tzinfo=UTC)]
        config = {
            "KTI_POLICY_DIR": str(Path(__file__).resolve().parents[2] / "policies"),
            "KTI_INSTANCE_DIR": str(tmp_path / "instance"),
            "KTI_HOOKS_DIR": str(hooks),
            "KTI_DATABASE_URL": db_url.url,
            "KTI_DATABASE_SCHEMA": db_url.schema or "",
            "KTI_PSEUDONYM_KEY": "register-test-key-0123456789",
            "KTI_HOOK_SECRET_T": secret,
            "KTI_API_KEYS": f"{ADMIN}:admin,{INGEST}:ingest,{QUERY}:query",
            "KTI_CLOCK": lambda: now[0],
        }
        app = create_app(config)
        store = app.extensions["kti"].store
        worker = Worker(store, schedule=(), jitter=0, concurrency=1)
        yield Env(app.test_client(), app, now, rx, worker, worker.scheduler or
                  ObligationScheduler(store, clock=lambda: now[0]))
        app.extensions["kti"].close()


def test_access_request_due_soon_overdue_extension_completion(env: Env) -> None:
    body = {"type": "access", "subject_id": SUBJECT, "received_at": "2026-12-24T10:00:00+02:00",
            "reference": "KTI-2026-0001"}
    r = env.client.post("/v1/requests", json=body, headers=H[INGEST])
    assert r.status_code == 201, r.json
    case = r.json
    assert (case["due"], case["received"], case["status"], case["overdue"]) == (
        "2027-01-25", "2026-12-24", "open", False)
    assert SUBJECT not in r.get_data(as_text=True)
    again = env.client.post("/v1/requests", json=body, headers=H[INGEST])
    assert again.status_code == 200 and again.json["id"] == case["id"]

    env.at("2027-01-15T12:00:00+02:00")  # the lead (5 business days) has not started
    env.send()
    assert env.received("obligation.due_soon") == []
    env.at("2027-01-18T09:00:00+02:00")
    env.send()
    env.send()
    soon = env.received("obligation.due_soon")
    assert len(soon) == 1 and soon[0]["data"]["obligation_id"] == case["id"]
    assert soon[0]["data"]["reference"] == "KTI-2026-0001" and "subject_id" not in soon[0]["data"]
    env.at("2027-01-25T15:00:00+02:00")  # on the due date it is not overdue yet
    env.send()
    listed = env.client.get("/v1/obligations?overdue=true", headers=H[QUERY]).json["items"]
    assert listed == [] and env.received("obligation.overdue") == []
    env.at("2027-01-26T09:00:00+02:00")
    env.send()
    env.send()
    overdue = env.received("obligation.overdue")
    assert [p["data"]["obligation_id"] for p in overdue] == [case["id"]]
    got = env.client.get(f"/v1/obligations/{case['id']}", headers=H[QUERY]).json
    assert got["overdue"] is True
    assert [h["what"] for h in got["history"]] == ["opened", "due_soon", "overdue"]
    assert {d["event_type"]: d["status"] for d in got["deliveries"]} == {
        "obligation.due_soon": "delivered", "obligation.overdue": "delivered"}
    assert env.scheduler.update_gauge()[("respond_by", "overdue")] == 1
    assert OBLIGATIONS.labels(type="respond_by", state="overdue")._value.get() == 1

    # the same request, extended on 20 Jan instead: three months after receipt
    second = dict(body, reference="KTI-2026-0002")
    env.at("2026-12-24T12:00:00+02:00")
    oid = env.client.post("/v1/requests", json=second, headers=H[INGEST]).json["id"]
    env.at("2027-01-20T10:00:00+02:00")
    r = env.client.post(f"/v1/obligations/{oid}/extend", json={"reason": "many requests"},
                        headers=H[INGEST])
    assert r.status_code == 200, r.json
    assert (r.json["status"], r.json["due"], r.json["extension_notice_by"]) == (
        "extended", "2027-03-24", "2027-01-25")
    assert r.json["history"][-1] | {"at": None, "by": None} == {
        "at": None, "by": None, "what": "extended", "from": "2027-01-25", "to": "2027-03-24",
        "extension_notice_by": "2027-01-25", "reason": "many requests", "rule": "Q2"}
    again = env.client.post(f"/v1/obligations/{oid}/extend", json={"reason": "x"},
                            headers=H[INGEST])
    assert again.status_code == 409 and again.json["error"] == "obligation_conflict"
    env.at("2027-01-26T09:00:00+02:00")
    env.send()
    assert [p["data"]["obligation_id"] for p in env.received("obligation.overdue")] == [case["id"]]
    done = env.client.post(f"/v1/obligations/{oid}/complete", json={"note": "sent by post"},
                           headers=H[INGEST])
    assert done.status_code == 200 and done.json["status"] == "completed"
    assert done.json["overdue"] is False and done.json["closed_at"]
    assert env.client.post(f"/v1/obligations/{oid}/refuse", json={"reason": "GDPR 12(5)"},
                           headers=H[INGEST]).status_code == 409
    env.at("2027-03-25T09:00:00+02:00")
    env.send()
    assert [p["data"]["obligation_id"] for p in env.received("obligation.overdue")] == [case["id"]]


def test_erasure_two_systems_one_confirmation_then_overdue(env: Env) -> None:
    env.at("2026-11-30T12:00:00+02:00")
    event = {"id": "erasure-1", "type": "erasure.requested", "subject_id": SUBJECT,
             "occurred_at": "2026-11-30T09:00:00+02:00", "data": {}}
    assert env.client.post("/v1/events", json=event, headers=H[INGEST]).status_code == 201
    assert env.client.post("/v1/events", json=event, headers=H[INGEST]).status_code == 200
    env.worker.drain()
    due = env.received("deletion.due")
    assert sorted(p["data"]["system"] for p in due) == ["billing", "marketing"]
    by_system = {p["data"]["system"]: p["data"] for p in due}
    # R2: everything but statutory-retention data, one month after the request
    assert by_system["billing"]["data_categories"] == ["email", "name"]
    assert by_system["marketing"]["data_categories"] == ["email", "mobile_phone"]
    assert {d["due"] for d in by_system.values()} == {"2016-12-30"[:0] + "2026-12-30"}
    assert {d["subject_id"] for d in by_system.values()} == {SUBJECT}  # the receiver needs it
    acked = {s.path: s.webhook_id for s in env.rx.requests if s.status and s.status < 300}
    assert set(acked) == {"/billing", "/marketing"}

    tasks = env.client.get("/v1/obligations?type=delete_by", headers=H[QUERY]).json["items"]
    assert len(tasks) == 2 and {t["reference"] for t in tasks} == {"erasure-1"}
    cases = env.client.get("/v1/obligations?type=respond_by", headers=H[QUERY]).json["items"]
    assert [(c["request_type"], c["due"]) for c in cases] == [("erasure", "2026-12-30")]
    marketing = by_system["marketing"]["obligation_id"]
    billing = by_system["billing"]["obligation_id"]

    env.at("2026-12-10T12:00:00+02:00")
    confirm = {"id": "confirm-1", "type": "deletion.confirmed", "subject_id": SUBJECT,
               "occurred_at": "2026-12-03T10:00:00+02:00", "data": {"system": "marketing"}}
    assert env.client.post("/v1/events", json=confirm, headers=H[INGEST]).status_code == 201
    got = env.client.get(f"/v1/obligations/{marketing}", headers=H[QUERY]).json
    assert got["status"] == "completed"
    assert got["history"][-1]["what"] == "completed" and got["history"][-1]["by"] == "event:confirm-1"
    assert env.client.get(f"/v1/obligations/{billing}", headers=H[QUERY]).json["status"] == "open"
    # a confirmation with no open task is recorded and changes nothing
    stray = dict(confirm, id="confirm-2", data={"system": "archive"})
    assert env.client.post("/v1/events", json=stray, headers=H[INGEST]).status_code == 201

    env.at("2026-12-31T09:00:00+02:00")
    env.send()
    overdue = env.client.get("/v1/obligations?overdue=true", headers=H[QUERY]).json["items"]
    assert sorted((o["type"], o["system"]) for o in overdue) == [
        ("delete_by", "billing"), ("respond_by", None)]
    assert [p["data"]["obligation_id"] for p in env.received("obligation.overdue")
            if p["data"]["type"] == "delete_by"] == [billing]


def test_relationship_end_accounting_task_at_retain_until(env: Env) -> None:
    env.at("2026-12-01T12:00:00+02:00")
    event = {"id": "end-1", "type": "relationship.ended", "subject_id": SUBJECT,
             "occurred_at": "2026-11-16T12:00:00+02:00", "data": {}}
    assert env.client.post("/v1/events", json=event, headers=H[INGEST]).status_code == 201
    items = env.client.get("/v1/obligations?system=billing", headers=H[QUERY]).json["items"]
    got = [(i["rule"], i["due"], i["data_categories"], i["retain_until"]) for i in items]
    assert got == [
        ("R4", "2026-12-16", ["email", "name"], None),
        ("R1", "2033-01-31", ["accounting_vouchers"], "2032-12-31"),  # kept through 31 Dec, due a month after
        ("R1", "2037-02-02", ["accounting_records"], "2036-12-31"),  # 31 Jan 2037 is a Saturday
    ]
    marketing = env.client.get("/v1/obligations?system=marketing", headers=H[QUERY]).json["items"]
    assert [(i["rule"], i["data_categories"]) for i in marketing] == [("R4", ["email", "mobile_phone"])]
    # R1 tasks are announced when retention ends: their deletion.due waits in the outbox
    r1 = items[1]
    queued = env.client.get(f"/v1/obligations/{r1['id']}", headers=H[QUERY]).json["deliveries"]
    assert [(d["event_type"], d["status"], d["next_attempt_at"]) for d in queued] == [
        ("deletion.due", "pending", "2032-12-31T22:00:00Z")]  # 1 January 2033, 00:00 in Helsinki
    env.worker.drain()
    assert sorted(p["data"]["rule"] for p in env.received("deletion.due")) == ["R4", "R4"]
    # a confirmation now does not close data still under statutory retention
    confirm = {"id": "confirm-b", "type": "deletion.confirmed", "subject_id": SUBJECT,
               "occurred_at": "2026-12-01T10:00:00+02:00", "data": {"system": "billing"}}
    env.client.post("/v1/events", json=confirm, headers=H[INGEST])
    statuses = [i["status"] for i in
                env.client.get("/v1/obligations?system=billing", headers=H[QUERY]).json["items"]]
    assert statuses == ["completed", "open", "open"]
    # refusing an R1 task removes its unsent announcement (and the clear id it holds)
    r = env.client.post(f"/v1/obligations/{r1['id']}/refuse", json={"reason": "R1 litigation hold"},
                        headers=H[INGEST])
    assert r.status_code == 200 and r.json["deliveries"] == []


def test_transitions_validation_and_roles(env: Env) -> None:
    base = {"subject_id": SUBJECT, "received_at": "2026-12-04T10:00:00+02:00"}
    inquiry = env.client.post("/v1/requests", json=dict(base, type="inquiry", reference="Q-1"),
                              headers=H[INGEST]).json
    assert inquiry["due"] == "2026-12-08"  # two business days (Friday -> Tuesday)
    r = env.client.post(f"/v1/obligations/{inquiry['id']}/extend", json={"reason": "x"},
                        headers=H[INGEST])
    assert r.status_code == 409
    r = env.client.post(f"/v1/obligations/{inquiry['id']}/refuse", json={}, headers=H[INGEST])
    assert r.status_code == 400 and r.json["details"]["field"] == "reason"
    assert env.client.post(f"/v1/obligations/{inquiry['id']}/complete", headers=H[QUERY]).status_code == 403
    assert env.client.post(f"/v1/obligations/{inquiry['id']}/complete", headers=H[INGEST]).status_code == 200
    assert env.client.post(f"/v1/obligations/{inquiry['id']}/complete", headers=H[INGEST]).status_code == 409
    access = env.client.post("/v1/requests", json=dict(base, type="access", reference="A-1"),
                             headers=H[INGEST]).json
    env.at("2027-01-05T12:00:00+02:00")  # after its due date (4 Jan)
    r = env.client.post(f"/v1/obligations/{access['id']}/extend", json={"reason": "late"},
                        headers=H[INGEST])
    assert r.status_code == 409 and "has passed" in r.json["message"]
    assert env.client.post("/v1/obligations/999999/complete", headers=H[INGEST]).status_code == 404
    assert env.client.get(f"/v1/obligations/{2**63}", headers=H[QUERY]).status_code == 404
    bad = [
        ({**base, "type": "gossip", "reference": "x"}, "type"),
        ({**base, "reference": "x"}, "type"),
        ({"type": "access", "received_at": base["received_at"], "reference": "x"}, "subject_id"),
        ({**base, "type": "access"}, "reference"),
        ({**base, "type": "access", "reference": "x", "received_at": "yesterday"}, "received_at"),
        ({**base, "type": "access", "reference": "x", "received_at": "2027-06-01T00:00:00Z"},
         "received_at"),
        ({**base, "type": "access", "reference": "x", "identity_verified": "yes"},
         "identity_verified"),
        ({**base, "type": "access", "reference": "x", "colour": 1}, "colour"),
    ]
    for body, field in bad:
        r = env.client.post("/v1/requests", json=body, headers=H[INGEST])
        assert r.status_code == 400 and r.json["details"]["field"] == field, (body, r.json)
    assert env.client.post("/v1/requests", json=dict(base, type="access", reference="z"),
                           headers=H[QUERY]).status_code == 403
    assert env.client.get("/v1/obligations", headers=H[INGEST]).status_code == 403
    assert env.client.get("/v1/obligations.csv", headers=H[QUERY]).status_code == 403
    assert env.client.get("/v1/obligations").status_code == 401
    for query, field in [("status=overdue", "status"), ("overdue=yes", "overdue"),
                         ("due_before=soon", "due_before"), ("limit=0", "limit"),
                         ("cursor=!!", "cursor"), ("colour=red", "colour")]:
        r = env.client.get(f"/v1/obligations?{query}", headers=H[QUERY])
        assert r.status_code == 400 and r.json["details"]["field"] == field, query


def test_list_filters_paging_csv_and_no_clear_id(env: Env) -> None:
    env.at("2026-12-04T12:00:00+02:00")
    for i in range(7):
        env.client.post("/v1/requests", headers=H[INGEST], json={
            "type": "access" if i % 2 else "rectification", "subject_id": f"{SUBJECT}-{i % 3}",
            "received_at": f"2026-11-{10 + i:02d}T10:00:00+02:00", "reference": f"=R-{i}"})
    page = env.client.get("/v1/obligations?limit=3", headers=H[QUERY]).json
    seen = [o["due"] for o in page["items"]]
    while page["next_cursor"]:
        page = env.client.get(f"/v1/obligations?limit=3&cursor={page['next_cursor']}",
                              headers=H[QUERY]).json
        seen += [o["due"] for o in page["items"]]
    assert len(seen) == 7 and seen == sorted(seen)
    mine = env.client.get(f"/v1/obligations?subject_id={SUBJECT}-1", headers=H[QUERY]).json["items"]
    assert sorted(o["reference"] for o in mine) == ["=R-1", "=R-4"]
    both = env.client.get("/v1/obligations?request_type=access&due_before=2026-12-15",
                          headers=H[QUERY]).json["items"]
    assert [o["reference"] for o in both] == ["=R-1", "=R-3"]
    one = env.client.get("/v1/obligations?reference==R-5", headers=H[QUERY]).json["items"]
    assert [o["due"] for o in one] == ["2016-12-15"[:0] + "2026-12-15"]
    r = env.client.get("/v1/obligations.csv?status=open", headers=H[ADMIN])
    assert r.status_code == 200 and r.mimetype == "text/csv"
    rows = list(csv.DictReader(io.StringIO(r.get_data(as_text=True))))
    assert len(rows) == 7 and rows[0]["reference"] == "'=R-0"  # never a spreadsheet formula
    assert {"id", "type", "request_type", "status", "overdue", "due", "received", "reference",
            "system"} <= set(rows[0])
    with env.store().engine.connect() as conn:
        dumped = [str(tuple(r)) for t in (obligations_t, history_t)
                  for r in conn.execute(sa.select(t))]
    assert dumped and not any(SUBJECT in text for text in dumped)
    spec = env.client.get("/openapi.json").json["paths"]
    for path in ("/v1/requests", "/v1/obligations", "/v1/obligations.csv", "/v1/obligations/{oid}",
                 "/v1/obligations/{oid}/extend", "/v1/obligations/{oid}/complete",
                 "/v1/obligations/{oid}/refuse"):
        assert path in spec, path
    assert "409" in spec["/v1/obligations/{oid}/extend"]["post"]["responses"]


def test_two_schedulers_remind_each_obligation_once(env: Env) -> None:
    import threading

    env.at("2026-12-04T12:00:00+02:00")
    for i in range(60):
        env.client.post("/v1/requests", headers=H[INGEST], json={
            "type": "access", "subject_id": f"s-{i}", "received_at": "2026-11-20T10:00:00+02:00",
            "reference": f"P-{i}"})
    env.at("2026-12-16T12:00:00+02:00")  # all due 2026-12-21: within the lead
    store = env.store()
    clock = env.scheduler.clock
    passes = [ObligationScheduler(store, clock=clock, batch_size=7) for _ in range(3)]
    threads = [threading.Thread(target=p.run_once) for p in passes]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    env.worker.drain()
    ids = [p["data"]["obligation_id"] for p in env.received("obligation.due_soon")]
    assert len(ids) == 60 and len(set(ids)) == 60



def test_migration_keeps_the_attempt_log(make_store: Any, receiver: Any) -> None:
    """0002 rebuilds ``deliveries`` on SQLite; the attempt log (a cascade away) must survive."""
    from alembic import command
    from alembic.config import Config

    from kti_policy.hooks.subscriptions import Subscription
    from kti_policy.store.db import MIGRATIONS_DIR
    from kti_policy.store.tables import attempts_t, deliveries_t

    sub = Subscription("s", receiver.url, frozenset({"consent.granted"}), "X", secret=b"k" * 32)
    store = make_store([sub], migrate=False)
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    with store._write() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "0001")
    store.record_events([{"id": "e-1", "type": "consent.granted", "subject_id": "c",
                          "occurred_at": "2026-11-01T10:00:00Z", "data": {"purpose": "disclosure"}}])
    Worker(store, schedule=(), jitter=0).drain()
    store.migrate()
    with store.engine.connect() as conn:
        attempts = conn.execute(sa.select(attempts_t.c.outcome)).scalars().all()
        rows = conn.execute(sa.select(deliveries_t.c.event_id, deliveries_t.c.status)).all()
        assert attempts == ["delivered"] and [tuple(r) for r in rows] == [("e-1", "delivered")]
        conn.execute(deliveries_t.insert().values(  # nullable now: the register's own webhooks
            subscription_id="s", event_seq=None, event_id="obligation-1-x", event_type="x",
            status="pending", created_at=datetime.now(UTC)))
        conn.commit()


def test_an_erasure_request_through_the_api_is_one_like_the_event(env: Env) -> None:
    """CONTRACT 8: POST /v1/requests type erasure records the erasure fact (decisions see it,
    subscribers of erasure.requested are told) and opens one case with its tasks; a repeat answers
    with that case and records nothing; the reference reused for another subject is a 409."""
    env.at("2026-11-30T12:00:00+02:00")
    marketing = {"operation": "process", "purpose": "direct_marketing", "data_categories": ["email"],
                 "channel": "email", "subject": {"id": SUBJECT, "consents": ["direct_marketing"]},
                 "at": "2026-11-30T12:00:00+02:00"}
    before = env.client.post("/v1/decisions", json=marketing, headers=H[QUERY]).json
    body = {"type": "erasure", "subject_id": SUBJECT, "received_at": "2026-11-30T09:00:00+02:00",
            "reference": "Kirje 2026/118"}
    first = env.client.post("/v1/requests", json=body, headers=H[INGEST])
    assert first.status_code == 201, first.json
    view = env.client.get(f"/v1/subjects/{SUBJECT}", headers=H[QUERY]).json
    assert view["erasure_requested"] is True and [h["type"] for h in view["history"]] == ["erasure.requested"]
    after = env.client.post("/v1/decisions", json=marketing, headers=H[QUERY]).json
    assert before["decision"] == "allow" and after["decision"] == "deny", (before, after)

    again = env.client.post("/v1/requests", json=body, headers=H[INGEST])
    assert again.status_code == 200 and again.json["id"] == first.json["id"]
    cases = env.client.get("/v1/obligations?type=respond_by", headers=H[QUERY]).json["items"]
    assert [(c["request_type"], c["reference"]) for c in cases] == [("erasure", "Kirje 2026/118")]
    tasks = env.client.get("/v1/obligations?type=delete_by", headers=H[QUERY]).json["items"]
    assert sorted(t["system"] for t in tasks) == ["billing", "marketing"]
    assert {t["reference"] for t in tasks} == {"Kirje 2026/118"}
    store = env.store()
    with store._read() as conn:
        types = [r.type for r in conn.execute(sa.select(events_t.c.type))]
    assert types == ["erasure.requested"]

    other = dict(body, subject_id="customer-9999")
    same_case = env.client.post("/v1/requests", json=other, headers=H[INGEST])
    assert same_case.status_code == 200 and same_case.json["id"] == first.json["id"]

    orphan = {"id": _request_event_id("erasure", "Kirje 2026/119"), "type": "erasure.requested",
              "subject_id": "customer-1", "occurred_at": "2026-11-29T09:00:00+02:00", "data": {}}
    store.record_events([orphan])
    conflict = env.client.post("/v1/requests", json=dict(body, reference="Kirje 2026/119"), headers=H[INGEST])
    assert conflict.status_code == 409 and "Kirje 2026/119" in conflict.json["message"], conflict.json
    retry = env.client.post("/v1/requests", json=dict(body, reference="Kirje 2026/119", subject_id="customer-1",
                                                      received_at="2026-11-29T09:00:00+02:00"), headers=H[INGEST])
    assert retry.status_code == 201  # the retry of the crashed request opens its case


@pytest.mark.parametrize(("confirmed_on", "closes"), [
    ("2032-12-30", False), ("2032-12-31", False), ("2033-01-01", True)])
def test_an_r1_task_closes_only_from_the_day_after_retain_until(env: Env, confirmed_on: str, closes: bool) -> None:
    """RULES R1: vouchers are kept through 31 December of Y+6 and deletable from the next day, so a
    system's deletion.confirmed (Helsinki date of occurred_at) closes the task only from then."""
    from kti_policy.store.validation import NewEvent

    env.at("2026-12-01T12:00:00+02:00")
    end = {"id": "end-r1", "type": "relationship.ended", "subject_id": SUBJECT,
           "occurred_at": "2026-11-16T12:00:00+02:00", "data": {}}
    assert env.client.post("/v1/events", json=end, headers=H[INGEST]).status_code == 201
    register = env.app.extensions["kti_register"]
    when = datetime.fromisoformat(f"{confirmed_on}T23:30:00+02:00").astimezone(UTC)
    ev = NewEvent("confirm-r1", "deletion.confirmed", SUBJECT, when, {"system": "billing"})
    with env.store()._write() as conn:  # straight to the register: occurred_at lies years ahead
        register._confirm(conn, ev, when, "event:confirm-r1")
    items = env.client.get("/v1/obligations?system=billing", headers=H[QUERY]).json["items"]
    vouchers = next(i for i in items if i["data_categories"] == ["accounting_vouchers"])
    assert vouchers["retain_until"] == "2032-12-31"
    assert vouchers["status"] == ("completed" if closes else "open")
