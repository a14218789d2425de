"""Hook files: positions for every problem, secrets checked, unset secrets skipped."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import pytest
from conftest import new_hook_secret

from kti_policy.errors import ConfigError, PolicyErrors
from kti_policy.hooks.subscriptions import (
    active_subscriptions,
    check_hooks,
    load_subscriptions,
    parse_secret,
)

REPO = Path(__file__).resolve().parents[2]


def write(tmp_path: Path, text: str, name: str = "h.yaml") -> Path:
    (tmp_path / name).write_text(text)
    return tmp_path


def test_shipped_example_loads_and_warns_without_secret() -> None:
    [sub] = load_subscriptions(REPO / "hooks")
    assert sub.id == "example-receiver" and sub.url == "http://127.0.0.1:9000/kti"
    assert sub.events == {
        "objection.registered",
        "consent.withdrawn",
        "erasure.requested",
        "relationship.ended",
    }
    [warning] = check_hooks(REPO / "hooks", {})
    assert warning.severity == "warning" and warning.code == "secret_env_unset"
    assert "KTI_HOOK_SECRET_EXAMPLE" in str(warning)


def test_missing_folder_and_comment_only_file_mean_no_subscriptions(tmp_path: Path) -> None:
    assert load_subscriptions(tmp_path / "nope") == []
    assert load_subscriptions(write(tmp_path, "# nothing yet\n")) == []


@pytest.mark.parametrize(
    ("text", "code", "line", "col"),
    [
        ("subscriptions: [\n", "policy_parse_error", 2, 1),
        ("subscription: []\n", "unknown_key", 1, 1),
        (
            (
                "subscriptions:\n  - id: a\n    url: http://h/\n    events: [erasure.requested]\n"
                "    secret_env: S\n    retries: 3\n"
            ),
            "unknown_key",
            6,
            5,
        ),
        (
            (
                "subscriptions:\n  - id: a\n    url: ftp://h/\n    events: [erasure.requested]\n"
                "    secret_env: S\n"
            ),
            "bad_url",
            3,
            10,
        ),
        (
            (
                "subscriptions:\n  - id: a\n    url: http://h/\n    events: [erasure.requested, "
                "subject.deleted]\n    secret_env: S\n"
            ),
            "unknown_event_type",
            4,
            33,
        ),
        (
            "subscriptions:\n  - id: a\n    url: http://h/\n    events: [erasure.requested]\n",
            "missing_key",
            2,
            5,
        ),
        (
            (
                "subscriptions:\n  - id: a\n    url: http://h/\n    events: [erasure.requested]\n"
                "    secret_env: S\n  - id: a\n    url: http://h/\n    events: [erasure.requested]\n"
                "    secret_env: S\n"
            ),
            "duplicate_subscription",
            6,
            5,
        ),
        ("subscriptions:\n  - id: a\n    id: b\n", "duplicate_key", 3, 5),
    ],
)
def test_problems_have_positions(tmp_path: Path, text: str, code: str, line: int, col: int) -> None:
    folder = write(tmp_path, text)
    with pytest.raises(PolicyErrors) as exc:
        load_subscriptions(folder)
    found = [(e.code, e.position.line, e.position.col) for e in exc.value.errors]
    assert (code, line, col) in found, found
    assert str(tmp_path / "h.yaml") in str(exc.value)


@pytest.mark.parametrize(
    ("value", "says"),
    [
        ("v1,K5oZfzN95Z9UVu1EsfQmfVNQhnkZ2pj9o9NDN/H/pI4=", "signature"),
        ("my-shared-secret", "whsec_"),
        ("whsec_not base64!", "base64"),
        ("whsec_" + base64.b64encode(b"short").decode(), "5 bytes"),
    ],
)
def test_bad_secrets_say_what_is_wrong(value: str, says: str, tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as exc:
        parse_secret(value, "KTI_HOOK_SECRET_X")
    assert says in exc.value.message and "KTI_HOOK_SECRET_X" in exc.value.message
    errors = check_hooks(REPO / "hooks", {"KTI_HOOK_SECRET_EXAMPLE": value})
    assert [e.code for e in errors] == ["bad_secret"] and errors[0].severity == "error"


def test_unset_secret_skips_the_subscriber(caplog: Any) -> None:
    subs = load_subscriptions(REPO / "hooks")
    assert active_subscriptions(subs, {}) == []
    assert "KTI_HOOK_SECRET_EXAMPLE is not set" in caplog.text
    secret = new_hook_secret()
    [active] = active_subscriptions(subs, {"KTI_HOOK_SECRET_EXAMPLE": secret})
    assert active.secret == base64.b64decode(secret[6:])
    assert secret not in repr(active)
