"""Keyed pseudonyms for subject ids.

Facts, history and the decision log key a data subject by ``HMAC-SHA256(key, clear id)``, never by the
clear id. Without the key the pseudonym cannot be reversed by hashing guessed customer ids; with it the
same subject always gets the same pseudonym, so facts can be looked up.

The key comes from ``KTI_PSEUDONYM_KEY`` (any non-empty string; 32+ random characters recommended).
When it is unset, a random key is generated once and kept in ``<instance>/pseudonym.key`` (mode 0600;
``KTI_INSTANCE_DIR``, default ``./instance``); every later start, in any process, reads that file.
Losing the key means losing the link between clear ids and recorded facts: back the file up with the
database. Nothing here reads the environment: callers pass a config mapping.
"""

from __future__ import annotations

import hmac
import logging
import os
import secrets
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from kti_policy.errors import ConfigError

log = logging.getLogger(__name__)

KEY_FILE_NAME = "pseudonym.key"
PREFIX = "hs_"


class Pseudonymizer:
    """Turns clear subject ids into stable keyed hashes (``hs_`` + 64 hex digits)."""

    def __init__(self, key: bytes | str) -> None:
        raw = key.encode("utf-8") if isinstance(key, str) else bytes(key)
        if not raw:
            raise ConfigError("the pseudonym key must not be empty")
        self._key = raw

    def subject_key(self, clear_id: str) -> str:
        # hmac.digest: the one-shot HMAC (OpenSSL's when there), the same bytes as hmac.new's; 1.9 us
        # against 2.7 for copying a keyed HMAC object (measured), once per subject of a decision
        return PREFIX + hmac.digest(self._key, clear_id.encode("utf-8"), "sha256").hex()

    def __repr__(self) -> str:  # never show the key
        return "Pseudonymizer(<key>)"


def instance_dir(config: Mapping[str, Any]) -> Path:
    return Path(str(config.get("KTI_INSTANCE_DIR") or "instance"))


def pseudonymizer_from_config(config: Mapping[str, Any]) -> Pseudonymizer:
    """``KTI_PSEUDONYM_KEY`` if set, else the key file in the instance folder (created once)."""
    key = config.get("KTI_PSEUDONYM_KEY")
    if key:
        if len(str(key)) < 16:
            log.warning("KTI_PSEUDONYM_KEY is shorter than 16 characters: pseudonyms are weak")
        return Pseudonymizer(str(key))
    return Pseudonymizer(load_or_create_key_file(instance_dir(config) / KEY_FILE_NAME))


def load_or_create_key_file(path: Path) -> bytes:
    """Read the key file, or create it atomically (0600) when missing.

    Several processes may start at once (gunicorn workers, the deliver process): the key is written to
    a private temporary file and hard-linked into place, so a reader never sees a half-written key and
    exactly one key wins.
    """
    if not path.exists():
        from .fileperms import private_dir

        private_dir(path.parent)
        tmp = path.with_name(f".{path.name}.{secrets.token_hex(8)}")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(fd, "w") as fh:
                fh.write(secrets.token_hex(32) + "\n")
                fh.flush()
                os.fsync(fh.fileno())
            try:
                os.link(tmp, path)
                log.warning(
                    "generated a new pseudonym key in %s: back it up with the database", path
                )
            except FileExistsError:
                pass  # another process won the race; use its key
        finally:
            tmp.unlink(missing_ok=True)
    text = path.read_text(encoding="utf-8").strip()
    if not text:
        raise ConfigError(f"the pseudonym key file {path} is empty")
    return bytes.fromhex(text) if _is_hex(text) else text.encode("utf-8")


def _is_hex(text: str) -> bool:
    try:
        bytes.fromhex(text)
    except ValueError:
        return False
    return True
