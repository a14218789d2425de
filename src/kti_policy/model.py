"""The checked policy set as frozen dataclasses: what ``loader`` builds and every later stage reads.

Nothing here does IO. Conditions are a small AST; ``conditions`` evaluates it directly (the
reference) and ``compile`` turns it into durable-rules JSON.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .errors import Position

LANGS = ("en", "fi")


@dataclass(frozen=True)
class Text:
    """A text in both languages the service answers in."""

    fi: str
    en: str

    def get(self, lang: str) -> str:
        return self.fi if lang == "fi" else self.en

    def to_dict(self) -> dict[str, str]:
        return {"fi": self.fi, "en": self.en}


@dataclass(frozen=True)
class VocabEntry:
    id: str
    label: Text
    description: Text | None = None
    special: bool = False


@dataclass(frozen=True)
class Vocabulary:
    """Ids known per kind (operation, purpose, data_category, ...), with labels."""

    kinds: Mapping[str, Mapping[str, VocabEntry]]

    def ids(self, kind: str) -> list[str]:
        return list(self.kinds.get(kind, {}))

    def knows(self, kind: str, value: Any) -> bool:
        return isinstance(value, str) and value in self.kinds.get(kind, {})

    def label(self, kind: str, value: str, lang: str = "en") -> str:
        entry = self.kinds.get(kind, {}).get(value)
        return entry.label.get(lang) if entry else value

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for kind, entries in self.kinds.items():
            out[kind] = {}
            for e in entries.values():
                d: dict[str, Any] = {"label": e.label.to_dict()}
                if e.description:
                    d["description"] = e.description.to_dict()
                if e.special:
                    d["special"] = True
                out[kind][e.id] = d
        return out


# --- conditions -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Const:
    value: bool
    pos: Position | None = field(default=None, compare=False)


@dataclass(frozen=True)
class Eq:
    """``path`` equals ``value``; ``None`` means the field is not given."""

    path: str
    value: Any
    pos: Position | None = field(default=None, compare=False)


@dataclass(frozen=True)
class In:
    path: str
    values: tuple[Any, ...]
    pos: Position | None = field(default=None, compare=False)


@dataclass(frozen=True)
class Contains:
    """A list field holds ``value``."""

    path: str
    value: str
    pos: Position | None = field(default=None, compare=False)


@dataclass(frozen=True)
class ContainsAny:
    path: str
    values: tuple[str, ...]
    pos: Position | None = field(default=None, compare=False)


@dataclass(frozen=True)
class Present:
    """The field is given (a list: is not empty) when ``expected`` is true; absent otherwise."""

    path: str
    expected: bool
    pos: Position | None = field(default=None, compare=False)


@dataclass(frozen=True)
class All:
    items: tuple[Condition, ...]
    pos: Position | None = field(default=None, compare=False)


@dataclass(frozen=True)
class AnyOf:
    items: tuple[Condition, ...]
    pos: Position | None = field(default=None, compare=False)


@dataclass(frozen=True)
class Not:
    item: Condition
    pos: Position | None = field(default=None, compare=False)


Condition = Const | Eq | In | Contains | ContainsAny | Present | All | AnyOf | Not


# --- rules and policies ------------------------------------------------------------------------


@dataclass(frozen=True)
class ObligationSpec:
    """An obligation a rule attaches to its decision, computed when the rule decides.

    ``respond_by`` takes ``within`` ({"months": n} or {"business_days": n}); ``access_fee`` takes
    ``free_per_months``. Messages are optional templates overriding the built-in wording.
    """

    type: str
    params: tuple[tuple[str, Any], ...]
    messages: tuple[tuple[str, Text], ...] = ()
    pos: Position | None = field(default=None, compare=False)

    def param(self, name: str, default: Any = None) -> Any:
        return dict(self.params).get(name, default)

    def message(self, name: str) -> Text | None:
        return dict(self.messages).get(name)

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"type": self.type, **dict(self.params)}
        for name, text in self.messages:
            d[name] = text.to_dict()
        return d


@dataclass(frozen=True)
class Rule:
    id: str
    effect: str  # "permit" | "forbid"
    when: Condition
    reason: Text
    source: str
    policy: str
    unless: Condition | None = None
    obligations: tuple[ObligationSpec, ...] = ()
    description: Text | None = None
    pos: Position | None = field(default=None, compare=False)


@dataclass(frozen=True)
class Policy:
    id: str
    title: Text
    source: str
    rules: tuple[Rule, ...]
    file: str
    description: Text | None = None


@dataclass(frozen=True)
class PolicySet:
    """A loaded, checked policy folder. ``version`` is a content hash of its files."""

    vocabulary: Vocabulary
    policies: tuple[Policy, ...]
    version: str
    directory: str = ""

    @property
    def rules(self) -> tuple[Rule, ...]:
        return tuple(r for p in self.policies for r in p.rules)

    def rule(self, rule_id: str) -> Rule | None:
        for r in self.rules:
            if r.id == rule_id:
                return r
        return None

    def to_dict(self) -> dict[str, Any]:
        """The body of ``GET /v1/policies``."""
        from .conditions import condition_to_data

        return {
            "policy_version": self.version,
            "policies": [
                {
                    "id": p.id,
                    "title": p.title.to_dict(),
                    "source": p.source,
                    "file": p.file,
                    "rules": [
                        {
                            "id": r.id,
                            "effect": r.effect,
                            "source": r.source,
                            "reason": r.reason.to_dict(),
                            "when": condition_to_data(r.when),
                            "unless": condition_to_data(r.unless) if r.unless is not None else None,
                            "obligations": [o.to_dict() for o in r.obligations],
                            "line": r.pos.line if r.pos else None,
                        }
                        for r in p.rules
                    ],
                }
                for p in self.policies
            ],
            "rule_ids": [r.id for r in self.rules],
            "vocabulary": self.vocabulary.to_dict(),
        }
