"""Verify Standard Webhooks signatures on incoming event posts (``KTI_INBOUND_WEBHOOK_SECRET``).

``verify_inbound(secret, headers, raw_body)`` checks ``webhook-id``, ``webhook-timestamp`` (within
+-300 s of now) and ``webhook-signature`` over the *raw request bytes* (never re-serialised JSON) and
raises ``Unauthorized`` (401) with a clear message on any problem, including malformed headers, which
the ``standardwebhooks`` library reports as ``ValueError``/``binascii.Error`` rather than its own error.

``secret`` may hold several ``whsec_`` secrets separated by spaces or commas (rotation: the old and the
new one are both accepted during a grace period); ``parse_inbound_secrets`` checks the format up front
and raises ``ConfigError`` naming what is wrong.
"""

from __future__ import annotations

import binascii
import re
from collections.abc import Mapping, Sequence
from typing import Any

from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from kti_policy.errors import Unauthorized

from .subscriptions import parse_secret

ENV_NAME = "KTI_INBOUND_WEBHOOK_SECRET"


def parse_inbound_secrets(value: str | bytes | Sequence[bytes]) -> list[bytes]:
    """Decoded secrets from ``"whsec_a whsec_b"`` (or already decoded bytes)."""
    if isinstance(value, bytes):
        return [value]
    if isinstance(value, str):
        return [parse_secret(part, ENV_NAME) for part in re.split(r"[\s,]+", value.strip()) if part]
    return list(value)


def verify_inbound(
    secret: str | bytes | Sequence[bytes], headers: Mapping[str, str] | Any, raw_body: bytes
) -> None:
    """Raise ``Unauthorized`` unless the request is signed with (one of) the secret(s), recently."""
    secrets_ = parse_inbound_secrets(secret)
    lowered = {str(k).lower(): str(v) for k, v in headers.items()}
    wanted: dict[str, str] = {
        k: lowered[k]
        for k in ("webhook-id", "webhook-timestamp", "webhook-signature")
        if k in lowered
    }
    if len(wanted) < 3:
        missing = sorted({"webhook-id", "webhook-timestamp", "webhook-signature"} - set(wanted))
        raise Unauthorized(
            f"missing webhook signature header(s): {', '.join(missing)}",
            {"missing_headers": missing},
        )
    problem = "no matching signature"
    for key in secrets_:
        try:
            Webhook(key).verify(raw_body, wanted, json_parse=False)
            return
        except WebhookVerificationError as exc:
            problem = str(exc) or problem
        except (ValueError, binascii.Error, TypeError):
            problem = "malformed webhook-signature or webhook-timestamp header"
    raise Unauthorized(
        f"webhook signature rejected: {problem} (the signature covers the raw body, "
        "webhook-id and webhook-timestamp, which must be within 300 s of now)",
        {"reason": problem},
    )
