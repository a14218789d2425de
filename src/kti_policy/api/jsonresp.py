"""JSON out, through orjson: the same bytes Flask's default provider writes as this app sets it up.

The app answers with ``sort_keys=False`` and ``ensure_ascii=False``, compact, one newline at the end
(``flask.json.provider.DefaultJSONProvider.response``). orjson writes exactly that for the types
our answers and log lines hold (str keys; str, int, bool, None, lists, dicts) in a fraction of the
time; a decision's answer and its log line were a measurable part of a request (issue 14).
Everything else keeps Flask's meaning: datetimes and dataclasses go to the provider's ``default``
(HTTP dates, ``asdict``) as before, debug mode's indented answers and whatever orjson refuses (an
int beyond 64 bits, a float NaN) are written by the standard library. ``tests/api/test_jsonresp.py``
compares both ways on generated values.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any

import orjson
from flask.json.provider import DefaultJSONProvider

from kti_policy.facts.fold import FactsJSON

_OPTIONS = orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_PASSTHROUGH_DATACLASS | orjson.OPT_PASSTHROUGH_SUBCLASS


class FastJSONProvider(DefaultJSONProvider):
    """Flask's JSON provider with ``response`` (``jsonify``) written by orjson."""

    sort_keys = False
    ensure_ascii = False

    def response(self, *args: Any, **kwargs: Any) -> Any:
        if (self.compact is None and self._app.debug) or self.compact is False:
            return super().response(*args, **kwargs)
        obj = self._prepare_response_obj(args, kwargs)
        try:
            body = orjson.dumps(obj, default=self.default, option=_OPTIONS | orjson.OPT_APPEND_NEWLINE)
        except (TypeError, orjson.JSONEncodeError):
            return super().response(*args, **kwargs)
        make: Any = self._app.response_class  # flask.Response: takes the body's bytes
        return make(body, mimetype=self.mimetype)


def dumps_line(record: Mapping[str, Any], default: Callable[[Any], Any] = str) -> str:
    """One compact JSON line, UTF-8, keys in their order: ``json.dumps(record, ensure_ascii=False,
    separators=(",", ":"), default=default)``, by orjson where it can. A ``FactsJSON`` in it is
    written as its facts' dict would be (orjson: its kept text; the fallback: the dict)."""
    return line_bytes(record, default)[:-1].decode()


def line_bytes(record: Mapping[str, Any], default: Callable[[Any], Any] = str) -> bytes:
    """``dumps_line(record) + "\n"`` as UTF-8 bytes, what a log file gets: orjson writes bytes,
    so the line is not decoded to text to be encoded again."""
    try:
        return orjson.dumps(
            record, default=_FAST_DEFAULTS.get(default) or _fast(default), option=_OPTIONS | orjson.OPT_APPEND_NEWLINE
        )
    except (TypeError, orjson.JSONEncodeError):
        text = json.dumps(record, ensure_ascii=False, separators=(",", ":"), default=_slow(default))
        return (text + "\n").encode("utf-8")


def _fast(default: Callable[[Any], Any]) -> Callable[[Any], Any]:
    def fast(value: Any) -> Any:
        return value.fragment if type(value) is FactsJSON else default(value)

    return fast


def _slow(default: Callable[[Any], Any]) -> Callable[[Any], Any]:
    def slow(value: Any) -> Any:
        return value.facts.to_dict() if type(value) is FactsJSON else default(value)

    return slow


_FAST_DEFAULTS: dict[Callable[[Any], Any], Callable[[Any], Any]] = {str: _fast(str)}
