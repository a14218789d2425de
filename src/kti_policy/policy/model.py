"""The checked policy set as frozen dataclasses: what ``loader`` builds and every later stage reads.

Nothing here does IO. Conditions are a small AST; ``conditions`` evaluates it directly (the
reference) and ``compile`` turns it into durable-rules JSON.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from kti_policy.errors import Position

from .durations import Period

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
class NamedList:
    """A list of values kept as data in the pack (e.g. the EEA countries), with when it was checked."""

    name: str
    values: tuple[str, ...]
    label: Text
    checked: str = ""  # the date someone last checked the list against its source
    source: str = ""  # where the list comes from (a decision, a URL)

    def to_dict(self) -> dict[str, Any]:
        return {"values": list(self.values), "label": self.label.to_dict(), "checked": self.checked, "source": self.source}


@dataclass(frozen=True)
class NamedPeriod:
    """A period kept as data in the pack (e.g. a retention period), with its legal citations."""

    name: str
    period: Period
    label: Text
    law: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {"period": self.period.to_data(), "label": self.label.to_dict(), "law": list(self.law)}


@dataclass(frozen=True)
class Law:
    """An act that rules cite (``law: [GDPR 17(3)(b)]``): its short id, title and where to read it."""

    id: str
    title: Text
    url: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"title": self.title.to_dict(), "url": self.url}


@dataclass(frozen=True)
class NoticeInfo:
    """The controller's details for the privacy notice (``notice:`` in ``vocabulary.yaml``): what
    ``kti-policy notice`` cannot read from the rules. ``bases`` maps a purpose id to the legal basis
    ids (``legal_basis_type``) it rests on."""

    controller: str
    address: str
    email: str
    register: Text | None = None
    dpo: str = ""  # the data protection officer's contact, when one is appointed
    updated: str = ""  # YYYY-MM-DD: when compliance staff last reviewed these details
    bases: Mapping[str, tuple[str, ...]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"controller": self.controller, "address": self.address, "email": self.email,
                "register": self.register.to_dict() if self.register else None, "dpo": self.dpo,
                "updated": self.updated, "bases": {k: list(v) for k, v in self.bases.items()}}


@dataclass(frozen=True)
class Vocabulary:
    """Ids known per kind (operation, purpose, data_category, ...), with labels; and the pack's
    data: named lists, named periods and the acts its rules cite."""

    kinds: Mapping[str, Mapping[str, VocabEntry]]
    lists: Mapping[str, NamedList] = field(default_factory=dict)
    periods: Mapping[str, NamedPeriod] = field(default_factory=dict)
    laws: Mapping[str, Law] = field(default_factory=dict)
    notice: NoticeInfo | None = None

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
        out["lists"] = {k: v.to_dict() for k, v in self.lists.items()}
        out["periods"] = {k: v.to_dict() for k, v in self.periods.items()}
        out["laws"] = {k: v.to_dict() for k, v in self.laws.items()}
        if self.notice is not None:
            out["notice"] = self.notice.to_dict()
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
    list_name: str | None = field(default=None, compare=False)  # written as {in_list: name}


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
class Elapsed:
    """The instant at ``path`` against ``period``: ``within`` it (the operation's Helsinki date is on
    or before the period's end) or, when ``within`` is false, more than it before the operation.
    Neither holds when the instant is not given (see ``durations``)."""

    path: str
    period: Period
    within: bool
    pos: Position | None = field(default=None, compare=False)
    period_name: str | None = field(default=None, compare=False)  # a named period of the pack


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


Condition = Const | Eq | In | Contains | ContainsAny | Present | Elapsed | All | AnyOf | Not


# --- rules and policies ------------------------------------------------------------------------


@dataclass(frozen=True)
class ObligationSpec:
    """An obligation a rule attaches to its decision, computed when the rule decides.

    ``respond_by`` and ``extension_notice_by`` take ``within`` ({"months": n} or
    {"business_days": n}) from the request's receipt; ``access_fee`` takes ``free_copies`` or
    ``free_per_months``; ``delete_by`` takes ``from`` (a time field), optional ``after`` and
    ``within`` (periods); ``retain_until`` takes ``from`` and ``period``; both optionally
    ``data_categories``. ``verify_identity`` and ``notify_recipients`` take nothing. Messages are
    optional templates overriding the built-in wording.
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
        d: dict[str, Any] = {"type": self.type}
        for name, value in self.params:
            if isinstance(value, Period):
                value = value.to_data()
            elif isinstance(value, tuple) and name != "within":
                value = list(value)
            d[name] = value
        for name, text in self.messages:
            d[name] = text.to_dict()
        return d


@dataclass(frozen=True)
class NoticeOverride:
    """A rule that follows the law where the register notice says otherwise (a *notice conflict*)."""

    notice: str  # the notice's sentence, as published
    why: Text  # what the law in force says instead

    def to_dict(self) -> dict[str, Any]:
        return {"notice": self.notice, "why": self.why.to_dict()}


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
    law: tuple[str, ...] = ()  # legal citations, e.g. ("GDPR 17(3)(b)", "KPL 2:10")
    overrides: NoticeOverride | None = None


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
                            "law": list(r.law),
                            "overrides_notice": r.overrides.to_dict() if r.overrides else None,
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


def condition_to_data(cond: Condition) -> Any:
    """The condition back in the policy file's own shape (for the API and the playground)."""
    if isinstance(cond, Eq):
        return {cond.path: cond.value}
    if isinstance(cond, In):
        if cond.list_name:
            return {cond.path: {"in_list": cond.list_name}}
        return {cond.path: {"in": list(cond.values)}}
    if isinstance(cond, Elapsed):
        return {cond.path: {"within" if cond.within else "more_than": cond.period_name or cond.period.to_data()}}
    if isinstance(cond, Contains):
        return {cond.path: {"contains": cond.value}}
    if isinstance(cond, ContainsAny):
        return {cond.path: {"contains_any": list(cond.values)}}
    if isinstance(cond, Present):
        return {cond.path: {"present": cond.expected}}
    if isinstance(cond, All):
        return {"all": [condition_to_data(c) for c in cond.items]}
    if isinstance(cond, AnyOf):
        return {"any": [condition_to_data(c) for c in cond.items]}
    if isinstance(cond, Not):
        return {"not": condition_to_data(cond.item)}
    if isinstance(cond, Const):
        return cond.value
    raise TypeError(cond)
