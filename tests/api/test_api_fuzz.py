"""Fuzzing the HTTP API in process (Flask over WSGI): no input makes a 500, every error is JSON.

- schemathesis drives every operation of the app's own ``/openapi.json`` with schema-conforming and
  schema-violating requests (30 examples per operation, derandomized: the same cases every run;
  ``KTI_FUZZ_EXAMPLES=500 KTI_FUZZ_RANDOM=1`` for a longer hunt).
- hypothesis posts arbitrary JSON (nested objects, wrong types, long strings, any unicode), and
  arbitrary bytes, to ``POST /v1/decisions``, ``/v1/decisions/batch``, ``/v1/events`` and
  ``/v1/events/batch``.

Every answer must be below 500, JSON, and when it is an error, the CONTRACT section 6 body
``{"error": "<code>", "message": "...", "details": {...}}``.
"""

from __future__ import annotations

import atexit
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

REPO = Path(__file__).resolve().parents[2]
POLICIES = REPO / "tests" / "data" / "clean"

pytestmark = pytest.mark.timeout(300)

# KTI_FUZZ_EXAMPLES=500 KTI_FUZZ_RANDOM=1 for a longer, randomized hunt; the default is the CI run
EXAMPLES = int(os.environ.get("KTI_FUZZ_EXAMPLES", "30"))
DERANDOMIZE = not os.environ.get("KTI_FUZZ_RANDOM")

FUZZ_SETTINGS = settings(
    max_examples=EXAMPLES,
    derandomize=DERANDOMIZE,
    deadline=None,
    database=None,
    suppress_health_check=list(HealthCheck),
)


def _make_app() -> Any:
    from kti_policy.api.app import create_app

    tmp = Path(tempfile.mkdtemp(prefix="kti-fuzz-"))
    app = create_app({
        "KTI_POLICY_DIR": str(POLICIES),
        "KTI_INSTANCE_DIR": str(tmp / "instance"),
        "KTI_HOOKS_DIR": str(tmp / "hooks"),
        "KTI_DATABASE_URL": f"sqlite:///{tmp / 'kti.sqlite3'}",
        "KTI_DECISION_LOG": str(tmp / "decisions.jsonl"),
        "KTI_PSEUDONYM_KEY": "fuzz-pseudonym-key-0123456789",
    })

    def cleanup() -> None:
        app.extensions["kti"].close()
        shutil.rmtree(tmp, ignore_errors=True)

    atexit.register(cleanup)
    return app


# One app for the module, made at import: schemathesis parametrizes the test by the operations of
# its /openapi.json while pytest collects (its lazy fixture loader does not work with pytest 9).
APP = _make_app()


@pytest.fixture(scope="module")
def fuzz_app() -> Any:
    return APP


def assert_contract_response(status: int, content_type: str | None, body: bytes, what: str) -> None:
    """Below 500; an error is the JSON error body; a JSON answer parses."""
    assert status < 500, f"{what}: {status} {body[:500]!r}"
    is_json = (content_type or "").split(";")[0].strip() == "application/json"
    if status >= 400:
        assert is_json, f"{what}: error {status} is not JSON ({content_type}): {body[:300]!r}"
        err = json.loads(body)
        assert isinstance(err, dict) and set(err) == {"error", "message", "details"}, (what, err)
        assert isinstance(err["error"], str) and err["error"], (what, err)
        assert isinstance(err["message"], str) and isinstance(err["details"], dict), (what, err)
        assert b"Traceback" not in body, what
    elif is_json:
        json.loads(body)


# --- schemathesis over /openapi.json -------------------------------------------------------------


schema = schemathesis.openapi.from_wsgi("/openapi.json", APP)
schema.config.generation.update(
    modes=[schemathesis.GenerationMode.POSITIVE, schemathesis.GenerationMode.NEGATIVE],
    max_examples=EXAMPLES,
    deterministic=DERANDOMIZE,
)


@schema.parametrize()
@FUZZ_SETTINGS
def test_openapi_operations_never_500(case: Any) -> None:
    response = case.call()
    content_type = (response.headers.get("content-type") or [None])[0]  # lower-case keys, lists
    assert_contract_response(
        response.status_code, content_type, response.content,
        f"{case.method} {case.formatted_path} body={str(getattr(case, 'body', None))[:300]}",
    )


# --- hypothesis: arbitrary JSON to the write endpoints ------------------------------------------

_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=40)
    | st.text(min_size=5_000, max_size=20_000).map(lambda s: s or "x")
    | st.sampled_from(["process", "disclose", "collect", "store_cookie", "subject_request",
                       "access", "email", "health", "authority", "FI", "2026-02-30T25:61:00",
                       "consent.granted", "erasure.requested", "\u0000", "\ud7ff\ufffd", "ä" * 300])
)
_json = st.recursive(
    _scalars,
    lambda inner: st.lists(inner, max_size=6) | st.dictionaries(st.text(max_size=20), inner, max_size=6),
    max_leaves=25,
)
_keys = st.sampled_from(["operation", "purpose", "data_categories", "subject", "recipient",
                         "legal_basis", "source", "request", "at", "id", "type", "subject_id",
                         "occurred_at", "data", "operations", "events"])
# objects shaped like the real bodies: the known keys with arbitrary values, nested once more
_shaped = st.dictionaries(_keys | st.text(max_size=10), _json, max_size=8)
_body = _shaped | _json | st.lists(_shaped, max_size=3).map(lambda ops: {"operations": ops}) \
    | st.lists(_shaped, max_size=3).map(lambda evs: {"events": evs})

ENDPOINTS = ["/v1/decisions", "/v1/decisions/batch", "/v1/events", "/v1/events/batch"]


@pytest.mark.parametrize("path", ENDPOINTS)
@FUZZ_SETTINGS
@given(body=_body, lang=st.sampled_from([None, "fi", "en", "fi-FI;q=0.9, sv;q=0.1", "*", "ä;q=x"]))
def test_random_json_never_500(fuzz_app: Any, path: str, body: Any, lang: str | None) -> None:
    headers = {"Content-Type": "application/json"}
    if lang is not None:
        headers["Accept-Language"] = lang
    data = json.dumps(body, ensure_ascii=False).encode("utf-8", "surrogatepass")
    with fuzz_app.test_client() as client:
        r = client.post(path, data=data, headers=headers)
    assert_contract_response(r.status_code, r.content_type, r.get_data(), f"POST {path} {data[:300]!r}")


@pytest.mark.parametrize("path", ENDPOINTS)
@FUZZ_SETTINGS
@given(raw=st.binary(max_size=200) | st.text(max_size=200).map(lambda s: s.encode("utf-8", "surrogatepass")),
       content_type=st.sampled_from(["application/json", "application/json; charset=latin-1",
                                     "text/plain", "application/x-www-form-urlencoded", None]))
def test_random_bytes_never_500(fuzz_app: Any, path: str, raw: bytes, content_type: str | None) -> None:
    headers = {"Content-Type": content_type} if content_type else {}
    with fuzz_app.test_client() as client:
        r = client.post(path, data=raw, headers=headers)
    assert_contract_response(r.status_code, r.content_type, r.get_data(), f"POST {path} {raw[:200]!r}")


@pytest.mark.parametrize("depth", [300, 100_000])  # 300: deeper than orjson writes, not than it reads
def test_deeply_nested_json_is_a_400_not_a_500(fuzz_app: Any, depth: int) -> None:
    deep = b'{"operation": ' + b"[" * depth + b"]" * depth + b"}"
    with fuzz_app.test_client() as client:
        for path in ENDPOINTS:
            r = client.post(path, data=deep, headers={"Content-Type": "application/json"})
            assert_contract_response(r.status_code, r.content_type, r.get_data(), path)
            assert r.status_code == 400, (path, r.status_code)
