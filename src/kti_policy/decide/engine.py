"""The only module that touches durable-rules.

durable-rules keeps one global host, cannot re-register a ruleset name, has no lock around its
ruleset list, consumes a posted *event* with the first matching rule, and grows without bound on a
new ``sid`` per request. So we
- keep one private ``Host`` per process, created lazily,
- register each compiled ruleset once, under a content-hash name, under a lock (a reload with the
  same content reuses it; new content gets a new name),
- evaluate by *asserting a fact* (every matching rule fires) in one state (sid "0") and
  retracting it straight after, under the same lock, collecting the fired rule ids,
- and, since one condition may hold at most 32 expressions (error 113) and ``compile`` splits rules
  into parts to stay under it, check a rule's parts on their own (``fits``) so that a rule still too
  complex is named with its position by ``kti-policy check`` and a reload, not found when serving.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import threading
from collections.abc import Callable
from typing import Any

from durable.engine import Host, MessageNotHandledException

from kti_policy.errors import EvalError

from .compile import CompiledRuleset

_LOCK = threading.RLock()
_HOST: Host | None = None
_REGISTERED: set[str] = set()
_SINK: list[str] = []  # rule ids fired by the assertion under way (only touched under _LOCK)
_IDS = itertools.count(1)
_SID = "0"


def _host() -> Host:
    global _HOST
    if _HOST is None:
        _HOST = Host()
    return _HOST


def _action(rule_id: str) -> Callable[[Any], None]:
    def fire(_closure: Any) -> None:
        _SINK.append(rule_id)

    return fire


class Engine:
    """Matches flat facts against one compiled ruleset."""

    def __init__(self, compiled: CompiledRuleset) -> None:
        self.compiled = compiled
        self.name = compiled.name
        with _LOCK:
            if self.name not in _REGISTERED:
                definition = {
                    rid: {**body, "run": _action(rid)} for rid, body in compiled.rules.items()
                }
                try:
                    _host().register_rulesets({self.name: definition})
                except Exception as exc:  # durable raises bare Exception
                    raise EvalError(f"durable-rules rejected ruleset {self.name}: {exc}") from exc
                _REGISTERED.add(self.name)

    def matches(self, fact: dict[str, Any]) -> frozenset[str]:
        """Ids of every rule whose condition the fact satisfies."""
        fact = dict(fact, sid=_SID, id=f"q{next(_IDS)}")
        host = _host()
        with _LOCK:
            _SINK.clear()
            try:
                host.assert_fact(self.name, fact)
            except MessageNotHandledException:
                pass  # no rule matched
            except Exception as exc:
                raise EvalError(f"durable-rules failed: {exc}") from exc
            finally:
                fired = frozenset(_SINK)
                _SINK.clear()
                # Retract whatever happened: the state must hold no fact between evaluations.
                try:
                    host.retract_fact(self.name, fact)
                except MessageNotHandledException:
                    pass
                except Exception as exc:
                    raise EvalError(f"durable-rules could not retract a fact: {exc}") from exc
        unknown = fired - self.compiled.rules.keys()
        if unknown:
            raise EvalError(f"durable-rules fired unknown rules: {sorted(unknown)}")
        return self.compiled.matched(fired)


_FITS: dict[str, str | None] = {}  # content hash of a definition -> None (fits) or durable's error


def fits(definition: dict[str, dict[str, Any]]) -> str | None:
    """None when durable-rules accepts these rules as one ruleset, else its error text.

    Registers them under a scratch name made of their content hash (once per content: durable
    never unregisters, so the results are cached and the host grows only with new content)."""
    body = json.dumps(definition, sort_keys=True, ensure_ascii=False)
    key = hashlib.sha256(body.encode()).hexdigest()[:24]
    with _LOCK:
        if key in _FITS:
            return _FITS[key]
        try:
            _host().register_rulesets({"chk_" + key: {n: {**b, "run": _action(n)} for n, b in definition.items()}})
            _FITS[key] = None
        except Exception as exc:  # durable raises bare Exception
            _FITS[key] = str(exc)
        return _FITS[key]
