"""Keyed pseudonyms: stable, key-dependent, key file created once (0600) and shared."""

from __future__ import annotations

import stat
import threading
from pathlib import Path

import pytest

from kti_policy.errors import ConfigError
from kti_policy.store.pseudonym import Pseudonymizer, pseudonymizer_from_config


def test_stable_and_keyed() -> None:
    a, b = Pseudonymizer("key-one-0123456789"), Pseudonymizer("key-two-0123456789")
    assert a.subject_key("c-1") == a.subject_key("c-1")
    assert a.subject_key("c-1") != a.subject_key("c-2")
    assert a.subject_key("c-1") != b.subject_key("c-1")
    assert a.subject_key("c-1").startswith("hs_") and len(a.subject_key("c-1")) == 67
    assert "key-one" not in repr(a)
    with pytest.raises(ConfigError):
        Pseudonymizer("")


def test_the_pseudonym_is_hmac_sha256_of_the_id() -> None:
    """Stored events are keyed by it: any other function would orphan every recorded fact."""
    import hashlib
    import hmac

    p = Pseudonymizer("key-one-0123456789")
    for clear in ("c-1", "cust-4711", "ääkkönen@example.fi", ""):
        want = hmac.new(b"key-one-0123456789", clear.encode("utf-8"), hashlib.sha256).hexdigest()
        assert p.subject_key(clear) == "hs_" + want
    assert p.subject_key("c-1") == "hs_" + hmac.new(b"key-one-0123456789", b"c-1", hashlib.sha256).hexdigest()
    long_key = "k" * 100 + "ä"  # longer than SHA-256's block: HMAC hashes the key first
    assert Pseudonymizer(long_key).subject_key("c-1") == "hs_" + hmac.new(
        long_key.encode("utf-8"), b"c-1", hashlib.sha256
    ).hexdigest()
    assert Pseudonymizer(b"\x00raw").subject_key("x" * 10_000) == "hs_" + hmac.new(
        b"\x00raw", b"x" * 10_000, hashlib.sha256
    ).hexdigest()


def test_env_key_wins(tmp_path: Path) -> None:
    p = pseudonymizer_from_config(
        {"KTI_PSEUDONYM_KEY": "k" * 32, "KTI_INSTANCE_DIR": str(tmp_path)}
    )
    assert p.subject_key("x") == Pseudonymizer("k" * 32).subject_key("x")
    assert not (tmp_path / "pseudonym.key").exists()


def test_generated_once_private_and_shared(tmp_path: Path) -> None:
    config = {"KTI_INSTANCE_DIR": str(tmp_path / "instance")}
    keys: list[str] = []

    def start() -> None:
        keys.append(pseudonymizer_from_config(config).subject_key("c-1"))

    threads = [threading.Thread(target=start) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(set(keys)) == 1
    path = tmp_path / "instance" / "pseudonym.key"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert pseudonymizer_from_config(config).subject_key("c-1") == keys[0]
    assert [p.name for p in path.parent.iterdir()] == ["pseudonym.key"]  # no temp files left
