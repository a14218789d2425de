"""Request logs never keep a clear subject id from the URL."""

from __future__ import annotations

import logging

import pytest

from kti_policy.api.redact import REDACTED, SubjectPathFilter, install, redact


@pytest.mark.parametrize(
    ("line", "want"),
    [
        ('"GET /v1/subjects/c-1001 HTTP/1.1" 200', f'"GET /v1/subjects/{REDACTED} HTTP/1.1" 200'),
        ("GET /v1/subjects/ä%20b?x=1", f"GET /v1/subjects/{REDACTED}?x=1"),
        ("POST /v1/decisions", "POST /v1/decisions"),
    ],
)
def test_redact(line: str, want: str) -> None:
    assert redact(line) == want


def test_filter_rewrites_werkzeug_style_records(caplog: pytest.LogCaptureFixture) -> None:
    logger = logging.getLogger("kti-test-werkzeug")
    install(logger.name)
    install(logger.name)  # idempotent
    assert sum(isinstance(f, SubjectPathFilter) for f in logger.filters) == 1
    with caplog.at_level(logging.INFO, logger=logger.name):
        logger.info('%s - - "%s" %s', "127.0.0.1", "GET /v1/subjects/secret-id-42 HTTP/1.1", "200")
    assert "secret-id-42" not in caplog.text
    assert f"/v1/subjects/{REDACTED}" in caplog.text
