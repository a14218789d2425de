"""Load a policy folder into a checked ``PolicySet``, reporting every problem at once.

Layout: ``vocabulary.yaml`` plus one policy per ``*.yaml`` file; ``tests/`` holds policy tests and
is not read here. Every error carries ``file:line:col`` from the YAML node marks; nothing is
loaded unless the whole folder is clean, so a service can keep serving its old set.
"""

from __future__ import annotations

import difflib
import hashlib
import re
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

from kti_policy.errors import PolicyError, PolicyErrors, Position

from .durations import Period, PeriodSyntaxError, parse_period
from .fields import FIELDS, TIME_OPERATORS
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
    Law,
    NamedList,
    NamedPeriod,
    Not,
    NoticeInfo,
    NoticeOverride,
    ObligationSpec,
    Policy,
    PolicySet,
    Present,
    Rule,
    Text,
    VocabEntry,
    Vocabulary,
)
from .yamlpos import LList, LMap, load_file, load_text

VOCABULARY_FILE = "vocabulary.yaml"
VOCABULARY_KINDS = (
    "operation",
    "purpose",
    "data_category",
    "recipient_type",
    "source",
    "objection_scope",
    "consent_purpose",
    "request_type",
    "legal_basis_type",
    "relationship",
    "channel",
    "subject_kind",
    "cookie_kind",
    "transfer_safeguard",
)
# kinds every vocabulary must have (the later ones came with CONTRACT v2 and may be left out)
REQUIRED_KINDS = VOCABULARY_KINDS[:10]
VOCABULARY_FILE_KEYS = ("vocabulary", "lists", "periods", "laws", "notice")
NOTICE_KEYS = ("controller", "register", "address", "email", "dpo", "updated", "bases")
NOTICE_REQUIRED = ("controller", "address", "email")
EMAIL_RE = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
LAW_ID_RE = re.compile(r"^[A-Z0-9][A-Za-z0-9/]*$")
# a provision: "12(3)", "17(3)(b)", "44-49", "21(2)-(3)", "2:10" (chapter:section), "6(1)(c)"
PROVISION_RE = re.compile(r"^\d+[a-z]?(?::\d+[a-z]?)?(?:\(\d+[a-z]?\)|\([a-z]\))*(?:-(?:\d+[a-z]?|\(\d+\)))?$")
# acts a pack may cite without declaring them (RULES "Acts cited")
KNOWN_LAWS = ("GDPR", "TSL", "SVPL", "KPL", "1182/71")
ID_RE = re.compile(r"^[a-z][a-z0-9_]*$")
RULE_ID_RE = re.compile(r"^[a-z][a-z0-9_]*(?:[.-][a-z0-9_]+)*$")
COUNTRY_RE = re.compile(r"^[A-Z]{2}$")
OBLIGATION_TYPES = {
    "respond_by": ("within",),
    "extension_notice_by": ("within",),
    "access_fee": ("free_copies", "free_per_months"),
    "delete_by": ("from", "after", "within", "data_categories"),
    "retain_until": ("from", "period", "data_categories"),
    "verify_identity": (),
    "notify_recipients": (),
}
OBLIGATION_MESSAGES = {
    "respond_by": ("message",),
    "extension_notice_by": ("message",),
    "access_fee": ("message_free", "message_chargeable"),
    "delete_by": ("message",),
    "retain_until": ("message",),
    "verify_identity": ("message",),
    "notify_recipients": ("message",),
}
RESERVED_RULE_IDS = {"default.deny", "eval_error"}


class _Checker:
    """Collects errors while building model objects from positioned YAML data."""

    def __init__(self) -> None:
        self.errors: list[PolicyError] = []

    def err(self, code: str, message: str, pos: Position) -> None:
        self.errors.append(PolicyError(code, message, pos))

    def mapping(self, value: Any, pos: Position, what: str) -> LMap | None:
        if not isinstance(value, LMap):
            self.err("wrong_type", f"{what} must be a mapping, not {_kind(value)}", getattr(value, "pos", pos))
            return None
        return value

    def keys(self, m: LMap, allowed: tuple[str, ...], required: tuple[str, ...], what: str) -> None:
        for key in m:
            if key not in allowed:
                hint = _suggest(str(key), allowed)
                self.err("unknown_key", f"unknown key {key!r} in {what}{hint}; allowed: {', '.join(allowed)}", m.key_at(key))
        for key in required:
            if key not in m:
                self.err("missing_key", f"{what} needs {key!r}", m.pos)

    def string(self, m: LMap, key: str, what: str, required: bool = True) -> str | None:
        if key not in m:
            return None
        value = m[key]
        if not isinstance(value, str) or (required and not value.strip()):
            self.err("wrong_type", f"{what}.{key} must be a non-empty string, not {_kind(value)}", m.at(key))
            return None
        return value

    def text(self, m: LMap, key: str, what: str) -> Text | None:
        if key not in m:
            return None
        value = m[key]
        sub = self.mapping(value, m.at(key), f"{what}.{key}")
        if sub is None:
            return None
        for k in sub:
            if k not in ("fi", "en"):
                self.err("unknown_key", f"{what}.{key} has unknown language {k!r}; use fi and en", sub.key_at(k))
        out = {}
        for lang in ("fi", "en"):
            if lang not in sub:
                self.err("missing_translation", f"{what}.{key} has no {lang!r} text", sub.pos)
            elif not isinstance(sub[lang], str) or not sub[lang].strip():
                self.err("wrong_type", f"{what}.{key}.{lang} must be non-empty text", sub.at(lang))
            else:
                out[lang] = sub[lang].strip()
        return Text(**out) if len(out) == 2 else None


def _kind(value: Any) -> str:
    if value is None:
        return "nothing"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    return type(value).__name__


def _suggest(word: str, options: Any) -> str:
    close = difflib.get_close_matches(word, list(options), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


# --- vocabulary --------------------------------------------------------------------------------


def _build_vocabulary(data: Any, file: str, ck: _Checker) -> Vocabulary | None:
    root = ck.mapping(data, Position(file, 1, 1), "the vocabulary file")
    if root is None:
        return None
    ck.keys(root, VOCABULARY_FILE_KEYS, ("vocabulary",), "the vocabulary file")
    kinds_map = ck.mapping(root.get("vocabulary"), root.at("vocabulary"), "vocabulary") if "vocabulary" in root else None
    if kinds_map is None:
        return None
    ck.keys(kinds_map, VOCABULARY_KINDS, REQUIRED_KINDS, "vocabulary")
    kinds: dict[str, dict[str, VocabEntry]] = {}
    for kind in VOCABULARY_KINDS:
        entries = ck.mapping(kinds_map.get(kind), kinds_map.at(kind), f"vocabulary.{kind}") if kind in kinds_map else None
        kinds[kind] = {}
        if entries is None:
            continue
        for vid, body in entries.items():
            where = f"vocabulary.{kind}.{vid}"
            if not isinstance(vid, str) or not ID_RE.match(vid):
                ck.err("invalid_id", f"{where}: ids are lowercase snake_case", entries.key_at(vid))
                continue
            em = ck.mapping(body, entries.at(vid), where)
            if em is None:
                continue
            # Short form {fi, en} is the label itself; long form has label/description/special.
            if "label" in em:
                ck.keys(em, ("label", "description", "special"), ("label",), where)
                label = ck.text(em, "label", where)
                desc = ck.text(em, "description", where)
                special = em.get("special", False)
                if not isinstance(special, bool):
                    ck.err("wrong_type", f"{where}.special must be true or false", em.at("special"))
                    special = False
            else:
                ck.keys(em, ("fi", "en"), ("fi", "en"), where)
                for lang in ("fi", "en"):
                    if lang in em and (not isinstance(em[lang], str) or not em[lang].strip()):
                        ck.err("wrong_type", f"{where}.{lang} must be non-empty text, not {_kind(em[lang])}", em.at(lang))
                label = Text(em["fi"], em["en"]) if all(isinstance(em.get(k), str) and em[k].strip() for k in ("fi", "en")) else None
                desc, special = None, False
            if label is not None:
                kinds[kind][vid] = VocabEntry(vid, label, desc, bool(special))
    laws = _build_laws(root, ck)
    notice = _build_notice(root, ck, kinds)
    return Vocabulary(kinds, _build_lists(root, ck), _build_periods(root, ck, laws), laws, notice)


def _build_notice(root: LMap, ck: _Checker, kinds: Mapping[str, Mapping[str, VocabEntry]]) -> NoticeInfo | None:
    """``notice: {controller, register, address, email, dpo, updated, bases}``: the controller's
    details for ``kti-policy notice``; ``bases`` maps purpose ids to legal basis ids."""
    if "notice" not in root:
        return None
    m = ck.mapping(root["notice"], root.at("notice"), "notice")
    if m is None:
        return None
    ck.keys(m, NOTICE_KEYS, NOTICE_REQUIRED, "notice")
    strings = {k: ck.string(m, k, "notice") for k in ("controller", "address", "email", "dpo", "updated")}
    email = strings["email"]
    if email is not None and not EMAIL_RE.match(email.strip()):
        ck.err("wrong_type", f"notice.email must be an e-mail address like tietosuoja@example.fi, not {email!r}", m.at("email"))
    updated = m.get("updated")
    if "updated" in m and not (isinstance(updated, str) and re.match(r"^\d{4}-\d{2}-\d{2}$", updated)):
        ck.err("wrong_type", "notice.updated must be the date the details were reviewed, YYYY-MM-DD (quote it)", m.at("updated"))
    register = ck.text(m, "register", "notice")
    bases: dict[str, tuple[str, ...]] = {}
    if "bases" in m:
        bm = ck.mapping(m["bases"], m.at("bases"), "notice.bases")
        for purpose, body in (bm or {}).items():
            where = f"notice.bases.{purpose}"
            if purpose not in kinds.get("purpose", {}):
                ck.err("unknown_vocabulary_id", f"{where}: {purpose!r} is not a purpose of the vocabulary{_suggest(str(purpose), kinds.get('purpose', {}))}",
                       bm.key_at(purpose))  # type: ignore[union-attr]
                continue
            if not isinstance(body, LList) or not body:
                ck.err("wrong_type", f"{where} must be a non-empty list of legal basis ids, e.g. [contract]", bm.at(purpose))  # type: ignore[union-attr]
                continue
            ok = True
            for i, b in enumerate(body):
                if not isinstance(b, str) or b not in kinds.get("legal_basis_type", {}):
                    known = ", ".join(kinds.get("legal_basis_type", {}))
                    ck.err("unknown_vocabulary_id", f"{where}[{i}]: {b!r} is not a legal_basis_type{_suggest(str(b), kinds.get('legal_basis_type', {}))}; known: {known}", body.at(i))
                    ok = False
            if ok:
                bases[purpose] = tuple(body)
    if any(strings[k] is None for k in NOTICE_REQUIRED):
        return None
    return NoticeInfo(
        controller=strings["controller"].strip(),  # type: ignore[union-attr]
        address=strings["address"].strip(),  # type: ignore[union-attr]
        email=strings["email"].strip(),  # type: ignore[union-attr]
        register=register,
        dpo=(strings["dpo"] or "").strip(),
        updated=updated if isinstance(updated, str) else "",
        bases=bases,
    )


def _named(root: LMap, key: str, ck: _Checker, id_re: re.Pattern[str], what: str) -> Iterator[tuple[str, LMap, str]]:
    """Each ``name: {...}`` entry of the top-level ``key`` section, its name checked by ``id_re``."""
    entries = ck.mapping(root[key], root.at(key), key) if key in root else None
    for name, body in (entries or {}).items():
        where = f"{key}.{name}"
        if not isinstance(name, str) or not id_re.match(name):
            ck.err("invalid_id", f"{where}: {what}", entries.key_at(name))  # type: ignore[union-attr]
            continue
        m = ck.mapping(body, entries.at(name), where)  # type: ignore[union-attr]
        if m is not None:
            yield name, m, where


def _build_lists(root: LMap, ck: _Checker) -> dict[str, NamedList]:
    """``lists: {name: {label, checked, source, values: [...]}}``: values kept as data."""
    out: dict[str, NamedList] = {}
    for name, m, where in _named(root, "lists", ck, ID_RE, "list names are lowercase snake_case"):
        ck.keys(m, ("label", "checked", "source", "values"), ("label", "checked", "values"), where)
        label = ck.text(m, "label", where)
        checked = m.get("checked")
        if "checked" in m and not (isinstance(checked, str) and re.match(r"^\d{4}-\d{2}-\d{2}$", checked)) and not hasattr(checked, "isoformat"):
            ck.err("wrong_type", f"{where}.checked must be the date it was checked, YYYY-MM-DD", m.at("checked"))
        values = m.get("values")
        if not isinstance(values, LList) or not values:
            ck.err("wrong_type", f"{where}.values must be a non-empty list of strings", m.at("values") if "values" in m else m.pos)
            continue
        bad = [i for i, v in enumerate(values) if not (isinstance(v, str) and v)]
        if bad:
            v = values[bad[0]]
            hint = " (YAML reads NO, YES, ON and OFF as booleans: quote them, e.g. \"NO\")" if isinstance(v, bool) else ""
            ck.err("wrong_type", f"{where}.values[{bad[0]}] must be a string, not {_kind(v)}{hint}", values.at(bad[0]))
            continue
        if label is not None:
            source = m.get("source")
            out[name] = NamedList(name, tuple(values), label, str(checked or ""), source if isinstance(source, str) else "")
    return out


def _build_periods(root: LMap, ck: _Checker, laws: Mapping[str, Law]) -> dict[str, NamedPeriod]:
    """``periods: {name: {label, period: "6 years from year end", law: [...]}}``."""
    out: dict[str, NamedPeriod] = {}
    for name, m, where in _named(root, "periods", ck, ID_RE, "period names are lowercase snake_case"):
        ck.keys(m, ("label", "period", "law"), ("label", "period"), where)
        label = ck.text(m, "label", where)
        period = _period(m.get("period"), m.at("period") if "period" in m else m.pos, f"{where}.period", ck)
        law = _citations(m, where, ck, laws)
        if label is not None and period is not None:
            out[name] = NamedPeriod(name, period, label, law)
    return out


def _build_laws(root: LMap, ck: _Checker) -> dict[str, Law]:
    """``laws: {GDPR: {fi, en, url}}``: the acts rules may cite, with their titles."""
    out: dict[str, Law] = {}
    for name, m, where in _named(root, "laws", ck, LAW_ID_RE, "an act's id is its short name, e.g. GDPR or KPL"):
        ck.keys(m, ("title", "url"), ("title",), where)
        title = ck.text(m, "title", where)
        url = m.get("url")
        if title is not None:
            out[name] = Law(name, title, url if isinstance(url, str) else "")
    return out


def _period(value: Any, pos: Position, where: str, ck: _Checker) -> Period | None:
    if not isinstance(value, str):
        ck.err("invalid_period", f"{where} must be a period like '1 month' or '6 years from year end', not {_kind(value)}", pos)
        return None
    try:
        return parse_period(value)
    except PeriodSyntaxError as exc:
        ck.err("invalid_period", f"{where}: {exc}", pos)
        return None


def check_citation(text: Any, laws: Mapping[str, Law]) -> str | None:
    """Why ``text`` is not a legal citation like ``GDPR 17(3)(b)`` or ``KPL 2:10`` (None if it is)."""
    if not isinstance(text, str):
        return f"a citation is text like 'GDPR 12(3)', not {_kind(text)}"
    act, _, provision = text.strip().partition(" ")
    known = tuple(laws) or KNOWN_LAWS
    if act not in known:
        return f"{text!r} does not start with a known act{_suggest(act, known)}; known: {', '.join(known)}"
    if not PROVISION_RE.match(provision.strip()):
        return f"{text!r}: after the act comes an article or section like 12(3), 17(3)(b), 44-49 or 2:10"
    return None


def _citations(m: LMap, where: str, ck: _Checker, laws: Mapping[str, Law]) -> tuple[str, ...]:
    if "law" not in m:
        return ()
    items = m["law"]
    if not isinstance(items, LList):
        ck.err("invalid_citation", f"{where}.law must be a list of citations, e.g. [GDPR 17(3)(b), KPL 2:10]", m.at("law"))
        return ()
    out = []
    for i, item in enumerate(items):
        problem = check_citation(item, laws)
        if problem:
            ck.err("invalid_citation", f"{where}.law[{i}]: {problem}", items.at(i))
        else:
            out.append(" ".join(str(item).split()))
    return tuple(out)


# --- conditions --------------------------------------------------------------------------------

_OPS = ("in", "contains", "contains_any", "present", "in_list", *TIME_OPERATORS)


class _ConditionBuilder:
    def __init__(self, ck: _Checker, vocab: Vocabulary | None) -> None:
        self.ck = ck
        self.vocab = vocab

    def build(self, data: Any, pos: Position, where: str) -> Condition | None:
        if isinstance(data, bool):
            return Const(data, pos)
        m = self.ck.mapping(data, pos, where)
        if m is None:
            return None
        items: list[Condition] = []
        ok = True
        for key, value in m.items():
            vpos = m.at(key)
            if key in ("all", "any"):
                if not isinstance(value, LList):
                    self.ck.err("wrong_type", f"{where}.{key} must be a list of conditions", vpos)
                    ok = False
                    continue
                subs = [self.build(v, value.at(i), f"{where}.{key}[{i}]") for i, v in enumerate(value)]
                if any(s is None for s in subs):
                    ok = False
                    continue
                cls = All if key == "all" else AnyOf
                items.append(cls(tuple(s for s in subs if s is not None), m.key_at(key)))
            elif key == "not":
                sub = self.build(value, vpos, f"{where}.not")
                if sub is None:
                    ok = False
                else:
                    items.append(Not(sub, m.key_at(key)))
            else:
                leaf = self.leaf(str(key), value, m.key_at(key), vpos, where)
                if leaf is None:
                    ok = False
                else:
                    items.append(leaf)
        if not ok:
            return None
        if len(items) == 1:
            return items[0]
        return All(tuple(items), m.pos)

    def leaf(self, path: str, value: Any, kpos: Position, vpos: Position, where: str) -> Condition | None:
        field = FIELDS.get(path)
        if field is None:
            hint = _suggest(path, list(FIELDS) + ["all", "any", "not"])
            self.ck.err("unknown_field", f"{where}: unknown field {path!r}{hint}; fields: {', '.join(FIELDS)}", kpos)
            return None
        if isinstance(value, LMap):
            if len(value) != 1:
                self.ck.err("wrong_type", f"{where}.{path}: give exactly one of {', '.join(_OPS)}", vpos)
                return None
            (op, arg), = value.items()
            apos = value.at(op)
            if op not in _OPS:
                self.ck.err("unknown_operator", f"{where}.{path}: unknown operator {op!r}{_suggest(str(op), _OPS)}; use one of {', '.join(_OPS)}", value.key_at(op))
                return None
            if op == "present":
                if not isinstance(arg, bool):
                    self.ck.err("wrong_type", f"{where}.{path}.present must be true or false", apos)
                    return None
                return Present(path, arg, kpos)
            if (op in TIME_OPERATORS) != (field.shape == "time"):
                if field.shape == "time":
                    self.ck.err("invalid_operator", f"{where}.{path} is a time: use {{within: <period>}}, {{more_than: <period>}} or {{present: ...}}", value.key_at(op))
                else:
                    self.ck.err("invalid_operator", f"{where}.{path}: {op} works on time fields only ({', '.join(p for p, f in FIELDS.items() if f.shape == 'time')})", value.key_at(op))
                return None
            if op in TIME_OPERATORS:
                return self.elapsed(path, op, arg, kpos, apos, where)
            if op == "in_list":
                return self.in_list(path, field, arg, kpos, apos, where)
            if op in ("contains", "contains_any") and field.shape != "list":
                self.ck.err("invalid_operator", f"{where}.{path}: {op} works on list fields only (data_categories, subject.consents, subject.objections)", value.key_at(op))
                return None
            if op == "in" and field.shape == "list":
                self.ck.err("invalid_operator", f"{where}.{path} is a list: use contains or contains_any, not in", value.key_at(op))
                return None
            if op in ("in", "contains_any"):
                if not isinstance(arg, LList) or not arg:
                    self.ck.err("wrong_type", f"{where}.{path}.{op} must be a non-empty list", apos)
                    return None
                vals = [self.value(field, v, arg.at(i), f"{where}.{path}.{op}[{i}]") for i, v in enumerate(arg)]
                if any(v is _BAD for v in vals):
                    return None
                if op == "contains_any" and None in vals:
                    self.ck.err("wrong_type", f"{where}.{path}.contains_any: a list holds ids, not null (use present: false for an empty list)", apos)
                    return None
                return In(path, tuple(vals), kpos) if op == "in" else ContainsAny(path, tuple(vals), kpos)
            v = self.value(field, arg, apos, f"{where}.{path}.contains")
            if v is None:
                self.ck.err("wrong_type", f"{where}.{path}.contains needs an id, not null (use present: false for an empty list)", apos)
                return None
            return None if v is _BAD else Contains(path, v, kpos)
        if isinstance(value, LList):
            self.ck.err("wrong_type", f"{where}.{path}: a list needs an operator: {{in: [...]}} or {{contains_any: [...]}}", vpos)
            return None
        if field.shape == "list":
            self.ck.err("invalid_operator", f"{where}.{path} is a list: use {{contains: ...}} or {{present: ...}}", vpos)
            return None
        if field.shape == "time":
            self.ck.err("invalid_operator", f"{where}.{path} is a time: use {{within: <period>}}, {{more_than: <period>}} or {{present: ...}}", vpos)
            return None
        v = self.value(field, value, vpos, f"{where}.{path}")
        return None if v is _BAD else Eq(path, v, kpos)

    def elapsed(self, path: str, op: str, arg: Any, kpos: Position, apos: Position, where: str) -> Condition | None:
        """``{within: <period>}`` / ``{more_than: <period>}``: a period written out or a named one."""
        periods = self.vocab.periods if self.vocab is not None else {}
        if isinstance(arg, str) and arg.strip() in periods:
            named = periods[arg.strip()]
            return Elapsed(path, named.period, op == "within", kpos, named.name)
        if isinstance(arg, str) and not any(c.isdigit() for c in arg):
            known = ", ".join(periods) or "none"
            self.ck.err("invalid_period", f"{where}.{path}.{op}: {arg!r} is neither a period like '1 month' nor a named period{_suggest(arg, periods)}; named periods: {known}", apos)
            return None
        period = _period(arg, apos, f"{where}.{path}.{op}", self.ck)
        return None if period is None else Elapsed(path, period, op == "within", kpos)

    def in_list(self, path: str, field: Any, arg: Any, kpos: Position, apos: Position, where: str) -> Condition | None:
        """``{in_list: name}``: one of the values of a named list of the pack."""
        lists = self.vocab.lists if self.vocab is not None else {}
        if field.shape != "scalar":
            self.ck.err("invalid_operator", f"{where}.{path}: in_list works on single-value fields", kpos)
            return None
        if not isinstance(arg, str) or arg not in lists:
            self.ck.err("unknown_list", f"{where}.{path}.in_list: unknown list {arg!r}{_suggest(str(arg), lists)}; lists: {', '.join(lists) or 'none'}", apos)
            return None
        vals = [self.value(field, v, apos, f"{where}.{path}.in_list {arg}") for v in lists[arg].values]
        if any(v is _BAD for v in vals):
            return None
        return In(path, tuple(vals), kpos, arg)

    def value(self, field: Any, value: Any, pos: Position, where: str) -> Any:
        if value is None:
            return None
        if field.shape == "bool":
            if not isinstance(value, bool):
                self.ck.err("wrong_type", f"{where} must be true or false, not {_kind(value)}", pos)
                return _BAD
            return value
        if not isinstance(value, str):
            self.ck.err("wrong_type", f"{where} must be a string, not {_kind(value)}", pos)
            return _BAD
        if field.vocab and self.vocab is not None and not self.vocab.knows(field.vocab, value):
            known = self.vocab.ids(field.vocab)
            self.ck.err(
                "unknown_vocabulary_id",
                f"{where}: unknown {field.vocab} {value!r}{_suggest(value, known)}; known: {', '.join(known)}",
                pos,
            )
            return _BAD
        if field.path == "recipient.country" and not COUNTRY_RE.match(value):
            self.ck.err("invalid_value", f"{where}: {value!r} is not an ISO 3166 alpha-2 code like FI", pos)
            return _BAD
        return value


_BAD = object()


# --- policies ----------------------------------------------------------------------------------


def _build_obligations(data: Any, pos: Position, where: str, ck: _Checker, vocab: Vocabulary | None) -> tuple[ObligationSpec, ...]:
    if not isinstance(data, LList):
        ck.err("wrong_type", f"{where} must be a list", pos)
        return ()
    out = []
    for i, item in enumerate(data):
        ipos = data.at(i)
        m = ck.mapping(item, ipos, f"{where}[{i}]")
        if m is None:
            continue
        types = [k for k in m if k in OBLIGATION_TYPES]
        if len(types) != 1:
            ck.err("invalid_obligation", f"{where}[{i}] needs exactly one of: {', '.join(OBLIGATION_TYPES)}", ipos)
            continue
        otype = types[0]
        allowed = (otype,) + OBLIGATION_MESSAGES[otype]
        ck.keys(m, allowed, (), f"{where}[{i}]")
        w = f"{where}[{i}].{otype}"
        if m[otype] is None and not OBLIGATION_TYPES[otype]:
            body: LMap | None = LMap()
            body.pos, body.key_pos, body.val_pos = m.at(otype), {}, {}  # type: ignore[union-attr]
        else:
            body = ck.mapping(m[otype], m.at(otype), w)
        if body is None:
            continue
        params = _obligation_params(otype, body, w, ck, vocab)
        if params is None:
            continue
        messages = []
        for name in OBLIGATION_MESSAGES[otype]:
            text = ck.text(m, name, f"{where}[{i}]")
            if text is not None:
                messages.append((name, text))
        out.append(ObligationSpec(otype, tuple(sorted(params.items())), tuple(messages), ipos))
    return tuple(out)


def _whole(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1


def _obligation_params(otype: str, body: LMap, w: str, ck: _Checker, vocab: Vocabulary | None) -> dict[str, Any] | None:
    """The checked parameters of one obligation (None after reporting what is wrong)."""
    params: dict[str, Any] = {}
    if otype in ("respond_by", "extension_notice_by"):
        ck.keys(body, ("months", "business_days"), (), w)
        units = [k for k in ("months", "business_days") if k in body]
        if len(units) != 1 or not _whole(body[units[0]]):
            ck.err("invalid_obligation", f"{w} needs one of months or business_days, a whole number of at least 1", body.pos)
            return None
        params["within"] = (units[0], body[units[0]])
        return params
    if otype == "access_fee":
        ck.keys(body, OBLIGATION_TYPES[otype], (), w)
        given = [k for k in OBLIGATION_TYPES[otype] if k in body]
        if len(given) != 1 or not _whole(body[given[0]]):
            ck.err("invalid_obligation", f"{w} needs one of free_copies or free_per_months, a whole number of at least 1", body.at(given[0]) if given else body.pos)
            return None
        params[given[0]] = body[given[0]]
        return params
    if otype in ("verify_identity", "notify_recipients"):
        ck.keys(body, (), (), w)
        return params
    required = ("from", "within") if otype == "delete_by" else ("from", "period")
    ck.keys(body, OBLIGATION_TYPES[otype], required, w)
    if any(k not in body for k in required):
        return None
    source = body["from"]
    if not (isinstance(source, str) and source in FIELDS and FIELDS[source].shape == "time"):
        times = ", ".join(p for p, f in FIELDS.items() if f.shape == "time")
        ck.err("invalid_obligation", f"{w}.from must be a time field ({times}), not {source!r}", body.at("from"))
        return None
    params["from"] = source
    periods = vocab.periods if vocab is not None else {}
    for key in ("after", "within", "period"):
        if key in body:
            raw = body[key]
            if isinstance(raw, str) and raw.strip() in periods:
                params[key] = periods[raw.strip()].period
            else:
                period = _period(raw, body.at(key), f"{w}.{key}", ck)
                if period is None:
                    return None
                params[key] = period
    if "data_categories" in body:
        cats = body["data_categories"]
        if not isinstance(cats, LList) or not cats or not all(isinstance(c, str) for c in cats):
            ck.err("wrong_type", f"{w}.data_categories must be a non-empty list of data category ids", body.at("data_categories"))
            return None
        unknown = [c for c in cats if vocab is not None and not vocab.knows("data_category", c)]
        if unknown:
            ck.err("unknown_vocabulary_id", f"{w}.data_categories: unknown data_category {unknown[0]!r}", body.at("data_categories"))
            return None
        params["data_categories"] = tuple(cats)
    return params


_POLICY_KEYS = ("policy", "title", "source", "description", "rules")
_RULE_KEYS = ("id", "effect", "source", "law", "overrides_notice", "description", "when", "unless", "reason", "obligations")


def _build_policy(data: Any, file: str, ck: _Checker, vocab: Vocabulary | None) -> Policy | None:
    root = ck.mapping(data, Position(file, 1, 1), "a policy file")
    if root is None:
        return None
    ck.keys(root, _POLICY_KEYS, ("policy", "title", "rules"), "the policy")
    pid = ck.string(root, "policy", "policy")
    if pid is not None and not ID_RE.match(pid):
        ck.err("invalid_id", f"policy id {pid!r} must be lowercase snake_case", root.at("policy"))
    title = ck.text(root, "title", "policy")
    psource = ck.string(root, "source", "policy", required=False) or ""
    pdesc = ck.text(root, "description", "policy")
    rules_data = root.get("rules")
    rules: list[Rule] = []
    if "rules" in root and not isinstance(rules_data, LList):
        ck.err("wrong_type", "rules must be a list of rules", root.at("rules"))
    elif isinstance(rules_data, LList):
        if not rules_data:
            ck.err("wrong_type", "rules must not be empty", root.at("rules"))
        cb = _ConditionBuilder(ck, vocab)
        for i, rd in enumerate(rules_data):
            rule = _build_rule(rd, rules_data.at(i), f"rules[{i}]", ck, cb, pid or "?", psource)
            if rule is not None:
                rules.append(rule)
    if pid is None or title is None:
        return None
    return Policy(pid, title, psource, tuple(rules), file, pdesc)


def _build_rule(data: Any, pos: Position, where: str, ck: _Checker, cb: _ConditionBuilder, policy: str, psource: str) -> Rule | None:
    m = ck.mapping(data, pos, where)
    if m is None:
        return None
    ck.keys(m, _RULE_KEYS, ("id", "effect", "when", "reason"), f"rule {m.get('id', where)}")
    rid = ck.string(m, "id", where)
    where = f"rule {rid}" if rid else where
    if rid is not None and (not RULE_ID_RE.match(rid) or rid in RESERVED_RULE_IDS):
        ck.err("invalid_id", f"{where}: rule ids are lowercase words joined by '.', '-' or '_' (and not {', '.join(sorted(RESERVED_RULE_IDS))})", m.at("id"))
    effect = m.get("effect")
    if "effect" in m and effect not in ("permit", "forbid"):
        ck.err("invalid_value", f"{where}: effect must be permit or forbid, not {effect!r}", m.at("effect"))
    source = ck.string(m, "source", where, required=False) or psource
    if not source:
        ck.err("missing_key", f"{where} needs a source citation (on the rule or its policy), e.g. \"§7\"", m.pos)
    reason = ck.text(m, "reason", where)
    desc = ck.text(m, "description", where)
    when = cb.build(m["when"], m.at("when"), f"{where}.when") if "when" in m else None
    unless = cb.build(m["unless"], m.at("unless"), f"{where}.unless") if "unless" in m else None
    obligations = _build_obligations(m["obligations"], m.at("obligations"), f"{where}.obligations", ck, cb.vocab) if "obligations" in m else ()
    law = _citations(m, where, ck, cb.vocab.laws if cb.vocab is not None else {})
    overrides = _notice_override(m, where, ck)
    if rid is None or effect not in ("permit", "forbid") or reason is None or when is None or ("unless" in m and unless is None):
        return None
    return Rule(rid, effect, when, reason, source, policy, unless, obligations, desc, m.key_at("id"), law, overrides)


def _notice_override(m: LMap, where: str, ck: _Checker) -> NoticeOverride | None:
    """``overrides_notice: {notice: "<the notice's sentence>", why: {fi, en}}``."""
    if "overrides_notice" not in m:
        return None
    body = ck.mapping(m["overrides_notice"], m.at("overrides_notice"), f"{where}.overrides_notice")
    if body is None:
        return None
    ck.keys(body, ("notice", "why"), ("notice", "why"), f"{where}.overrides_notice")
    notice = ck.string(body, "notice", f"{where}.overrides_notice")
    why = ck.text(body, "why", f"{where}.overrides_notice")
    return NoticeOverride(notice.strip(), why) if notice and why else None


# --- the folder --------------------------------------------------------------------------------


def policy_files(directory: Path) -> list[Path]:
    """Policy files of a folder: every ``*.yaml``/``*.yml`` at its top level except the vocabulary."""
    return sorted(
        p for p in directory.iterdir()
        if p.is_file() and p.suffix in (".yaml", ".yml") and p.name != VOCABULARY_FILE
    )


def _display(path: Path, base: Path) -> str:
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def load_policy_set(directory: str | Path, overrides: dict[str, str] | None = None) -> PolicySet:
    """Load and check ``directory``; raise ``PolicyErrors`` with every problem found.

    ``overrides`` maps a file name (relative to the folder) to text used instead of the file on
    disk, or to "" to drop it: the playground checks an edited copy without touching the folder.
    """
    base = Path(directory)
    overrides = dict(overrides or {})
    if not base.is_dir():
        raise PolicyErrors([PolicyError("policy_dir_missing", f"policy folder {base} does not exist", Position(str(base)))])
    sources: dict[str, tuple[str, str]] = {}  # name -> (display, text)
    for path in [base / VOCABULARY_FILE] + policy_files(base):
        if path.name in overrides or not path.exists():
            continue
        try:
            sources[path.name] = (_display(path, base), path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError) as exc:
            raise PolicyErrors([PolicyError("policy_parse_error", f"cannot read: {exc}", Position(_display(path, base)))]) from exc
    for name, text in overrides.items():
        if text:
            sources[name] = (_display(base / name, base), text)
    return build_policy_set(sources, str(base))


def build_policy_set(sources: dict[str, tuple[str, str]], directory: str = "") -> PolicySet:
    """Build a set from ``{file name: (display name, text)}``; the core of ``load_policy_set``."""
    ck = _Checker()
    vocab: Vocabulary | None = None
    if VOCABULARY_FILE not in sources:
        ck.err("missing_vocabulary", f"the policy folder needs {VOCABULARY_FILE}", Position(directory or ".", 0, 0))
    else:
        display, text = sources[VOCABULARY_FILE]
        data, errs = load_text(text, display)
        ck.errors += errs
        if data is not None:
            vocab = _build_vocabulary(data, display, ck)
    policies: list[Policy] = []
    for name in sorted(n for n in sources if n != VOCABULARY_FILE):
        display, text = sources[name]
        data, errs = load_text(text, display)
        ck.errors += errs
        if data is not None:
            pol = _build_policy(data, display, ck, vocab)
            if pol is not None:
                policies.append(pol)
    if not policies and VOCABULARY_FILE in sources and not ck.errors:
        ck.err("no_policies", "the policy folder has no policy files", Position(directory or ".", 0, 0))
    _check_unique(policies, ck)
    if ck.errors or vocab is None:
        raise PolicyErrors(ck.errors)
    return PolicySet(vocab, tuple(policies), version_of({n: t for n, (_, t) in sources.items()}), directory)


def version_of(texts: Mapping[str, str]) -> str:
    """A policy set's version: the hash of its files' names and texts (``{file name: text}``)."""
    digest = hashlib.sha256()
    for name in sorted(texts):
        digest.update(name.encode() + b"\0" + texts[name].encode() + b"\0")
    return digest.hexdigest()[:16]


def _check_unique(policies: list[Policy], ck: _Checker) -> None:
    seen_p: dict[str, Policy] = {}
    seen_r: dict[str, Rule] = {}
    for p in policies:
        if p.id in seen_p:
            ck.err("duplicate_policy_id", f"policy id {p.id!r} is also used in {seen_p[p.id].file}", Position(p.file, 1, 1))
        seen_p.setdefault(p.id, p)
        for r in p.rules:
            if r.id in seen_r:
                first = seen_r[r.id].pos
                ck.err("duplicate_rule_id", f"rule id {r.id!r} is already used at {first}", r.pos or Position(p.file))
            seen_r.setdefault(r.id, r)


def check_directory(directory: str | Path) -> tuple[PolicySet | None, list[PolicyError]]:
    """Load for ``kti-policy check``: the set (or None) and every error, without raising."""
    try:
        return load_policy_set(directory), []
    except PolicyErrors as exc:
        return None, exc.errors


_ = (Callable, load_file)  # re-exported helpers used by the policy test loader
