"""Outbox bodies: the bytes sent to subscribers, and their sealing at rest (the body
is the only place the clear subject id exists, so it never reaches the files unsealed).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
from datetime import datetime

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from .tables import _iso
from .validation import NewEvent


def webhook_body(ev: NewEvent, seq: int, now: datetime) -> bytes:
    """The bytes sent to subscribers (signed per attempt, stored once, sent as stored)."""
    payload = {
        "type": ev.type,
        "timestamp": _iso(now),
        "data": {
            "subject_id": ev.subject_id,
            "occurred_at": _iso(ev.occurred_at),
            "sequence": seq,
            **ev.data,
        },
    }
    return json.dumps(payload, separators=(",", ":")).encode("utf-8")


class BodySealer:
    """Encrypts outbox bodies at rest with AES-256-GCM (``cryptography``), under a key derived from
    the pseudonym key, which every process of a deployment already shares. A removed body can
    linger in free pages, WAL frames or dead PostgreSQL row versions; sealed, it holds no clear id.
    ``open`` passes through a body stored before sealing existed (it lacks ``MAGIC``)."""

    MAGIC = b"\x00kti-sealed-2\x00"  # a JSON body never starts with NUL

    def __init__(self, key: bytes) -> None:
        self._aead = AESGCM(hmac.new(key, b"kti-policy outbox bodies v2", hashlib.sha256).digest())

    def seal(self, body: bytes) -> bytes:
        nonce = secrets.token_bytes(12)
        return self.MAGIC + nonce + self._aead.encrypt(nonce, body, self.MAGIC)

    def open(self, stored: bytes) -> bytes:
        """The body; ``ValueError`` when it was sealed under another key or altered."""
        if not stored.startswith(self.MAGIC):
            return stored
        rest = stored[len(self.MAGIC) :]
        try:
            return self._aead.decrypt(rest[:12], rest[12:], self.MAGIC)
        except InvalidTag:
            raise ValueError("the stored webhook body does not authenticate under this key") from None
