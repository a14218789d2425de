"""Reading request bodies (api.schemas): orjson's fast parse answers exactly as the standard
library's parse with the repeated-key check does, on generated texts and on the known edges."""

from __future__ import annotations

import json
import math
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kti_policy.api import schemas
from kti_policy.api.schemas import _DuplicateKeys, _parse_json, _parse_json_stdlib
from kti_policy.errors import RequestError


def canon(value: Any) -> Any:
    """A comparable form: types kept (int vs float, a marked object and its repeated key)."""
    if isinstance(value, dict):
        mark = value.duplicate if isinstance(value, _DuplicateKeys) else None
        return ("obj", mark, [(k, canon(v)) for k, v in value.items()])
    if isinstance(value, list):
        return ("arr", [canon(v) for v in value])
    if isinstance(value, float):
        return ("float", "nan" if math.isnan(value) else repr(value))
    return (type(value).__name__, value)


def outcome(parse: Any, raw: bytes) -> Any:
    try:
        body, repeated = parse(raw)
    except RequestError as err:
        return ("error", err.message, err.details)
    return ("ok", canon(body), repeated)


WS = st.sampled_from(["", " ", "\n", "\t", "\r\n ", "  "])
KEYS = st.text(alphabet='ab":\\ é\u2028', max_size=4)
SCALARS = (
    st.none() | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(alphabet='ab":\\{}[], é\x00\u2028', max_size=6)
    | st.sampled_from(["NaN", "Infinity", "1e400", "-0", "1.0", "12345678901234567890123"]).map(lambda t: ("raw", t))
)


def objects(children: Any) -> Any:
    return st.lists(st.tuples(KEYS, children), max_size=4).map(lambda pairs: ("obj", pairs))


VALUES = st.recursive(SCALARS, lambda children: st.lists(children, max_size=4) | objects(children), max_leaves=12)


@st.composite
def texts(draw: Any) -> bytes:
    """JSON text of a drawn value, with drawn whitespace, escaping and (through repeated drawn
    keys) repeated keys; sometimes a key repeated on purpose."""

    def write(v: Any) -> str:
        ws = draw(WS)
        if isinstance(v, tuple) and v[0] == "raw":
            return v[1]
        if isinstance(v, tuple) and v[0] == "obj":
            pairs = list(v[1])
            if pairs and draw(st.booleans()):
                pairs.append((pairs[0][0], pairs[-1][1]))  # a repeated key
            inner = ("," + draw(WS)).join(
                f"{json.dumps(k, ensure_ascii=draw(st.booleans()))}{draw(WS)}:{draw(WS)}{write(x)}" for k, x in pairs
            )
            return "{" + ws + inner + draw(WS) + "}"
        if isinstance(v, list):
            return "[" + ws + ",".join(write(x) for x in v) + "]"
        if isinstance(v, float):
            return json.dumps(v)  # NaN / Infinity too: the standard library reads them
        return json.dumps(v, ensure_ascii=draw(st.booleans()))

    top = ("obj", draw(st.lists(st.tuples(KEYS, VALUES), max_size=5))) if draw(st.booleans()) else draw(VALUES)
    return write(top).encode()


@settings(max_examples=800, deadline=None)
@given(texts())
def test_the_fast_parse_answers_as_the_standard_library(raw: bytes) -> None:
    assert outcome(_parse_json, raw) == outcome(_parse_json_stdlib, raw)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=40) | st.binary(max_size=20).map(lambda b: b'{"a":' + b + b"}"))
def test_any_bytes_answer_as_the_standard_library(raw: bytes) -> None:
    assert outcome(_parse_json, raw) == outcome(_parse_json_stdlib, raw)


@pytest.mark.parametrize(
    "raw",
    [
        b'{"a":1,"a":2}',  # repeated: orjson would keep 2 silently
        b'{"a" :1, "a": 2}',
        b'{"x":"\\":","a":1,"a":2}',  # an escape: the standard parser decides
        b'{"x":"\\u0022:","a":1,"a":2}', b'{"a":0,"a":"\\u0022"}', b'{"a":"x","a":"y"}',
        b'{"n":123456789012345678901234567890}',  # orjson would make a float of it
        b'{"n":-9223372036854775809}',
        b'{"x":1e400}', b'{"x":NaN}', b"\xef\xbb\xbf{}", b'{"x":"\\ud800"}', b'{"\xed\xa0\x80":1}',
        '{"a":1}'.encode("utf-16"), b'"\xc3"', b"[" * 5000, b"{}", b'{"a":{"b":[{"c":1}]}}',
        # nested deeper than orjson writes (254) or reads (1024): the standard parser decides
        b'{"a":' + b"[" * 300 + b"]" * 300 + b"}", b'{"a":' + b"[" * 1100 + b"]" * 1100 + b"}",
    ],
)
def test_known_edges(raw: bytes) -> None:
    assert outcome(_parse_json, raw) == outcome(_parse_json_stdlib, raw)


def test_plain_bodies_take_the_fast_parse(monkeypatch: pytest.MonkeyPatch) -> None:
    slow: list[bytes] = []
    real = schemas._parse_json_stdlib
    monkeypatch.setattr(schemas, "_parse_json_stdlib", lambda raw: slow.append(raw) or real(raw))
    assert _parse_json(b'{"operation": "disclose", "subject": {"id": "c-1"}, "at": "2026-03-02T10:00:00Z"}')[0]["at"]
    assert slow == []
    assert _parse_json(b'{"a": 0.5, "b": [1e-3, -2]}')[0] == {"a": 0.5, "b": [0.001, -2]}
    assert slow == []  # floats too: orjson's are correctly rounded
    _parse_json(b'{"a":1,"a":2}')
    _parse_json(b'{"a":"line\\nbreak"}')
    _parse_json(b'{"a":1234567890123456789}')
    assert len(slow) == 3


# --- reading the body -------------------------------------------------------------------------


def _body_app() -> Any:
    from flask import Flask, request

    app = Flask("body")
    app.config["MAX_CONTENT_LENGTH"] = 64

    @app.post("/ours")
    def ours() -> Any:
        raw = schemas.request_body()
        return {"raw": raw.decode(), "again": request.get_data().decode(), "stream": "stream" in request.__dict__}

    @app.post("/werkzeug")
    def theirs() -> Any:
        raw = request.get_data()
        return {"raw": raw.decode(), "again": request.get_data().decode()}

    @app.post("/after-get-data")
    def after() -> Any:
        first = request.get_data()
        return {"raw": schemas.request_body().decode(), "same": schemas.request_body() is first}

    return app.test_client()


@pytest.mark.parametrize(
    ("data", "environ"),
    [
        (b'{"a": 1}', {}),
        (b"", {}),
        (b"x" * 64, {}),  # at the limit
        (b"x" * 65, {}),  # over: 413
        (b'{"a": 1}', {"CONTENT_LENGTH": "100"}),  # fewer bytes than declared: 400
        (b'{"a": 1}', {"CONTENT_LENGTH": "4"}),  # more: the declared length is read
        (b'{"a": 1}', {"CONTENT_LENGTH": "x1"}),
        (b'{"a": 1}', {"CONTENT_LENGTH": "\u0661"}),  # an Arabic-Indic one: not ours to read
    ],
)
def test_the_body_is_what_werkzeug_reads(data: bytes, environ: dict[str, str]) -> None:
    client = _body_app()
    ours = client.post("/ours", data=data, environ_overrides=environ)
    theirs = client.post("/werkzeug", data=data, environ_overrides=environ)
    assert ours.status_code == theirs.status_code
    if theirs.status_code == 200:
        assert ours.get_json()["raw"] == ours.get_json()["again"] == theirs.get_json()["raw"]
        declared = environ.get("CONTENT_LENGTH", str(len(data)) if data else "")  # no body: no length sent
        assert ours.get_json()["stream"] is not (declared.isascii() and declared.isdigit())  # direct: no stream


def test_a_body_read_before_is_the_one_answered() -> None:
    """Signature checks read the bytes first (events); the body is then those bytes."""
    got = _body_app().post("/after-get-data", data=b'{"a": 1}').get_json()
    assert got == {"raw": '{"a": 1}', "same": True}
