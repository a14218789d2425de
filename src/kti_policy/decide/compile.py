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
from collections.abc import Callable, Mapping
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
    """Which fields of the flat context the compiled rules read, in a fixed order.

    ``key(ctx)`` reads them once, as the fact holds them (scalars encoded, memberships and presence
    as booleans, duration conditions as their state word), and ``fact_of(key)`` names them: the
    cache key and the asserted fact are one computation, so a miss pays the date arithmetic once."""

    scalars: tuple[str, ...]
    members: tuple[tuple[str, str], ...]
    counts: tuple[str, ...]
    stamps: tuple[str, ...] = ()
    elapsed: tuple[tuple[str, durations.Period], ...] = ()
    # the fact's field names: readable (``f__operation``, ``m__data_categories__email``), or short
    # (``k0``, ``k1``, ...; ``kt`` for the constant), which durable-rules' core reads about twice as
    # fast (it hashes every field name of every fact); ``labels`` keeps the readable ones
    short: bool = False
    labels: tuple[str, ...] = field(init=False, repr=False, compare=False)  # TRUE_KEY first
    fields: tuple[str, ...] = field(init=False, repr=False, compare=False)  # as the fact names them
    # (path, its member values in order, value -> place among them)
    _member_groups: tuple[tuple[str, tuple[str, ...], dict[str, int]], ...] = field(
        init=False, repr=False, compare=False
    )

    def __post_init__(self) -> None:
        labels = (
            [TRUE_KEY]
            + [_scalar_key(p) for p in self.scalars]
            + [_member_key(p, v) for p, v in self.members]
            + [_count_key(p) for p in self.counts]
            + [_stamp_key(p) for p in self.stamps]
            + [_elapsed_key(p, period) for p, period in self.elapsed]
        )
        fields = ["kt", *(f"k{i:x}" for i in range(len(labels) - 1))] if self.short else labels
        object.__setattr__(self, "labels", tuple(labels))
        object.__setattr__(self, "fields", tuple(fields))
        groups: dict[str, list[str]] = {}
        for path, value in self.members:  # sorted by path: the groups keep the members' order
            groups.setdefault(path, []).append(value)
        object.__setattr__(
            self, "_member_groups", tuple((p, tuple(v), {x: i for i, x in enumerate(v)}) for p, v in groups.items())
        )

    def key(self, ctx: Mapping[str, Any]) -> tuple[Any, ...]:
        """The projected values as a tuple, in the order of ``fields`` (after the constant): equal
        keys, equal matches. Read on every decision, cache hit or not: ``encode`` runs only for a
        value that needs it, and a list field is looked up by the ids given (``_members``), not
        scanned once per member value (3.8 -> 2.7 us on the bench workload, measured)."""
        get = ctx.get
        # encode() inline for the usual values: None, a bool, a str without NONE in it
        out: list[Any] = [
            NONE if v is None else v if type(v) is bool or (type(v) is str and NONE not in v) else encode(v)
            for v in map(get, self.scalars)
        ]
        for path, values, place in self._member_groups:
            out += _members(get(path), values, place)
        out += [bool(get(path)) for path in self.counts]
        out += [get(path) is not None for path in self.stamps]
        if self.elapsed:
            at = ctx[AT]
            out += [durations.state(get(path), at, period) for path, period in self.elapsed]
        return tuple(out)

    def fact_of(self, key: tuple[Any, ...]) -> dict[str, Any]:
        """The fact durable-rules matches, from a ``key``."""
        fields = self.fields
        fact = dict(zip(fields[1:], key, strict=True))
        fact[fields[0]] = 1
        return fact

    def fact(self, ctx: Mapping[str, Any]) -> dict[str, Any]:
        return self.fact_of(self.key(ctx))

    def readable(self, fact: Mapping[str, Any]) -> dict[str, Any]:
        """A fact (or a condition's field map) with the readable field names, for people."""
        label = dict(zip(self.fields, self.labels, strict=True))
        return {label.get(k, k): v for k, v in fact.items()}


def _members(have: Any, values: tuple[str, ...], place: Mapping[str, int]) -> list[bool]:
    """``[value in have for value in values]``: for a tuple of str (as ``build_context`` gives a
    list field) by looking up the few ids given rather than scanning them once per member value
    (``data_categories`` alone has 20 in the shipped pack)."""
    if not have:
        return [False] * len(values)
    if type(have) is not tuple:
        return [value in have for value in values]
    found = [False] * len(values)
    for item in have:
        if type(item) is not str:
            return [value in have for value in values]
        i = place.get(item)
        if i is not None:
            found[i] = True
    return found


def _rename(cond: Any, names: Mapping[str, str]) -> Any:
    """Rename the fields of a durable-rules condition: ``{field: v}``, ``{"$op": {field: v}}``,
    ``{"$and"|"$or": [...]}``, ``{"all": [{"m": ...}]}``."""
    if isinstance(cond, list):
        return [_rename(c, names) for c in cond]
    if not isinstance(cond, dict):
        return cond
    out: dict[str, Any] = {}
    for k, v in cond.items():
        if k in ("$and", "$or", "all", "m") or (k.startswith("$") and isinstance(v, dict)):
            out[k] = _rename(v, names)
        else:
            out[names.get(k, k)] = v
    return out


@dataclass(frozen=True)
class CompiledRuleset:
    name: str  # durable-rules ruleset name: content hash, so a reload never re-registers a name
    rules: Mapping[str, dict[str, Any]]  # durable rule (part) name -> condition JSON (without "run")
    projection: Projection
    # rule id -> (names of its when parts, names of its unless parts)
    parts: Mapping[str, tuple[frozenset[str], frozenset[str]]] = field(default_factory=dict)

    owner: Mapping[str, str] = field(init=False, repr=False, compare=False)  # part name -> rule id

    def __post_init__(self) -> None:
        owner = {name: rid for rid, (when, unless) in self.parts.items() for name in when | unless}
        object.__setattr__(self, "owner", owner)

    def matched(self, fired: frozenset[str]) -> frozenset[str]:
        """Rule ids whose ``when`` part fired and no ``unless`` part did."""
        out = set()
        for name in fired:
            rid = self.owner[name]
            when, unless = self.parts[rid]
            if name in when and not fired & unless:
                out.add(rid)
        return frozenset(out)

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
                return {_count_key(cond.path): want}
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


Fits = Callable[[dict[str, dict[str, Any]]], "str | None"]


def compile_policy_set(policy_set: PolicySet, fits: Fits | None = None, short_names: bool = True) -> CompiledRuleset:
    """The policy set as durable-rules rules, and the projection their facts are made of.

    With ``fits`` (``engine.fits``: None when durable-rules takes the rules), a rule becomes the
    disjuncts of ``when and not unless`` (*whole* parts), so that a part fires only when the rule
    matches: every fired part is one round trip through durable-rules, and a rule's ``when`` alone
    fires on most operations of its kind. A rule whose whole parts exceed durable-rules' limits,
    and every rule without ``fits``, is split into ``when`` and ``unless`` parts instead."""
    col = _Collector()
    rules: dict[str, dict[str, Any]] = {}
    parts: dict[str, tuple[frozenset[str], frozenset[str]]] = {}
    for rule in policy_set.rules:
        if fits is not None:
            whole = {f"{rule.id}#a{i}": {"all": [{"m": col.compile(part)}]}
                     for i, part in enumerate(disjuncts(_whole(rule.when, rule.unless)))}
            if fits(whole) is None:
                rules.update(whole)
                parts[rule.id] = (frozenset(whole), frozenset())
                continue
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
        short=short_names,
    )
    if projection.short:  # the conditions were compiled with readable names: give them the fact's
        fact_names = dict(zip(projection.labels, projection.fields, strict=True))
        rules = {name: _rename(cond, fact_names) for name, cond in rules.items()}
    body = json.dumps(rules, sort_keys=True, ensure_ascii=False).encode()
    name = "kti_" + hashlib.sha256(body).hexdigest()[:20]
    return CompiledRuleset(name, rules, projection, parts)


def _whole(when: Condition, unless: Condition | None) -> Condition:
    return when if unless is None else All((when, Not(unless)))
