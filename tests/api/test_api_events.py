"""The events blueprint through the real app factory, a real store and (for retries) a real receiver."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from conftest import new_hook_secret
from standardwebhooks.webhooks import Webhook

from kti_policy.hooks.delivery import Worker
from kti_policy.hooks.subscriptions import Subscription, parse_secret

REPO = Path(__file__).resolve().parents[2]
KEYS = "ing:ingest,qry:query,adm:admin"
EVENT = {
    "id": "ev-1",
    "type": "objection.registered",
    "subject_id": "cust-9",
    "occurred_at": "2026-03-01T10:00:00+02:00",
    "data": {"scope": "direct_marketing"},
}


def _app(store: Any, tmp_path: Path, **extra: Any) -> Any:
    from kti_policy.api.app import create_app

    cfg = {
        "KTI_POLICY_DIR": str(REPO / "tests" / "data" / "clean"),
        "KTI_INSTANCE_DIR": str(tmp_path),
        "KTI_API_KEYS": KEYS,
        "KTI_STORE": store,
        **extra,
    }
    return create_app(cfg)


def auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def test_events_subjects_and_deliveries(make_store: Any, tmp_path: Path, receiver: Any) -> None:
    secret = new_hook_secret()
    sub = Subscription(
        "crm",
        receiver.url,
        frozenset({"objection.registered"}),
        "X",
        secret=parse_secret(secret, "X"),
    )
    store = make_store([sub])
    client = _app(store, tmp_path).test_client()
    assert client.post("/v1/events", json=EVENT).status_code == 401
    assert client.post("/v1/events", json=EVENT, headers=auth("qry")).status_code == 403
    first = client.post("/v1/events", json=EVENT, headers=auth("ing"))
    again = client.post("/v1/events", json=EVENT, headers=auth("ing"))
    assert (first.status_code, again.status_code) == (201, 200)
    assert first.get_json() == again.get_json()
    assert "cust-9" not in first.get_data(as_text=True)
    conflict = client.post("/v1/events", json={**EVENT, "subject_id": "other"}, headers=auth("ing"))
    assert conflict.status_code == 409 and conflict.get_json()["error"] == "event_conflict"
    bad = client.post(
        "/v1/events", json={**EVENT, "id": "ev-2", "data": {"scope": "spam"}}, headers=auth("ing")
    )
    assert bad.status_code == 400 and bad.get_json()["error"] == "unknown_vocabulary_id"
    assert bad.get_json()["details"]["field"] == "data.scope"
    batch = client.post(
        "/v1/events/batch",
        headers=auth("ing"),
        json={
            "events": [
                EVENT,
                {
                    **EVENT,
                    "id": "ev-3",
                    "type": "objection.withdrawn",
                    "occurred_at": "2026-03-02T10:00:00Z",
                },
            ]
        },
    )
    assert batch.status_code == 201
    assert [e["created"] for e in batch.get_json()["events"]] == [False, True]
    bad_batch = client.post(
        "/v1/events/batch",
        headers=auth("ing"),
        json={"events": [EVENT, {**EVENT, "id": "ev-4", "type": "nope"}]},
    )
    assert bad_batch.status_code == 400 and bad_batch.get_json()["details"]["index"] == 1
    future = client.post(
        "/v1/events",
        headers=auth("ing"),
        json={**EVENT, "id": "ev-future", "occurred_at": "2099-01-01T00:00:00Z"},
    )
    assert future.status_code == 400, future.get_data(as_text=True)
    assert future.get_json()["details"]["field"] == "occurred_at"
    assert "in the future" in future.get_json()["message"]

    view = client.get("/v1/subjects/cust-9", headers=auth("qry"))
    assert view.status_code == 200
    body = view.get_json()
    assert body["objections"] == [] and len(body["history"]) == 2
    assert "cust-9" not in view.get_data(as_text=True)
    assert client.get("/v1/subjects/nobody", headers=auth("qry")).status_code == 404

    receiver.default = 500
    Worker(store, schedule=(), jitter=0).run_once()
    listed = client.get("/v1/hooks/deliveries?status=dead", headers=auth("adm")).get_json()
    [d] = listed["deliveries"]
    assert d["attempts"][0]["status_code"] == 500
    assert client.get("/v1/hooks/deliveries", headers=auth("qry")).status_code == 403
    receiver.default = 200
    retry = client.post(f"/v1/hooks/deliveries/{d['id']}/retry", headers=auth("adm"))
    assert retry.status_code == 200 and retry.get_json()["status"] == "pending"
    assert (
        client.post(f"/v1/hooks/deliveries/{d['id']}/retry", headers=auth("adm")).status_code == 400
    )
    assert client.post("/v1/hooks/deliveries/99999/retry", headers=auth("adm")).status_code == 404
    assert Worker(store, schedule=(), jitter=0).run_once() == 1


def test_signed_ingest(make_store: Any, tmp_path: Path) -> None:
    secret = new_hook_secret()
    client = _app(make_store(), tmp_path, KTI_INBOUND_WEBHOOK_SECRET=secret).test_client()
    raw = json.dumps(EVENT).encode()

    def headers(body: bytes, ts: datetime | None = None) -> dict[str, str]:
        ts = ts or datetime.now(UTC)
        return {
            "content-type": "application/json",
            "webhook-id": "msg_1",
            "webhook-timestamp": str(int(ts.timestamp())),
            "webhook-signature": Webhook(secret).sign("msg_1", ts, body.decode()),
        }

    assert client.post("/v1/events", data=raw, headers=headers(raw)).status_code == 201
    assert client.post("/v1/events", data=raw, headers=headers(raw)).status_code == 200
    respaced = json.dumps(EVENT, indent=2).encode()
    r = client.post("/v1/events", data=respaced, headers=headers(raw))
    assert r.status_code == 401 and r.get_json()["error"] == "unauthorized"
    stale = datetime.fromtimestamp(datetime.now(UTC).timestamp() - 301, UTC)
    assert client.post("/v1/events", data=raw, headers=headers(raw, stale)).status_code == 401
    garbled = {**headers(raw), "webhook-signature": "v1,%%%"}
    assert client.post("/v1/events", data=raw, headers=garbled).status_code == 401
    # an API key is not a substitute for the signature once the secret is set
    assert client.post("/v1/events", json=EVENT, headers=auth("ing")).status_code == 401


@pytest.mark.parametrize("limit", ["0", "x", "5000"])
def test_delivery_listing_limits(make_store: Any, tmp_path: Path, limit: str) -> None:
    client = _app(make_store(), tmp_path).test_client()
    assert client.get(f"/v1/hooks/deliveries?limit={limit}", headers=auth("adm")).status_code == 400
