"""jsonresp: orjson writes the bytes Flask's default provider (as the app sets it up) and the
standard library write, for the values answers and log lines hold, and falls back where it cannot."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from flask import Flask
from flask.json.provider import DefaultJSONProvider
from hypothesis import given, settings
from hypothesis import strategies as st

from kti_policy.api.jsonresp import FastJSONProvider, dumps_line, line_bytes
from kti_policy.facts.fold import SubjectFacts

# what our answers and log lines are made of: str keys; str (any unicode), int, bool, None
scalars = st.none() | st.booleans() | st.integers(min_value=-(2**63), max_value=2**63 - 1) | st.text()
values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
                      max_leaves=20)


def _apps() -> tuple[Flask, Flask]:
    fast, plain = Flask("fast"), Flask("plain")
    fast.json = FastJSONProvider(fast)
    plain.json = DefaultJSONProvider(plain)
    plain.json.sort_keys = False  # type: ignore[attr-defined]  # the app's settings before orjson
    plain.json.ensure_ascii = False  # type: ignore[attr-defined]
    return fast, plain


FAST, PLAIN = _apps()


@settings(max_examples=400, deadline=None)
@given(obj=st.dictionaries(st.text(), values, max_size=6))
def test_jsonify_bytes_are_those_of_flask_default_provider(obj: dict[str, Any]) -> None:
    with FAST.app_context():
        fast = FAST.json.response(obj).get_data()
    with PLAIN.app_context():
        plain = PLAIN.json.response(obj).get_data()
    assert fast == plain


@settings(max_examples=400, deadline=None)
@given(obj=st.dictionaries(st.text(), values, max_size=6))
def test_log_lines_are_those_of_json_dumps(obj: dict[str, Any]) -> None:
    assert dumps_line(obj) == json.dumps(obj, ensure_ascii=False, separators=(",", ":"), default=str)
    assert line_bytes(obj) == (dumps_line(obj) + "\n").encode("utf-8")


@dataclass
class _Point:
    x: int


def test_other_types_keep_flask_and_stdlib_meaning() -> None:
    """Datetimes, dataclasses and what orjson refuses (a 70-bit int, NaN) come out as before."""
    when = datetime(2026, 12, 4, 10, 0, tzinfo=UTC)
    odd = {"at": when, "p": _Point(1), "big": 2**70, "nan": float("nan")}
    with FAST.app_context():
        fast = FAST.json.response(odd).get_data()
    with PLAIN.app_context():
        plain = PLAIN.json.response(odd).get_data()
    assert fast == plain and b"Fri, 04 Dec 2026 10:00:00 GMT" in fast
    for record in ({"at": when, "p": _Point(1)}, {"big": 2**70}):
        assert dumps_line(record) == json.dumps(record, ensure_ascii=False, separators=(",", ":"), default=str)


def test_debug_mode_still_indents() -> None:
    app = Flask("dbg")
    app.json = FastJSONProvider(app)
    app.debug = True
    with app.app_context():
        assert app.json.response({"a": 1}).get_data() == b'{\n  "a": 1\n}\n'


FACTS = SubjectFacts.from_dict({
    "consents": ["marketing_email"], "objections": ["direct_marketing"], "relationship": "ended",
    "erasure_requested": True, "kind": "consumer", "relationship_ended_at": "2026-03-01T10:00:00+00:00",
    "consents_at": {"marketing_email": "2025-01-02T03:04:05+00:00"}, "access_requests": ["2026-01-05T00:00:00+00:00"],
})


@settings(max_examples=200, deadline=None)
@given(obj=st.dictionaries(st.text(), values, max_size=4), big=st.booleans())
def test_facts_kept_as_json_text_write_the_line_their_dict_writes(obj: dict[str, Any], big: bool) -> None:
    """``SubjectFacts.log_json`` in a record: the same line as the facts' dict, through orjson and
    through the standard library's fallback (a 70-bit int sends the whole line there)."""
    extra = {"big": 2**70} if big else {}
    with_text = {**obj, "facts": FACTS.log_json, **extra}
    with_dict = {**obj, "facts": FACTS.to_dict(), **extra}
    assert dumps_line(with_text) == json.dumps(with_dict, ensure_ascii=False, separators=(",", ":"), default=str)
    assert line_bytes(with_text) == (dumps_line(with_dict) + "\n").encode("utf-8")
    assert FACTS.log_json is FACTS.log_json  # written once per facts object
