"""Compile a policy set's conditions into durable-rules ruleset JSON.

durable-rules matches flat JSON facts and has sharp edges we measured: a missing field never
matches ``$neq``, ``$nex`` can hang, ``$iall`` over an empty list never matches, and it has no
``$not``. So the compiler
- pushes negation down to the leaves (negation normal form),
- gives every scalar field a value in the fact (``NONE`` when not given),
- turns each list membership a rule asks about into a boolean field of the fact,
- turns each duration condition into a derived field holding ``none``, ``within`` or ``past``
  (``durations.state``, computed from the dated fact and the operation's time), and a time
  field's presence into a boolean, so that no instant ever reaches the fact or the cache key,
and the fact holds only the fields some rule reads (the *projection*), which also makes a good
cache key: decisions that agree on every projected field get the same matches.

durable-rules also caps one condition at 32 expressions (error 113, ``MAX_SEQUENCE_EXPRESSIONS``):
a forbid whose ``unless`` lists every exception of a law quickly exceeds it. So a rule becomes
several durable rules (*parts*): its ``when`` and its ``unless`` are each split into disjuncts
(``any`` items, De Morgan on ``not all``, and ``all`` distributed over its ``any`` children while
that stays small), each compiled on its own, the ``unless`` ones positively. A rule matches when
one of its ``when`` parts fires and none of its ``unless`` parts does (``CompiledRuleset.matched``):
exactly ``when and not unless``, with each part far from the cap.
"""

from __future__ import annotations

import hashlib
import itertools
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from kti_policy.policy import durations
from kti_policy.policy.conditions import AT
from kti_policy.policy.fields import FIELDS
from kti_policy.policy.model import (
    All,
    AnyOf,
    Condition,
    Const,
    Contains,
    ContainsAny,
    Elapsed,
    Eq,
    In,
    Not,
    PolicySet,
    Present,
)

NONE = "\u2205"  # the value of a scalar field that was not given
TRUE_KEY = "k__t"  # a constant field: {k__t: 1} is "always", {k__t: 0} "never"


def encode(value: Any) -> Any:
    """A scalar as the fact holds it: ``None`` becomes ``NONE``; a string that starts with ``NONE``
    gets one more, so no given value can ever look like "not given"."""
    if value is None:
        return NONE
    if isinstance(value, str) and value.startswith(NONE):
        return NONE + value
    return value


def _scalar_key(path: str) -> str:
    return "f__" + path.replace(".", "__")


def _member_key(path: str, value: str) -> str:
    return "m__" + path.replace(".", "__") + "__" + value


def _count_key(path: str) -> str:
    return "n__" + path.replace(".", "__")


def _stamp_key(path: str) -> str:
    return "p__" + path.replace(".", "__")


def _elapsed_key(path: str, period: durations.Period) -> str:
    return "e__" + path.replace(".", "__") + "__" + period.key


@dataclass(frozen=True)
class Projection:
    """Which fields of the flat context the compiled rules read, in a fixed order."""

    scalars: tuple[str, ...]
    members: tuple[tuple[str, str], ...]
    counts: tuple[str, ...]
    stamps: tuple[str, ...] = ()
    elapsed: tuple[tuple[str, durations.Period], ...] = ()

    def fact(self, ctx: Mapping[str, Any]) -> dict[str, Any]:
        fact: dict[str, Any] = {TRUE_KEY: 1}
        for path in self.scalars:
            fact[_scalar_key(path)] = encode(ctx.get(path))
        for path, value in self.members:
            fact[_member_key(path, value)] = value in (ctx.get(path) or ())
        for path in self.counts:
            fact[_count_key(path)] = len(ctx.get(path) or ())
        for path in self.stamps:
            fact[_stamp_key(path)] = ctx.get(path) is not None
        for path, period in self.elapsed:
            fact[_elapsed_key(path, period)] = durations.state(ctx.get(path), ctx[AT], period)
        return fact

    def key(self, ctx: Mapping[str, Any]) -> tuple[Any, ...]:
        """The projected values as a tuple: equal keys give equal matches."""
        out: list[Any] = []
        for path in self.scalars:
            out.append(ctx.get(path))
        for path, value in self.members:
            out.append(value in (ctx.get(path) or ()))
        for path in self.counts:
            out.append(bool(ctx.get(path)))
        for path in self.stamps:
            out.append(ctx.get(path) is not None)
        for path, period in self.elapsed:
            out.append(durations.state(ctx.get(path), ctx[AT], period))
        return tuple(out)


@dataclass(frozen=True)
class CompiledRuleset:
    name: str  # durable-rules ruleset name: content hash, so a reload never re-registers a name
    rules: Mapping[str, dict[str, Any]]  # durable rule (part) name -> condition JSON (without "run")
    projection: Projection
    # rule id -> (names of its when parts, names of its unless parts)
    parts: Mapping[str, tuple[frozenset[str], frozenset[str]]] = field(default_factory=dict)

    def matched(self, fired: frozenset[str]) -> frozenset[str]:
        """Rule ids whose ``when`` part fired and no ``unless`` part did."""
        return frozenset(rid for rid, (when, unless) in self.parts.items() if fired & when and not fired & unless)

    def parts_of(self, rule_id: str) -> dict[str, dict[str, Any]]:
        """The durable rules one policy rule became (to check each against the engine's limits)."""
        when, unless = self.parts[rule_id]
        return {name: self.rules[name] for name in sorted(when | unless)}


class _Collector:
    def __init__(self) -> None:
        self.scalars: set[str] = set()
        self.members: set[tuple[str, str]] = set()
        self.counts: set[str] = set()
        self.stamps: set[str] = set()
        self.elapsed: set[tuple[str, durations.Period]] = set()

    def compile(self, cond: Condition, neg: bool = False) -> dict[str, Any]:
        if isinstance(cond, Const):
            return {TRUE_KEY: 1 if cond.value != neg else 0}
        if isinstance(cond, Eq):
            return self._eq(cond.path, cond.value, neg)
        if isinstance(cond, In):
            parts = [self._eq(cond.path, v, neg) for v in cond.values]
            return _join("$and" if neg else "$or", parts)
        if isinstance(cond, Contains):
            return self._member(cond.path, cond.value, neg)
        if isinstance(cond, ContainsAny):
            parts = [self._member(cond.path, v, neg) for v in cond.values]
            return _join("$and" if neg else "$or", parts)
        if isinstance(cond, Present):
            want = cond.expected != neg
            if FIELDS[cond.path].shape == "list":
                self.counts.add(cond.path)
                key = _count_key(cond.path)
                return {"$gt": {key: 0}} if want else {key: 0}
            if FIELDS[cond.path].shape == "time":
                self.stamps.add(cond.path)
                return {_stamp_key(cond.path): want}
            self.scalars.add(cond.path)
            key = _scalar_key(cond.path)
            return {"$neq": {key: NONE}} if want else {key: NONE}
        if isinstance(cond, Elapsed):
            self.elapsed.add((cond.path, cond.period))
            key = _elapsed_key(cond.path, cond.period)
            value = durations.WITHIN if cond.within else durations.PAST
            return {"$neq": {key: value}} if neg else {key: value}
        if isinstance(cond, All):
            if not cond.items:
                return {TRUE_KEY: 0 if neg else 1}
            return _join("$or" if neg else "$and", [self.compile(c, neg) for c in cond.items])
        if isinstance(cond, AnyOf):
            if not cond.items:
                return {TRUE_KEY: 1 if neg else 0}
            return _join("$and" if neg else "$or", [self.compile(c, neg) for c in cond.items])
        if isinstance(cond, Not):
            return self.compile(cond.item, not neg)
        raise TypeError(f"not a condition: {cond!r}")

    def _eq(self, path: str, value: Any, neg: bool) -> dict[str, Any]:
        self.scalars.add(path)
        key = _scalar_key(path)
        v = encode(value)
        return {"$neq": {key: v}} if neg else {key: v}

    def _member(self, path: str, value: str, neg: bool) -> dict[str, Any]:
        self.members.add((path, value))
        return {_member_key(path, value): not neg}


def _join(op: str, parts: list[dict[str, Any]]) -> dict[str, Any]:
    return parts[0] if len(parts) == 1 else {op: parts}


MAX_PARTS = 32  # distributing an ``all`` over its ``any`` children stops at this many disjuncts


def disjuncts(cond: Condition) -> list[Condition]:
    """``cond`` as a list of conditions of which it is the disjunction (``[]``: never holds)."""
    if isinstance(cond, AnyOf):
        return [d for item in cond.items for d in disjuncts(item)]
    if isinstance(cond, Not):
        inner = cond.item
        if isinstance(inner, Not):
            return disjuncts(inner.item)
        if isinstance(inner, All):
            return [d for item in inner.items for d in disjuncts(Not(item))]
        return [cond]
    if isinstance(cond, All) and any(isinstance(i, (AnyOf, Not)) for i in cond.items):
        options = [disjuncts(item) for item in cond.items]
        size = 1
        for o in options:
            size *= len(o)
        if size <= MAX_PARTS:
            return [All(tuple(combo)) for combo in itertools.product(*options)]
    return [cond]


def compile_policy_set(policy_set: PolicySet) -> CompiledRuleset:
    col = _Collector()
    rules: dict[str, dict[str, Any]] = {}
    parts: dict[str, tuple[frozenset[str], frozenset[str]]] = {}
    for rule in policy_set.rules:
        names: list[list[str]] = [[], []]
        for side, cond in enumerate((rule.when, rule.unless)):
            if cond is None:
                continue
            for i, part in enumerate(disjuncts(cond)):
                name = f"{rule.id}#{'wu'[side]}{i}"
                rules[name] = {"all": [{"m": col.compile(part)}]}
                names[side].append(name)
        parts[rule.id] = (frozenset(names[0]), frozenset(names[1]))
    projection = Projection(
        tuple(sorted(col.scalars)),
        tuple(sorted(col.members)),
        tuple(sorted(col.counts)),
        tuple(sorted(col.stamps)),
        tuple(sorted(col.elapsed, key=lambda e: (e[0], e[1].key))),
    )
    body = json.dumps(rules, sort_keys=True, ensure_ascii=False).encode()
    name = "kti_" + hashlib.sha256(body).hexdigest()[:20]
    return CompiledRuleset(name, rules, projection, parts)
