"""The plain reference evaluator of conditions, and their explanation in words.

This is the meaning of the policy language. The durable-rules engine must agree with it on every
input (``tests/decide/test_differential.py`` checks that with hypothesis); ``explain`` shows which parts
of each rule held, for ``kti-policy eval --explain`` and the playground page.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from . import durations
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
    Present,
    Rule,
)

Context = Mapping[str, Any]  # flat: path -> value (None when not given; lists as tuples)
AT = "at"  # the context key of the operation's instant, which duration conditions count to


def elapsed_state(cond: Elapsed, ctx: Context) -> str:
    """``none``, ``within`` or ``past``: where the operation stands against ``cond``'s period."""
    return durations.state(ctx.get(cond.path), ctx[AT], cond.period)


def holds(cond: Condition, ctx: Context) -> bool:
    """Whether ``cond`` holds for the flat context ``ctx``."""
    if isinstance(cond, Eq):
        return bool(ctx.get(cond.path) == cond.value)
    if isinstance(cond, In):
        return ctx.get(cond.path) in cond.values
    if isinstance(cond, Contains):
        return cond.value in (ctx.get(cond.path) or ())
    if isinstance(cond, ContainsAny):
        have = ctx.get(cond.path) or ()
        return any(v in have for v in cond.values)
    if isinstance(cond, Present):
        value = ctx.get(cond.path)
        given = bool(value) if isinstance(value, (tuple, list, frozenset)) else value is not None
        return given == cond.expected
    if isinstance(cond, Elapsed):
        return elapsed_state(cond, ctx) == (durations.WITHIN if cond.within else durations.PAST)
    if isinstance(cond, All):
        return all(holds(c, ctx) for c in cond.items)
    if isinstance(cond, AnyOf):
        return any(holds(c, ctx) for c in cond.items)
    if isinstance(cond, Not):
        return not holds(cond.item, ctx)
    if isinstance(cond, Const):
        return cond.value
    raise TypeError(f"not a condition: {cond!r}")


def rule_matches(rule: Rule, ctx: Context) -> bool:
    return holds(rule.when, ctx) and not (rule.unless is not None and holds(rule.unless, ctx))


def matching_rules(rules: tuple[Rule, ...], ctx: Context) -> frozenset[str]:
    """Ids of every rule whose ``when`` holds and whose ``unless`` does not."""
    return frozenset(r.id for r in rules if rule_matches(r, ctx))


# --- words -----------------------------------------------------------------------------------

_WORDS = {
    "en": {
        "is": "{p} is {v}",
        "absent": "{p} is not given",
        "in": "{p} is one of {v}",
        "contains": "{p} includes {v}",
        "contains_any": "{p} includes any of {v}",
        "present": "{p} is given",
        "all": "all of",
        "any": "any of",
        "not": "not",
        "true": "always",
        "false": "never",
        "none": "(not given)",
        "in_list": "{p} is in the list {v}",
        "within": "{p} is at most {v} before the operation",
        "more_than": "{p} is more than {v} before the operation",
    },
    "fi": {
        "is": "{p} on {v}",
        "absent": "{p} puuttuu",
        "in": "{p} on jokin seuraavista: {v}",
        "contains": "{p} sisältää arvon {v}",
        "contains_any": "{p} sisältää jonkin seuraavista: {v}",
        "present": "{p} on annettu",
        "all": "kaikki seuraavat",
        "any": "jokin seuraavista",
        "not": "ei",
        "true": "aina",
        "false": "ei koskaan",
        "none": "(ei annettu)",
        "in_list": "{p} kuuluu luetteloon {v}",
        "within": "{p} on enintään {v} ennen toimenpidettä",
        "more_than": "{p} on yli {v} ennen toimenpidettä",
    },
}


def _fmt(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    return str(v)


def _period_words(cond: Elapsed, lang: str) -> str:
    words = cond.period.text(lang)
    return f"{cond.period_name} ({words})" if cond.period_name else words


def describe(cond: Condition, lang: str = "en") -> str:
    """One line of plain words for a leaf; compound conditions as nested lines."""
    return "\n".join(_describe_lines(cond, _WORDS.get(lang, _WORDS["en"]), 0))


def _describe_lines(cond: Condition, w: dict[str, str], depth: int) -> list[str]:
    pad = "  " * depth
    if isinstance(cond, (All, AnyOf)):
        head = w["all"] if isinstance(cond, All) else w["any"]
        lines = [f"{pad}{head}:"]
        for c in cond.items:
            lines += _describe_lines(c, w, depth + 1)
        return lines
    if isinstance(cond, Not):
        return [f"{pad}{w['not']}:"] + _describe_lines(cond.item, w, depth + 1)
    return [pad + leaf_text(cond, w)]


def leaf_text(cond: Condition, w: dict[str, str] | None = None) -> str:
    w = w or _WORDS["en"]
    lang = "fi" if w is _WORDS["fi"] else "en"
    if isinstance(cond, Elapsed):
        return w["within" if cond.within else "more_than"].format(p=cond.path, v=_period_words(cond, lang))
    if isinstance(cond, In) and cond.list_name:
        return w["in_list"].format(p=cond.path, v=cond.list_name)
    if isinstance(cond, Eq):
        if cond.value is None:
            return w["absent"].format(p=cond.path)
        return w["is"].format(p=cond.path, v=_fmt(cond.value))
    if isinstance(cond, In):
        return w["in"].format(p=cond.path, v=", ".join(w["none"] if v is None else _fmt(v) for v in cond.values))
    if isinstance(cond, Contains):
        return w["contains"].format(p=cond.path, v=cond.value)
    if isinstance(cond, ContainsAny):
        return w["contains_any"].format(p=cond.path, v=", ".join(cond.values))
    if isinstance(cond, Present):
        return w["present" if cond.expected else "absent"].format(p=cond.path)
    if isinstance(cond, Const):
        return w["true" if cond.value else "false"]
    return repr(cond)


@dataclass(frozen=True)
class Explained:
    """One node of an explanation: its words, whether it held, and its parts."""

    text: str
    held: bool
    parts: tuple[Explained, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"text": self.text, "held": self.held}
        if self.parts:
            d["parts"] = [p.to_dict() for p in self.parts]
        return d

    def lines(self, depth: int = 0) -> list[str]:
        mark = "✓" if self.held else "✗"
        out = [f"{'  ' * depth}{mark} {self.text}"]
        for p in self.parts:
            out += p.lines(depth + 1)
        return out


def explain(cond: Condition, ctx: Context, lang: str = "en") -> Explained:
    w = _WORDS.get(lang, _WORDS["en"])
    if isinstance(cond, (All, AnyOf)):
        parts = tuple(explain(c, ctx, lang) for c in cond.items)
        return Explained(w["all"] if isinstance(cond, All) else w["any"], holds(cond, ctx), parts)
    if isinstance(cond, Not):
        return Explained(w["not"], holds(cond, ctx), (explain(cond.item, ctx, lang),))
    return Explained(leaf_text(cond, w), holds(cond, ctx))


def explain_rule(rule: Rule, ctx: Context, lang: str = "en") -> dict[str, Any]:
    """Which conditions of ``rule`` held for ``ctx``: its ``when``, its ``unless``, the outcome."""
    out: dict[str, Any] = {
        "rule": rule.id,
        "effect": rule.effect,
        "matched": rule_matches(rule, ctx),
        "when": explain(rule.when, ctx, lang).to_dict(),
    }
    if rule.unless is not None:
        out["unless"] = explain(rule.unless, ctx, lang).to_dict()
    return out
