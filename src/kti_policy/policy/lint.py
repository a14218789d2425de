"""Warnings about rules that can never decide anything, for ``kti-policy check``.

Three kinds, each a ``PolicyError`` with severity ``warning`` at the rule's position:

- ``rule_never_matches``: the rule's conditions contradict each other (``operation: a`` and
  ``operation: b`` in one ``all``; an ``in`` list disjoint with an equality; ``present: false``
  with a value), or its ``unless`` holds whenever its ``when`` does;
- ``permit_always_overridden``: every case the permit matches, some forbid matches too, so the
  permit is never a reason and never attaches its obligations;
- ``duplicate_rule``: another rule with the same effect matches exactly the same cases.

The check is sound but incomplete: a warning is only given when it is proved. Conditions become
formulas over finite domains (each scalar field takes one of the values some rule names, "not
given", or one stand-in for every other value; each list field has one yes/no variable per id
rules name plus one for "some other id"), which over-approximates the real requests, so a proof
over them holds for real requests too. Satisfiability is decided by case splitting with
simplification, under a step budget; a formula too big for the budget gives no warning.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, TypeAlias

from kti_policy.errors import PolicyError, Position

from . import durations
from .conditions import leaf_text
from .fields import FIELDS
from .model import (
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
    Rule,
    condition_to_data,
)

STEP_BUDGET = 200_000  # case splits per question before giving up (and staying silent)


class _Other:
    """The stand-in for every value no rule names."""

    def __repr__(self) -> str:
        return "<other>"


OTHER: Any = _Other()

Var: TypeAlias = str | tuple[str, Any]  # a scalar path, or (list path, id) for "the list holds id"


@dataclass(frozen=True)
class Atom:
    """``var`` takes one of ``allowed``."""

    var: Var
    allowed: frozenset[Any]


@dataclass(frozen=True)
class Op:
    kind: str  # "and" | "or"
    items: tuple[Formula, ...]


Formula: TypeAlias = bool | Atom | Op


class _GiveUp(Exception):
    pass


class Domains:
    """The finite domain of every variable, from the values the policy set's rules name."""

    def __init__(self, policy_set: PolicySet) -> None:
        named: dict[str, set[Any]] = {}
        for rule in policy_set.rules:
            for cond in (rule.when, rule.unless):
                for leaf in _leaves(cond):
                    values = named.setdefault(leaf.path, set())
                    if isinstance(leaf, (Eq, Contains)):
                        values.add(leaf.value)
                    elif isinstance(leaf, (In, ContainsAny)):
                        values.update(leaf.values)
        self.scalars: dict[str, frozenset[Any]] = {}
        self.members: dict[str, tuple[Any, ...]] = {}
        vocab = policy_set.vocabulary
        for path, field in FIELDS.items():
            mentioned = named.get(path, set())
            if field.shape == "list":
                # recorded facts may hold ids the vocabulary no longer has: always allow "another id"
                self.members[path] = (*sorted(mentioned - {None}), OTHER)
            elif field.shape == "bool":
                self.scalars[path] = frozenset((True, False, None))
            else:
                universe = set(vocab.ids(field.vocab)) if field.vocab else None
                if universe is not None:
                    universe |= set(field.extra_values)
                values = mentioned | {None}
                if universe is None or universe - mentioned:
                    values.add(OTHER)
                self.scalars[path] = frozenset(values)

    def of(self, var: Var) -> frozenset[Any]:
        if isinstance(var, tuple):
            return frozenset((True, False))
        if var not in self.scalars and "@" in var:  # a duration condition's none/within/past
            return frozenset(durations.STATES)
        return self.scalars[var]


def elapsed_var(cond: Elapsed) -> str:
    """One variable per (time path, period): where the operation stands against that period. Periods
    of one path are independent variables, which over-approximates (sound for warnings)."""
    return f"{cond.path}@{cond.period.key}"


def _leaves(cond: Condition | None) -> Iterator[Any]:
    if cond is None:
        return
    if isinstance(cond, (All, AnyOf)):
        for c in cond.items:
            yield from _leaves(c)
    elif isinstance(cond, Not):
        yield from _leaves(cond.item)
    elif not isinstance(cond, Const):
        yield cond


# --- conditions to formulas --------------------------------------------------------------------


def _junction(kind: str, items: list[Formula]) -> Formula:
    """``and``/``or`` of formulas, flattened, with constants folded (the absorbing one wins)."""
    absorbing = kind == "or"  # True absorbs an or, False absorbs an and
    out: list[Formula] = []
    for f in items:
        if f is absorbing:
            return absorbing
        if f is (not absorbing):
            continue
        out.extend(f.items if isinstance(f, Op) and f.kind == kind else (f,))
    return (not absorbing) if not out else out[0] if len(out) == 1 else Op(kind, tuple(out))


def _and(items: list[Formula]) -> Formula:
    return _junction("and", items)


def _or(items: list[Formula]) -> Formula:
    return _junction("or", items)


class Translator:
    """Condition AST -> formula in negation normal form (negations become complementary atoms)."""

    def __init__(self, domains: Domains) -> None:
        self.d = domains

    def atom(self, var: Var, allowed: set[Any], neg: bool) -> Formula:
        dom = self.d.of(var)
        chosen = (dom - allowed) if neg else (dom & allowed)
        return False if not chosen else True if chosen == dom else Atom(var, frozenset(chosen))

    def member(self, path: str, value: Any, neg: bool) -> Formula:
        return self.atom((path, value), {True}, neg)

    def formula(self, cond: Condition, neg: bool = False) -> Formula:
        if isinstance(cond, Const):
            return cond.value != neg
        if isinstance(cond, Eq):
            return self.atom(cond.path, {cond.value}, neg)
        if isinstance(cond, In):
            return self.atom(cond.path, set(cond.values), neg)
        if isinstance(cond, Contains):
            return self.member(cond.path, cond.value, neg)
        if isinstance(cond, ContainsAny):
            parts = [self.member(cond.path, v, neg) for v in cond.values]
            return _and(parts) if neg else _or(parts)
        if isinstance(cond, Present):
            given = cond.expected != neg
            if FIELDS[cond.path].shape == "list":
                held = [self.member(cond.path, v, False) for v in self.d.members[cond.path]]
                return _or(held) if given else _and([self.member(cond.path, v, True) for v in self.d.members[cond.path]])
            return self.atom(cond.path, {None}, given)
        if isinstance(cond, Elapsed):
            return self.atom(elapsed_var(cond), {durations.WITHIN if cond.within else durations.PAST}, neg)
        if isinstance(cond, All):
            parts = [self.formula(c, neg) for c in cond.items]
            return _or(parts) if neg else _and(parts)
        if isinstance(cond, AnyOf):
            parts = [self.formula(c, neg) for c in cond.items]
            return _and(parts) if neg else _or(parts)
        if isinstance(cond, Not):
            return self.formula(cond.item, not neg)
        raise TypeError(f"not a condition: {cond!r}")

    def matches(self, rule: Rule) -> Formula:
        """When the rule applies: its ``when`` holds and its ``unless`` does not."""
        unless = self.formula(rule.unless, neg=True) if rule.unless is not None else True
        return _and([self.formula(rule.when), unless])


def negate(f: Formula, domains: Domains) -> Formula:
    if isinstance(f, bool):
        return not f
    if isinstance(f, Atom):
        rest = domains.of(f.var) - f.allowed
        return False if not rest else Atom(f.var, rest)
    parts = [negate(i, domains) for i in f.items]
    return _or(parts) if f.kind == "and" else _and(parts)


# --- satisfiability ----------------------------------------------------------------------------


def _assign(f: Formula, var: Var, value: Any) -> Formula:
    if isinstance(f, bool):
        return f
    if isinstance(f, Atom):
        return (value in f.allowed) if f.var == var else f
    parts = [_assign(i, var, value) for i in f.items]
    return _and(parts) if f.kind == "and" else _or(parts)


def _first_var(f: Formula) -> Var | None:
    if isinstance(f, Atom):
        return f.var
    if isinstance(f, Op):
        for i in f.items:
            v = _first_var(i)
            if v is not None:
                return v
    return None


def _atoms_of(f: Formula, var: Var, out: set[frozenset[Any]]) -> None:
    if isinstance(f, Atom):
        if f.var == var:
            out.add(f.allowed)
    elif isinstance(f, Op):
        for i in f.items:
            _atoms_of(i, var, out)


class Solver:
    """Decides satisfiability by splitting on one variable at a time (values grouped by what tells them apart)."""

    def __init__(self, domains: Domains, budget: int = STEP_BUDGET) -> None:
        self.d = domains
        self.budget = budget

    def satisfiable(self, f: Formula) -> bool | None:
        """True or False when decided, None when the budget ran out."""
        self.steps = 0
        try:
            return self._sat(f)
        except _GiveUp:
            return None

    def _sat(self, f: Formula) -> bool:
        if isinstance(f, bool):
            return f
        self.steps += 1
        if self.steps > self.budget:
            raise _GiveUp
        var = _first_var(f)
        assert var is not None
        sets: set[frozenset[Any]] = set()
        _atoms_of(f, var, sets)
        order = list(sets)
        seen: set[tuple[bool, ...]] = set()
        for value in sorted(self.d.of(var), key=repr):
            signature = tuple(value in s for s in order)
            if signature in seen:
                continue
            seen.add(signature)
            if self._sat(_assign(f, var, value)):
                return True
        return False


# --- the checks --------------------------------------------------------------------------------


def _where(rule: Rule, policy_set: PolicySet) -> Position:
    if rule.pos is not None:
        return rule.pos
    for p in policy_set.policies:
        if rule in p.rules:
            return Position(p.file)
    return Position(policy_set.directory or ".")


def _show(cond: Condition) -> str:
    if isinstance(cond, (Eq, In, Contains, ContainsAny, Present, Const)):
        text = leaf_text(cond)
    else:
        text = json.dumps(condition_to_data(cond), ensure_ascii=False)
    return f"'{text}'" + (f" (line {cond.pos.line})" if cond.pos is not None else "")


def _conjuncts(cond: Condition) -> list[Condition]:
    if isinstance(cond, All):
        return [c for item in cond.items for c in _conjuncts(item)]
    return [cond]


class Linter:
    def __init__(self, policy_set: PolicySet, budget: int = STEP_BUDGET) -> None:
        self.policy_set = policy_set
        self.domains = Domains(policy_set)
        self.tr = Translator(self.domains)
        self.solver = Solver(self.domains, budget)

    def unsat(self, *parts: Formula) -> bool:
        """Proved that the parts can never all hold."""
        return self.solver.satisfiable(_and(list(parts))) is False

    def run(self) -> list[PolicyError]:
        rules = list(self.policy_set.rules)
        match = {r.id: self.tr.matches(r) for r in rules}
        out: list[PolicyError] = []
        dead: set[str] = set()
        for rule in rules:
            if self.unsat(match[rule.id]):
                dead.add(rule.id)
                out.append(self._never(rule))
        forbids = [r for r in rules if r.effect == "forbid" and r.id not in dead]
        for rule in rules:
            if rule.effect == "permit" and rule.id not in dead:
                warning = self._overridden(rule, match, forbids)
                if warning is not None:
                    out.append(warning)
        live = [r for r in rules if r.id not in dead]
        for j, later in enumerate(live):
            for earlier in live[:j]:
                if earlier.effect == later.effect and self._equivalent(match[earlier.id], match[later.id]):
                    out.append(PolicyError(
                        "duplicate_rule",
                        f"rule {later.id} duplicates {earlier.id} ({_where(earlier, self.policy_set)}): "
                        f"both {later.effect} exactly the same cases",
                        _where(later, self.policy_set), "warning"))
                    break
        return out

    def _equivalent(self, a: Formula, b: Formula) -> bool:
        return self.unsat(a, negate(b, self.domains)) and self.unsat(b, negate(a, self.domains))

    def _covered(self, mine: Formula, forbids: list[Rule], match: dict[str, Formula]) -> bool:
        """Proved: wherever ``mine`` holds, one of ``forbids`` matches."""
        return self.unsat(mine, negate(_or([match[f.id] for f in forbids]), self.domains))

    def _never(self, rule: Rule) -> PolicyError:
        where = _where(rule, self.policy_set)
        when = self.tr.formula(rule.when)
        if not self.unsat(when):
            msg = f"rule {rule.id} can never match: its unless holds whenever its when holds"
        else:
            msg = f"rule {rule.id} can never match: its conditions contradict each other"
            parts = _conjuncts(rule.when)
            forms = [self.tr.formula(c) for c in parts]
            found = next((f"{_show(c)} can never hold" for c, f in zip(parts, forms) if self.unsat(f)), None)
            if found is None:
                found = next((f"{_show(parts[i])} and {_show(parts[j])} cannot both hold"
                              for i in range(len(parts)) for j in range(i + 1, len(parts))
                              if self.unsat(forms[i], forms[j])), None)
            if found:
                msg += f" ({found})"
        return PolicyError("rule_never_matches", msg, where, "warning")

    def _overridden(self, rule: Rule, match: dict[str, Formula], forbids: list[Rule]) -> PolicyError | None:
        mine = match[rule.id]
        overlapping = [f for f in forbids if not self.unsat(mine, match[f.id])]
        if not overlapping:
            return None
        if not self._covered(mine, overlapping, match):
            return None
        needed = list(overlapping)  # drop forbids the others cover for, to name the fewest
        for f in overlapping:
            rest = [g for g in needed if g is not f]
            if rest and self._covered(mine, rest, match):
                needed = rest
        if len(needed) == 1:
            by = f"forbid {needed[0].id} ({_where(needed[0], self.policy_set)}) matches every case it matches"
        else:
            by = "every case it matches is forbidden by one of " + ", ".join(f.id for f in needed)
        return PolicyError("permit_always_overridden", f"permit {rule.id} can never allow anything: {by}",
                           _where(rule, self.policy_set), "warning")


def lint_policy_set(policy_set: PolicySet) -> list[PolicyError]:
    """Warnings (severity ``warning``) for rules that can never decide anything, sorted by position."""
    return sorted(Linter(policy_set).run(), key=PolicyError.sort_key)


# --- notice conflicts (information, not warnings) -----------------------------------------------


@dataclass(frozen=True)
class NoticeConflict:
    """One sentence of the register notice and the rules that follow the law instead of it."""

    notice: str
    rules: tuple[Rule, ...]  # in pack order, each with its position, law and ``overrides.why``

    def to_dict(self, policy_set: PolicySet, lang: str = "en") -> dict[str, Any]:
        return {
            "notice": self.notice,
            "rules": [
                {"rule": r.id, "where": str(_where(r, policy_set)), "law": list(r.law),
                 "why": r.overrides.why.get(lang) if r.overrides is not None else ""}
                for r in self.rules
            ],
        }


def notice_conflicts(policy_set: PolicySet) -> list[NoticeConflict]:
    """Every rule marked ``overrides_notice``, grouped by the notice's sentence (first use first)."""
    groups: dict[str, list[Rule]] = {}
    for rule in policy_set.rules:
        if rule.overrides is not None:
            groups.setdefault(rule.overrides.notice, []).append(rule)
    return [NoticeConflict(notice, tuple(rules)) for notice, rules in groups.items()]


def notice_conflicts_text(policy_set: PolicySet, lang: str = "en") -> list[str]:
    """The listing ``kti-policy check`` prints after its result: each sentence, then each rule
    that overrides it as ``file:line:col: rule id [law]`` and why (one ``why`` per distinct text)."""
    conflicts = notice_conflicts(policy_set)
    if not conflicts:
        return []
    n_rules = sum(len(c.rules) for c in conflicts)
    lines = [f"notice conflicts (information, not errors): {n_rules} rules follow the law where "
             f"{len(conflicts)} sentences of the register notice say otherwise"]
    for c in conflicts:
        lines.append(f'  notice: "{c.notice}"')
        whys: list[str] = []
        for r in c.rules:
            law = f" [{', '.join(r.law)}]" if r.law else ""
            lines.append(f"    {_where(r, policy_set)}: {r.id}{law}")
            why = r.overrides.why.get(lang) if r.overrides is not None else ""
            if why and why not in whys:
                whys.append(why)
        lines += [f"    law in force: {w}" for w in whys]
    return lines
