"""Delivery worker against a real HTTP receiver and a real database (SQLite and PostgreSQL)."""

from __future__ import annotations

import json
import threading
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from click.testing import CliRunner
from conftest import new_hook_secret
from e2e.receiver import WebhookReceiver
from standardwebhooks.webhooks import Webhook

from kti_policy.errors import ConfigError
from kti_policy.hooks.delivery import Worker, deliver_command, parse_retry_after, parse_schedule
from kti_policy.hooks.subscriptions import Subscription, parse_secret
from kti_policy.store.db import status_counts


def _sub(url: str, secret: str, sid: str = "crm") -> Subscription:
    return Subscription(
        sid,
        url,
        frozenset({"objection.registered", "erasure.requested"}),
        "X",
        secret=parse_secret(secret, "X"),
    )


def _ev(i: int, subject: str = "cust-4711") -> dict[str, Any]:
    return {
        "id": f"ev-{i}",
        "type": "objection.registered",
        "subject_id": subject,
        "occurred_at": "2026-03-01T10:00:00+02:00",
        "data": {"scope": "marketing"},
    }


def _worker(store: Any, schedule: tuple[float, ...] = (0, 0, 0), **kw: Any) -> Worker:
    kw.setdefault("timeout", 5)
    return Worker(store, schedule=schedule, jitter=0, **kw)


def _verify(secret: str, req: Any) -> dict[str, Any]:
    return Webhook(secret).verify(req.body, req.headers)  # type: ignore[no-any-return]


def test_delivered_signed_and_body_removed(make_store: Any, receiver: Any) -> None:
    secret = new_hook_secret()
    store = make_store([_sub(receiver.url, secret)])
    store.record_events([_ev(1)])
    assert _worker(store).run_once() == 1
    [req] = receiver.requests
    payload = _verify(secret, req)
    assert req.headers["webhook-id"] == "ev-1"
    assert req.headers["content-type"] == "application/json"
    assert payload["type"] == "objection.registered"
    assert payload["data"]["subject_id"] == "cust-4711"
    assert payload["data"]["scope"] == "marketing"
    assert payload["data"]["occurred_at"] == "2026-03-01T08:00:00Z"
    assert isinstance(payload["data"]["sequence"], int)
    [d] = store.list_deliveries()
    assert d["status"] == "delivered" and d["attempt_count"] == 1
    assert d["attempts"][0]["status_code"] == 200
    with store.engine.connect() as conn:
        assert conn.exec_driver_sql("SELECT body FROM deliveries").scalar() is None
    assert _worker(store).run_once() == 0


def test_503_then_200_same_id_fresh_signature(make_store: Any, receiver: Any) -> None:
    secret = new_hook_secret()
    receiver.script = [503]
    store = make_store([_sub(receiver.url, secret)])
    store.record_events([_ev(1)])
    worker = _worker(store, schedule=(1.05,))
    assert worker.run_once() == 0
    [d] = store.list_deliveries()
    assert d["status"] == "pending" and d["last_status_code"] == 503
    assert worker.run_once() == 0  # not due yet
    time.sleep(1.1)
    assert worker.run_once() == 1
    first, second = receiver.requests
    assert first.body == second.body
    assert first.headers["webhook-id"] == second.headers["webhook-id"] == "ev-1"
    assert first.headers["webhook-timestamp"] != second.headers["webhook-timestamp"]
    assert first.headers["webhook-signature"] != second.headers["webhook-signature"]
    _verify(secret, first)
    _verify(secret, second)
    [d] = store.list_deliveries()
    assert [a["status_code"] for a in d["attempts"]] == [503, 200]
    assert [a["outcome"] for a in d["attempts"]] == ["failed", "delivered"]


def test_always_failing_goes_dead_then_retry_delivers(make_store: Any, receiver: Any) -> None:
    secret = new_hook_secret()
    receiver.default = 500
    store = make_store([_sub(receiver.url, secret)])
    store.record_events([_ev(1)])
    worker = _worker(store, schedule=parse_schedule("0,0,0"))
    for _ in range(6):
        worker.run_once()
    [d] = store.list_deliveries()
    assert d["status"] == "dead" and d["attempt_count"] == 4  # "1,1,2"-style: 3 delays, 4 tries
    assert [a["outcome"] for a in d["attempts"]] == ["failed"] * 3 + ["dead"]
    assert store.outbox_stats() == {"depth": 0, "oldest_pending_age_seconds": None, "dead": 1}
    receiver.default = 204
    assert store.retry_delivery(d["id"])["status"] == "pending"
    assert worker.run_once() == 1
    [d] = store.list_deliveries(status="delivered")
    assert (
        d["attempt_count"] == 5 and len({r.headers["webhook-id"] for r in receiver.requests}) == 1
    )


def test_redirect_and_refused_are_failures(make_store: Any, receiver: Any) -> None:
    receiver.default = 302
    secret = new_hook_secret()
    store = make_store(
        [_sub(receiver.url, secret), _sub("http://127.0.0.1:9/closed", secret, "gone")]
    )
    store.record_events([_ev(1)])
    assert _worker(store, schedule=()).run_once() == 0
    by_sub = {d["subscription_id"]: d for d in store.list_deliveries()}
    assert by_sub["crm"]["status"] == "dead" and by_sub["crm"]["last_status_code"] == 302
    assert len(receiver.requests) == 1  # the redirect was not followed
    assert "ConnectionError" in by_sub["gone"]["last_error"]


def test_two_workers_never_send_the_same_row(make_store: Any, receiver: Any) -> None:
    secret = new_hook_secret()
    receiver.delay = 0.002
    sub = _sub(receiver.url, secret)
    make_store([sub]).record_events([_ev(i, f"c{i}") for i in range(300)], batch=True)
    workers = [_worker(make_store([sub]), batch_size=10, concurrency=4) for _ in range(2)]
    sent = [0, 0]

    def run(k: int) -> None:
        sent[k] = workers[k].drain()

    threads = [threading.Thread(target=run, args=(k,)) for k in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    ids = [r.headers["webhook-id"] for r in receiver.requests]
    assert len(ids) == len(set(ids)) == 300
    assert sum(sent) == 300 and min(sent) > 0  # both took part
    assert status_counts(workers[0].store)["delivered"] == 300


def test_expired_lease_is_reclaimed(make_store: Any, receiver: Any) -> None:
    secret = new_hook_secret()
    store = make_store([_sub(receiver.url, secret)])
    store.record_events([_ev(1)])
    [crashed] = store.claim_due(10, lease_seconds=0.5)  # a worker that dies before sending
    worker = _worker(store)
    assert worker.run_once() == 0  # leased: nobody else sends it
    time.sleep(0.6)
    assert worker.run_once() == 1
    # the dead worker's late report does not overwrite the new owner's outcome
    assert not store.complete_attempt(
        crashed,
        attempted_at=datetime.now(UTC),
        duration_ms=1,
        status_code=None,
        error="late",
        delivered=False,
        next_attempt_at=datetime.now(UTC) + timedelta(seconds=5),
    )
    assert store.list_deliveries()[0]["status"] == "delivered"


def test_crash_after_2xx_redelivers_with_same_id(make_store: Any, receiver: Any) -> None:
    secret = new_hook_secret()
    store = make_store([_sub(receiver.url, secret)])
    store.record_events([_ev(1)])
    worker = _worker(store, lease_seconds=0.5)
    real = store.complete_attempts

    def crash(*a: Any, **k: Any) -> bool:
        raise RuntimeError("killed before recording the outcome")

    store.complete_attempts = crash
    with pytest.raises(RuntimeError):
        worker.run_once()
    store.complete_attempts = real
    time.sleep(0.6)
    assert worker.run_once() == 1
    assert [r.headers["webhook-id"] for r in receiver.requests] == ["ev-1", "ev-1"]


def test_background_thread_delivers_promptly(make_store: Any, receiver: Any) -> None:
    secret = new_hook_secret()
    store = make_store([_sub(receiver.url, secret)])
    worker = Worker(store, jitter=0, poll_interval=30)  # only the wake-up can make it prompt
    thread = worker.start_background()
    try:
        store.record_events([_ev(1)])
        deadline = time.monotonic() + 5
        while not receiver.requests and time.monotonic() < deadline:
            time.sleep(0.02)
        assert receiver.requests
    finally:
        worker.stop()
        thread.join(timeout=10)
    assert not thread.is_alive()


def test_unknown_subscription_is_a_logged_failure(make_store: Any, receiver: Any) -> None:
    secret = new_hook_secret()
    store = make_store([_sub(receiver.url, secret)])
    store.record_events([_ev(1)])
    _worker(store, subscriptions=[], schedule=()).run_once()
    [d] = store.list_deliveries()
    assert d["status"] == "dead" and "not configured" in d["last_error"]


def test_deliver_command_once(make_store: Any, receiver: Any, tmp_path: Any) -> None:
    db = make_store.db
    secret = new_hook_secret()
    hooks = tmp_path / "hooks"
    hooks.mkdir()
    (hooks / "h.yaml").write_text(
        f"subscriptions:\n  - id: crm\n    url: {receiver.url}\n    events: [erasure.requested]\n"
        "    secret_env: KTI_T_DELIVER_SECRET\n"
    )
    env = {
        "KTI_DATABASE_URL": db.url,
        "KTI_HOOKS_DIR": str(hooks),
        "KTI_PSEUDONYM_KEY": "k" * 20,
        "KTI_T_DELIVER_SECRET": secret,
        "KTI_INSTANCE_DIR": str(tmp_path / "inst"),
        "KTI_DATABASE_SCHEMA": db.schema or "",
    }
    from kti_policy.hooks.fanout import Store

    store = Store.from_config(env)
    store.record_events([{**_ev(1), "type": "erasure.requested", "data": {}}])
    store.close()
    result = CliRunner().invoke(deliver_command, ["--once"], env=env)
    assert result.exit_code == 0, result.output
    assert "delivered 1" in result.output
    assert json.loads(receiver.requests[0].body)["type"] == "erasure.requested"


def test_schedule_and_retry_after_parsing() -> None:
    assert parse_schedule(None) == (5, 300, 1800, 7200, 18000, 36000, 36000)
    assert parse_schedule("1,1,2") == (1, 1, 2)
    with pytest.raises(ConfigError):
        parse_schedule("5,soon")
    now = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
    assert parse_retry_after("120", now) == 120
    assert parse_retry_after("Wed, 25 Nov 2026 12:01:00 GMT", now) == 60
    assert parse_retry_after("whenever", now) is None


def test_jitter_stays_proportional(make_store: Any) -> None:
    w = Worker(make_store(), schedule=(100, 200), jitter=0.2)
    delays = [w._delay(1, None) for _ in range(200)]
    assert all(80 <= d <= 120 for d in delays if d is not None)
    assert w._delay(3, None) is None
    assert w._delay(1, 500) == 500  # Retry-After wins when longer


def test_a_hanging_receiver_does_not_hold_up_the_others(make_store: Any) -> None:
    """One receiver takes the requests and never answers; the other subscriber still gets every
    delivery meanwhile (``run_forever`` keeps its slots full, one subscription holds at most half
    of them). With rounds that waited for their slowest attempt, the fast receiver got the first
    round's deliveries, then nothing until the hanging ones timed out."""
    secret = new_hook_secret()
    ids = {f"ev-{i}" for i in range(40)}
    with WebhookReceiver(secret) as slow, WebhookReceiver(secret) as fast:
        slow.hold()
        store = make_store([_sub(slow.url(), secret, "slow"), _sub(fast.url(), secret, "fast")])
        store.record_events([_ev(i, f"cust-{i}") for i in range(40)])  # 80 deliveries, interleaved
        worker = _worker(store, concurrency=4, timeout=60)
        assert worker.per_subscription == 2
        thread = worker.start_background()
        try:
            missing = fast.wait_for_acked(ids, timeout=45)
            hanging = [r for r in slow.snapshot() if r.status is None]
            assert not missing, f"{len(missing)} deliveries to the fast receiver waited"
            assert len(hanging) == 2 and not slow.acked  # its two slots, still unanswered
            slow.release()
            assert not slow.wait_for_acked(ids, timeout=45)
        finally:
            slow.release()
            worker.stop()
            thread.join(timeout=90)
        assert not thread.is_alive()
    assert status_counts(store)["delivered"] == 80


def test_worker_settings_from_config(make_store: Any) -> None:
    secret = new_hook_secret()
    subs = [_sub("http://127.0.0.1:9/a", secret, "a"), _sub("http://127.0.0.1:9/b", secret, "b")]
    store = make_store(subs)
    worker = Worker.from_config(store, {"KTI_HOOK_CONCURRENCY": "6", "KTI_HOOK_TIMEOUT": "3"})
    assert (worker.concurrency, worker.per_subscription, worker.timeout) == (6, 3, 3.0)
    worker = Worker.from_config(store, {"KTI_HOOK_CONCURRENCY_PER_SUBSCRIPTION": "5"})
    assert (worker.concurrency, worker.per_subscription) == (8, 5)
    assert Worker(make_store(subs[:1]), concurrency=6).per_subscription == 6  # no one else to wait
    with pytest.raises(ConfigError, match="KTI_HOOK_CONCURRENCY_PER_SUBSCRIPTION must be a number, got 'half'"):
        Worker.from_config(store, {"KTI_HOOK_CONCURRENCY_PER_SUBSCRIPTION": "half"})
    with pytest.raises(ConfigError, match="KTI_HOOK_TIMEOUT must be a number, got 'soon'"):
        Worker.from_config(store, {"KTI_HOOK_TIMEOUT": "soon"})


def test_outcomes_the_database_refuses_are_recorded_later(make_store: Any, receiver: Any,
                                                          monkeypatch: Any) -> None:
    """``run_forever`` keeps outcomes a failed transaction did not record and records them on a
    later pass: no delivery is sent twice for it (its lease has not expired)."""
    secret = new_hook_secret()
    store = make_store([_sub(receiver.url, secret)])
    store.record_events([_ev(i, f"cust-{i}") for i in range(12)])
    real, calls = store.complete_attempts, []

    def refuse_first(outcomes: Any) -> Any:
        calls.append(len(outcomes))
        if len(calls) == 1:
            raise RuntimeError("database went away")
        return real(outcomes)

    monkeypatch.setattr(store, "complete_attempts", refuse_first)
    worker = _worker(store, concurrency=4)
    thread = worker.start_background()
    try:
        deadline = time.monotonic() + 60
        while status_counts(store)["delivered"] < 12 and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        worker.stop()
        thread.join(timeout=60)
    assert status_counts(store)["delivered"] == 12
    assert len(calls) >= 2 and sum(calls[1:]) == 12  # the refused ones again, then the rest
    assert sorted(r.headers["webhook-id"] for r in receiver.requests) == sorted(f"ev-{i}" for i in range(12))


def test_stopping_gives_back_the_deliveries_in_hand(make_store: Any) -> None:
    """``run_forever`` holds more claimed rows than it sends at once; on stop it ends the attempts
    under way and gives the rest back, due at once for the next worker (not after their lease)."""
    secret = new_hook_secret()
    with WebhookReceiver(secret) as rx:
        rx.hold()
        store = make_store([_sub(rx.url(), secret)])
        store.record_events([_ev(i, f"cust-{i}") for i in range(8)])
        worker = _worker(store, concurrency=2, batch_size=8, timeout=60)
        thread = worker.start_background()
        try:
            assert rx.wait_until(lambda seen: len(seen) == 2, timeout=30)
            assert store.claim_due(100, 60) == []  # two being sent, six held: all leased
            worker.stop()
        finally:
            rx.release()
            thread.join(timeout=60)
        assert not thread.is_alive()
        sent = {r.webhook_id for r in rx.snapshot()}
    assert status_counts(store)["delivered"] == 2
    back = store.claim_due(100, 60)
    assert len(back) == 6 and not sent & {c.event_id for c in back}
