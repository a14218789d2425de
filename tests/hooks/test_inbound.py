"""Inbound Standard Webhooks verification: every bad request is a 401-style error, never a crash."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from conftest import new_hook_secret
from standardwebhooks.webhooks import Webhook

from kti_policy.errors import ConfigError, Unauthorized
from kti_policy.hooks.inbound import parse_inbound_secrets, verify_inbound

BODY = (
    b'{"id": "ev-1", "type": "erasure.requested", "subject_id": "c-1", "occurred_at": "2026-01-01"}'
)


def signed(
    secret: str, body: bytes = BODY, at: datetime | None = None, msg_id: str = "msg_1"
) -> dict[str, str]:
    at = at or datetime.now(UTC)
    return {
        "Webhook-Id": msg_id,
        "Webhook-Timestamp": str(int(at.timestamp())),
        "Webhook-Signature": Webhook(secret).sign(msg_id, at, body.decode()),
    }


def test_valid_signature_passes_and_rotation_accepts_either() -> None:
    old, new = new_hook_secret(), new_hook_secret()
    verify_inbound(old, signed(old), BODY)
    verify_inbound(f"{new} {old}", signed(old), BODY)
    verify_inbound(f"{new},{old}", signed(new), BODY)


def _bad(secret: str, headers: dict[str, str], body: bytes = BODY) -> str:
    with pytest.raises(Unauthorized) as exc:
        verify_inbound(secret, headers, body)
    assert exc.value.code == "unauthorized"
    return exc.value.message


def test_reserialised_body_is_rejected() -> None:
    s = new_hook_secret()
    reserialised = json.dumps(json.loads(BODY), separators=(",", ":")).encode()
    assert "no matching signature" in _bad(s, signed(s), reserialised).lower()


@pytest.mark.parametrize("offset", [301, -301, 3600])
def test_stale_or_future_timestamp_is_rejected(offset: int) -> None:
    s = new_hook_secret()
    at = datetime.now(UTC) - timedelta(seconds=offset)
    assert "timestamp" in _bad(s, signed(s, at=at))


def test_within_tolerance_passes() -> None:
    s = new_hook_secret()
    verify_inbound(s, signed(s, at=datetime.now(UTC) - timedelta(seconds=290)), BODY)


def test_wrong_secret_missing_and_malformed_headers() -> None:
    s = new_hook_secret()
    _bad(new_hook_secret(), signed(s))
    assert "webhook-signature" in _bad(s, {"webhook-id": "m", "webhook-timestamp": "1"})
    h = signed(s)
    for sig in ("v1", "v1,not*base64", "v1,a,b", ""):
        _bad(s, {**h, "Webhook-Signature": sig})
    _bad(s, {**h, "Webhook-Timestamp": "yesterday"})
    _bad(s, h, b"\xff\xfe not utf-8")


def test_secret_format_is_checked() -> None:
    with pytest.raises(ConfigError):
        parse_inbound_secrets("v1,abc")
    assert len(parse_inbound_secrets(new_hook_secret())) == 1
