"""The only module that touches durable-rules.

We call durable-rules' C core (``durable_rules_engine``, shipped by the durable-rules package) and
not its Python ``Host``, because of what we measured and read there:
- the ``Host`` keeps one global registry, cannot re-register a name, and starts timer threads that
  dispatch queued actions outside any lock of ours;
- it runs each fired rule through a Python action: the state and the message parsed from JSON, a
  closure, a promise, the state written back as JSON. That was most of a decision's cost.
So we
- register each compiled ruleset once, under its content-hash name, under a lock (a reload with the
  same content reuses it; new content gets a new name);
- evaluate by *asserting a fact* (every matching rule fires) in one state (sid "0"), reading the
  fired rules' names from the action queue (each entry is ``{"<rule>": {...}}``), and retracting
  the same JSON straight after, all under the same lock;
- and, since one condition may hold only so many expressions (error 113) and ``compile`` splits
  rules into parts to stay under it, check a rule's parts on their own (``fits``) so that a rule
  still too complex is named with its position by ``kti-policy check`` and a reload, not found
  when serving.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import threading
from typing import Any

import durable_rules_engine as _core
import orjson

from kti_policy.errors import EvalError

from .compile import CompiledRuleset

_LOCK = threading.RLock()  # the C core is not thread-safe: every call into it holds this
_HANDLES: dict[str, int] = {}  # ruleset name -> the core's handle
_IDS = itertools.count(1)
_SID = "0"
# what the core's assert/retract answer in their first element (durable/engine.py _handle_result)
_HANDLED, _NOT_HANDLED = 0, 1


def _register(name: str, rules: dict[str, Any]) -> int:
    """The core's handle of ruleset ``name`` (created on first use). Call under ``_LOCK``."""
    handle = _HANDLES.get(name)
    if handle is None:
        try:
            handle = _core.create_ruleset(name, json.dumps(rules, ensure_ascii=False))
        except Exception as exc:  # the core raises bare Exception with an error code
            raise EvalError(f"durable-rules rejected ruleset {name}: {exc}") from exc
        _HANDLES[name] = handle
    return handle


def _rule_of(message: str, known: Any) -> str:
    """The rule name of one queued action, ``{"<rule>":{"m":{...}}}``, without parsing the fact."""
    if message.startswith('{"'):
        end = message.find('"', 2)
        name = message[2:end]
        if name in known:
            return name
    parsed = json.loads(message)  # a name the shortcut cannot read (never ours): parse it all
    return str(next(iter(parsed)))


class Engine:
    """Matches flat facts against one compiled ruleset."""

    def __init__(self, compiled: CompiledRuleset) -> None:
        self.compiled = compiled
        self.name = compiled.name
        with _LOCK:
            self._handle = _register(self.name, dict(compiled.rules))

    def fired(self, fact: dict[str, Any]) -> frozenset[str]:
        """Names of every durable rule (part) the fact satisfies."""
        body = orjson.dumps({**fact, "sid": _SID, "id": f"q{next(_IDS)}"}).decode()
        known = self.compiled.rules
        handle = self._handle
        names: list[str] = []
        with _LOCK:
            try:
                code, state = _core.assert_fact(handle, body)
                if code == _HANDLED:
                    action = _core.start_action_for_state(handle, state)
                    if action:
                        names.append(_rule_of(action[1], known))
                        while (message := _core.complete_and_start_action(handle, state)) is not None:
                            names.append(_rule_of(message, known))
                elif code != _NOT_HANDLED:
                    raise EvalError(f"durable-rules answered {code} to an assertion")
            except EvalError:
                self._reset()
                raise
            except Exception as exc:
                self._reset()
                raise EvalError(f"durable-rules failed: {exc}") from exc
            try:
                _core.retract_fact(handle, body)  # the state holds no fact between evaluations
            except Exception as exc:
                self._reset()
                raise EvalError(f"durable-rules could not retract a fact: {exc}") from exc
        unknown = set(names) - known.keys()
        if unknown:
            raise EvalError(f"durable-rules fired unknown rules: {sorted(unknown)}")
        return frozenset(names)

    def matches(self, fact: dict[str, Any]) -> frozenset[str]:
        """Ids of every rule whose condition the fact satisfies."""
        return self.compiled.matched(self.fired(fact))

    def facts_held(self) -> list[Any]:
        """The facts durable-rules holds in our state (none between evaluations; for tests)."""
        with _LOCK:
            try:
                return list(json.loads(_core.get_facts(self._handle, _SID)))
            except _core.error:  # 309: no state yet (nothing was ever kept)
                return []

    def _reset(self) -> None:
        """After a failure half-way: drop the state (its facts and queued actions) so that the next
        evaluation starts clean. Under ``_LOCK``."""
        try:
            _core.delete_state(self._handle, _SID)
        except Exception:  # nothing to drop
            pass


_FITS: dict[str, str | None] = {}  # content hash of a definition -> None (fits) or durable's error


MAX_TRUE_ALTERNATIVES = 64  # measured: a fact making 65 alternatives of one $or true is error 303


def _widest_any(cond: Any) -> int:
    """The most alternatives of one ``$or`` in ``cond`` that one fact can make true at once
    (equalities on one field exclude each other and count once)."""
    if isinstance(cond, list):
        return max((_widest_any(c) for c in cond), default=0)
    if not isinstance(cond, dict):
        return 0
    widest = 0
    for k, v in cond.items():
        if k == "$or" and isinstance(v, list):
            fields: set[str] = set()
            others = 0
            for alt in v:
                if isinstance(alt, dict) and len(alt) == 1 and not next(iter(alt)).startswith("$"):
                    fields.add(next(iter(alt)))
                else:
                    others += 1
            widest = max(widest, len(fields) + others)
        if isinstance(v, (dict, list)):
            widest = max(widest, _widest_any(v))
    return widest


def fits(definition: dict[str, dict[str, Any]]) -> str | None:
    """None when durable-rules accepts these rules as one ruleset and can evaluate every fact
    against them, else why not.

    Creates them under a scratch name made of their content hash and deletes them again (once per
    content: the answers are cached). The core also fails *at assertion* (error 303) on a fact that
    makes more than 64 alternatives of one ``$or`` true: such a condition does not fit either."""
    body = json.dumps(definition, sort_keys=True, ensure_ascii=False)
    key = hashlib.sha256(body.encode()).hexdigest()[:24]
    with _LOCK:
        if key in _FITS:
            return _FITS[key]
        widest = _widest_any(definition)
        if widest > MAX_TRUE_ALTERNATIVES:
            _FITS[key] = (f"{widest} alternatives of one condition can hold at once; the engine fails on a "
                          f"fact that makes more than {MAX_TRUE_ALTERNATIVES} of them true (error 303)")
            return _FITS[key]
        try:
            handle = _core.create_ruleset("chk_" + key, body)
        except Exception as exc:  # the core raises bare Exception with an error code
            _FITS[key] = str(exc)
        else:
            _core.delete_ruleset(handle)
            _FITS[key] = None
        return _FITS[key]
