"""Decide: match the rules, combine, explain, attach obligations. Never raises; fails closed.

Combining (CONTRACT section 2): any matching forbid denies and every matching forbid is a reason;
otherwise a matching permit allows and the permits are the reasons; otherwise ``default.deny``.
A decision never changes state.
"""

from __future__ import annotations

import logging
import os
from collections import OrderedDict
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import lru_cache
from threading import Lock
from typing import Any

from kti_policy.errors import PolicyError, PolicyErrors, Position
from kti_policy.facts.fold import SubjectFacts
from kti_policy.once import once_property
from kti_policy.policy.conditions import AT, matching_rules
from kti_policy.policy.model import PolicySet, Rule, Text

from . import obligations as obl
from .compile import compile_policy_set
from .engine import Engine, fits
from .operation import Operation

log = logging.getLogger(__name__)

DEFAULT_DENY = "default.deny"
EVAL_ERROR = "eval_error"
_DEFAULT_DENY_TEXT = Text(
    fi="Mikään sääntö ei salli tätä toimenpidettä, joten se on kielletty.",
    en="No rule permits this operation, so it is denied.",
)
_EVAL_ERROR_TEXT = Text(
    fi="Päätöstä ei voitu arvioida ({fault}); toimenpide on kielletty varmuuden vuoksi.",
    en="The decision could not be evaluated ({fault}); the operation is denied to be safe.",
)
# the bits ``uuid.uuid4()`` fixes: the RFC 4122 variant (10xx) and version 4
_UUID4_CLEAR = ~((0xC000 << 48) | (0xF000 << 64))
_UUID4_SET = (0x8000 << 48) | (4 << 76)
OUTCOME_CACHE_SIZE = 4096  # distinct sets of matching rules combined and kept per Decider


class _RandomPool:
    """``os.urandom`` read 4 KiB at a time and handed out 16 bytes per id.

    One ``getrandom`` system call per decision was a sixth of a decision in a batch once the
    request had evicted the CPU's caches (bench/app_profile.py under py-spy); the bytes are the
    kernel's all the same, each handed out once. A forked child starts with an empty pool and a
    new lock (``os.register_at_fork``): a gunicorn worker never repeats its parent's or a sibling's
    ids."""

    SIZE = 4096

    def __init__(self) -> None:
        self._reset()

    def _reset(self) -> None:
        self._lock = Lock()
        self._bytes = b""
        self._at = 0

    def take16(self) -> bytes:
        with self._lock:
            at = self._at
            if at + 16 > len(self._bytes):
                self._bytes, at = os.urandom(self.SIZE), 0
            self._at = at + 16
            return self._bytes[at : at + 16]


_RANDOM = _RandomPool()
os.register_at_fork(after_in_child=_RANDOM._reset)


def new_decision_id() -> str:
    """``"dec_" + uuid.uuid4().hex``: 122 random bits from ``os.urandom`` (through ``_RandomPool``)
    with uuid4's version and variant bits, written without building a ``UUID`` object."""
    return "dec_%032x" % (int.from_bytes(_RANDOM.take16(), "big") & _UUID4_CLEAR | _UUID4_SET)


@dataclass(frozen=True)
class Reason:
    rule: str
    effect: str
    message: Text
    source: str
    law: tuple[str, ...] = ()

    def to_dict(self, lang: str = "en") -> dict[str, Any]:
        return {
            "rule": self.rule,
            "effect": self.effect,
            "message": self.message.get(lang),
            "source": self.source,
            "law": list(self.law),
        }


class _LastIsoText:
    """The ISO text of the last instant asked, kept: a batch's decisions share one ``datetime``
    object, and ``isoformat`` per decision was a few per cent of a decision in a batch."""

    def __init__(self) -> None:
        self._last: tuple[datetime | None, str] = (None, "")

    def text(self, when: datetime) -> str:
        last = self._last  # one read: another thread may replace it, never half of it
        if last[0] is when:
            return last[1]
        text = when.isoformat()
        self._last = (when, text)
        return text


_ISO = _LastIsoText()


@dataclass(frozen=True)
class Decision:
    decision_id: str
    allowed: bool
    reasons: tuple[Reason, ...]
    obligations: tuple[obl.Obligation, ...]
    policy_version: str
    evaluated_at: datetime
    operation: Operation
    facts: SubjectFacts
    matched: frozenset[str] = field(default_factory=frozenset)
    error: str | None = None

    @property
    def decision(self) -> str:
        return "allow" if self.allowed else "deny"

    @once_property
    def evaluated_at_text(self) -> str:
        """``evaluated_at`` in ISO 8601, written once: the answer and the log line both show it
        (and once for all the decisions of a batch, which share one instant)."""
        return _ISO.text(self.evaluated_at)

    @property
    def rule_ids(self) -> list[str]:
        return [r.rule for r in self.reasons]

    def to_dict(self, lang: str = "en") -> dict[str, Any]:
        """The CONTRACT response body, messages in ``lang`` (fi or en)."""
        return {
            "decision_id": self.decision_id,
            "decision": self.decision,
            "allowed": self.allowed,
            "reasons": [r.to_dict(lang) for r in self.reasons],
            "obligations": [o.to_dict(lang) for o in self.obligations],
            "policy_version": self.policy_version,
            "evaluated_at": self.evaluated_at_text,
        }

    def log_record(self, subject_key: str | None, facts_json: bool = False) -> dict[str, Any]:
        """One decision-log line: enough to replay it, with the subject id pseudonymised.

        ``facts_json``: the facts as their JSON text (``SubjectFacts.log_json``, written once per
        facts object), which the decision log writes as is, instead of a fresh dict."""
        return {
            "decision_id": self.decision_id,
            "time": self.evaluated_at_text,
            "request": self.operation.to_dict(subject_id=subject_key),
            "facts": self.facts.log_json if facts_json else self.facts.to_dict(),
            "decision": self.decision,
            "rules": self.rule_ids,
            "obligations": [o.to_dict("en") for o in self.obligations],
            "policy_version": self.policy_version,
            **({"error": self.error} if self.error else {}),
        }


@dataclass(frozen=True)
class Outcome:
    """What one set of matching rules decides, the same for every operation that matches it:
    whether it allows, the reasons, and the deciding rules that carry obligations (obligations
    themselves depend on the operation, its time and the facts, and are computed per decision)."""

    allowed: bool
    reasons: tuple[Reason, ...]
    obliging: tuple[Rule, ...]


def build_context(op: Operation, facts: SubjectFacts, now: datetime | None = None) -> dict[str, Any]:
    """The flat path -> value view that conditions read (see ``fields``), and ``at``: the
    operation's instant (its ``at``, else ``now``) that duration conditions count to."""
    d = op.data
    recipient = d.get("recipient") or {}
    legal = d.get("legal_basis") or {}
    request = d.get("request") or {}
    cookie = d.get("cookie") or {}
    consents, withdrawn, objections = facts.sorted_ids
    return {
        AT: op.at or now or datetime.now(UTC),
        "operation": d.get("operation"),
        "purpose": d.get("purpose"),
        "data_categories": tuple(d.get("data_categories") or ()),
        "channel": d.get("channel"),
        "recipient.type": recipient.get("type"),
        "recipient.country": recipient.get("country"),
        "recipient.name": recipient.get("name"),
        "recipient.dpa": recipient.get("dpa"),
        "recipient.safeguards": recipient.get("safeguards"),
        "legal_basis.type": legal.get("type"),
        "legal_basis.reference": _text_or_empty(legal.get("reference")),
        "source": d.get("source"),
        "cookie.kind": cookie.get("kind"),
        "request.type": request.get("type"),
        "request.written": request.get("written"),
        "request.signed": request.get("signed"),
        "request.identity_verified": request.get("identity_verified"),
        "request.extended": request.get("extended"),
        "request.excessive": request.get("excessive"),
        "request.further_copy": (request.get("copy_number") or 1) > 1 if request else None,
        "subject.kind": facts.kind,
        "subject.consents": consents,
        "subject.withdrawn_consents": withdrawn,
        "subject.objections": objections,
        "subject.relationship": facts.relationship,
        "subject.relationship_started_at": facts.relationship_started_at,
        "subject.relationship_ended_at": facts.relationship_ended_at,
        "subject.erasure_requested": facts.erasure_requested,
        "subject.erasure_requested_at": facts.erasure_requested_at,
        "subject.restricted": facts.restricted,
    }


def _text_or_empty(value: Any) -> Any:
    """A text of only spaces reads as "" (given, but empty): a reference of spaces names no statute."""
    return "" if isinstance(value, str) and not value.strip() else value


def engine_problems(policy_set: PolicySet, compiled: Any = None) -> list[PolicyError]:
    """Rules durable-rules cannot take even split into parts (``engine_limit``), at their position:
    ``kti-policy check`` reports them, and a reload refuses the set rather than serve without it."""
    compiled = compiled or compile_policy_set(policy_set)
    out = []
    for rule in policy_set.rules:
        error = fits(compiled.parts_of(rule.id))
        if error is not None:
            out.append(PolicyError(
                "engine_limit",
                f"rule {rule.id} is too complex for the rule engine ({error.strip()}; durable-rules limits "
                "the expressions of one condition): split it into several rules",
                rule.pos or Position(rule.policy),
            ))
    return out


class Decider:
    """Decides operations against one policy set through durable-rules.

    Matches depend only on the projected fields of the context and the policy version, so they
    are cached per projection (bounded LRU); what a set of matches decides (allow or deny, the
    reasons) depends on nothing else, so it is combined once per set (``Outcome``, bounded LRU);
    obligations, times and ids are computed per call.
    """

    def __init__(self, policy_set: PolicySet, cache_size: int = 65536, use_engine: bool = True) -> None:
        self.policy_set = policy_set
        self.rules: dict[str, Rule] = {r.id: r for r in policy_set.rules}
        self._order = {rid: i for i, rid in enumerate(self.rules)}  # reasons in file order
        self.compiled = compile_policy_set(policy_set, fits=fits if use_engine else None)
        self.engine = None
        if use_engine:
            # every part must fit before any is registered: some limits show only when a fact
            # arrives (error 303), and a set served with such a rule would deny at random
            problems = engine_problems(policy_set, self.compiled)
            if problems:
                raise PolicyErrors(problems)
            self.engine = Engine(self.compiled)
        self._cache: OrderedDict[tuple[Any, ...], frozenset[str]] = OrderedDict()
        self._cache_size = cache_size
        self._cache_lock = Lock()
        # a bounded map matched set -> Outcome (thread-safe; an exception is not cached)
        self._outcome = lru_cache(maxsize=OUTCOME_CACHE_SIZE)(self._combine)

    def match(self, ctx: dict[str, Any]) -> frozenset[str]:
        """Rule ids matching ``ctx``: from the cache, else from durable-rules (or the reference)."""
        if self.engine is None:
            return matching_rules(self.policy_set.rules, ctx)
        projection = self.compiled.projection
        key = projection.key(ctx)
        if self._cache_size:
            with self._cache_lock:
                hit = self._cache.get(key)
                if hit is not None:
                    self._cache.move_to_end(key)
                    return hit
        found = self.engine.matches(projection.fact_of(key))
        if self._cache_size:
            with self._cache_lock:
                self._cache[key] = found
                if len(self._cache) > self._cache_size:
                    self._cache.popitem(last=False)
        return found

    def decide(self, op: Operation, facts: SubjectFacts | None = None, now: datetime | None = None) -> Decision:
        now = now or datetime.now(UTC)
        facts = (facts or SubjectFacts()).merge_inline(op.inline_facts)
        decision_id = new_decision_id()
        try:
            return self._decide(op, facts, now, decision_id)
        except Exception as exc:  # fail closed: whatever went wrong, deny and say so
            log.exception("evaluation failed; answering deny")
            fault = type(exc).__name__
            text = Text(_EVAL_ERROR_TEXT.fi.replace("{fault}", fault), _EVAL_ERROR_TEXT.en.replace("{fault}", fault))
            return Decision(
                decision_id, False, (Reason(EVAL_ERROR, "forbid", text, ""),), (),
                self.policy_set.version, now, op, facts, error=f"{fault}: {exc}",
            )

    def _decide(self, op: Operation, facts: SubjectFacts, now: datetime, decision_id: str) -> Decision:
        ctx = build_context(op, facts, now)
        matched = self.match(ctx)
        outcome = self._outcome(matched)
        obligations: tuple[obl.Obligation, ...] = ()
        if outcome.obliging:
            at = ctx[AT]
            computed = (obl.compute(r, spec, op, facts, at) for r in outcome.obliging for spec in r.obligations)
            obligations = tuple(o for o in computed if o is not None)
        return Decision(
            decision_id, outcome.allowed, outcome.reasons, obligations, self.policy_set.version, now, op, facts, matched
        )

    def _combine(self, matched: frozenset[str]) -> Outcome:
        """What the rules ``matched`` decide (CONTRACT 2's combining, see the module docstring);
        called through ``self._outcome``, once per distinct set."""
        rules = self.rules
        ordered = [rules[rid] for rid in sorted(matched, key=self._order.__getitem__)]
        forbids = [r for r in ordered if r.effect == "forbid"]
        permits = [r for r in ordered if r.effect == "permit"]
        deciding = forbids or permits
        if not deciding:
            return Outcome(False, (Reason(DEFAULT_DENY, "forbid", _DEFAULT_DENY_TEXT, ""),), ())
        return Outcome(
            not forbids,
            tuple(Reason(r.id, r.effect, r.reason, r.source, r.law) for r in deciding),
            tuple(r for r in deciding if r.obligations),
        )
