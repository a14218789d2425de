"""Obligations a deciding rule attaches: deadlines, the access fee, and what must be done.

- ``respond_by`` / ``extension_notice_by``: a date counted from the request's receipt (its
  ``received_at``, else the operation's ``at``, else now), GDPR 12(3), §2;
- ``access_fee``: whether a fee may be charged (GDPR 12(5), 15(3): only for a further copy or a
  manifestly unfounded or excessive request; the older 12-month window is kept for packs that use it);
- ``delete_by``: a date counted from a dated fact (the erasure request, the relationship's end),
  optionally after a retention period; ``retain_until``: the last day of a retention period. Both
  name the data categories they concern;
- ``verify_identity``, ``notify_recipients``: things to do, without a date (GDPR 12(6), 19).

The dates come from ``calendar`` (Europe/Helsinki, Finnish holidays) and ``durations``; a deadline
that falls on a weekend or a holiday moves to the next business day, except ``retain_until``, which
is the exact last day the law names ("31 December of year N"). The wording is built in and a rule
may override it with templates (``{due}`` is the date, in the reader's convention).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

from kti_policy.facts.fold import SubjectFacts
from kti_policy.policy import calendar
from kti_policy.policy.durations import Period
from kti_policy.policy.model import ObligationSpec, Rule, Text

from .operation import Operation

_TEXTS = {
    "respond_by": Text(
        fi="Pyyntöön on vastattava viimeistään {due}.",
        en="The request must be answered by {due}.",
    ),
    "extension_notice_by": Text(
        fi="Rekisteröidylle on ilmoitettava määräajan pidentämisestä ja sen syistä viimeistään {due}.",
        en="The data subject must be told of the extension and its reasons by {due}.",
    ),
    "delete_by": Text(
        fi="Tiedot ({categories}) on poistettava viimeistään {due}.",
        en="The data ({categories}) must be deleted by {due}.",
    ),
    "retain_until": Text(
        fi="Tiedot ({categories}) on säilytettävä {due} asti.",
        en="The data ({categories}) must be kept until {due}.",
    ),
    "verify_identity": Text(
        fi="Varmista pyytäjän henkilöllisyys ennen kuin annat tai muutat tietoja.",
        en="Verify the requester's identity before giving out or changing any data.",
    ),
    "notify_recipients": Text(
        fi="Ilmoita korjauksesta, poistosta tai rajoituksesta jokaiselle, jolle tietoja on luovutettu.",
        en="Tell every recipient the data was disclosed to about the rectification, erasure or restriction.",
    ),
}
_FEE_FREE = Text(
    fi="Tarkastus on maksuton.",
    en="The access request is free of charge.",
)
_FEE_CHARGEABLE = Text(
    fi="Tarkastuksesta voidaan periä kohtuullinen maksu.",
    en="A reasonable fee may be charged for this access request.",
)
_FEE_FREE_WINDOW = Text(
    fi="Tarkastus on maksuton: rekisteröity ei ole tehnyt muuta tarkastuspyyntöä edeltävien {months} kuukauden aikana.",
    en="The access request is free of charge: the subject made no other access request in the {months} months before.",
)
_FEE_CHARGEABLE_WINDOW = Text(
    fi="Tarkastuksesta voidaan periä maksu: rekisteröity on tehnyt toisen tarkastuspyynnön edeltävien {months} kuukauden aikana.",
    en="A fee may be charged: the subject made another access request in the {months} months before.",
)
# the obligation types whose spec carries a ``within`` deadline from the request's receipt
FROM_RECEIPT = ("respond_by", "extension_notice_by")


@dataclass(frozen=True)
class Obligation:
    type: str
    rule: str
    message: Text
    due: date | None = None
    chargeable: bool | None = None
    data_categories: tuple[str, ...] | None = None

    def to_dict(self, lang: str = "en") -> dict[str, Any]:
        d: dict[str, Any] = {"type": self.type}
        if self.due is not None:
            d["due"] = self.due.isoformat()
        if self.chargeable is not None:
            d["chargeable"] = self.chargeable
        if self.data_categories is not None:
            d["data_categories"] = list(self.data_categories)
        d["rule"] = self.rule
        msg = self.message.get(lang)
        if self.due is not None:
            msg = msg.replace("{due}", _date_text(self.due, lang))
        if self.data_categories is not None:
            msg = msg.replace("{categories}", ", ".join(self.data_categories) or "-")
        d["message"] = msg
        return d


def _date_text(d: date, lang: str) -> str:
    return f"{d.day}.{d.month}.{d.year}" if lang == "fi" else d.isoformat()


def deadline(start: date, period: Period) -> date:
    """A deadline ``period`` after ``start``, moved off weekends and holidays (CONTRACT 2)."""
    if period.unit == "business_days":
        return calendar.add_business_days(start, period.amount)
    if period.unit == "days":
        return calendar.next_business_day_on_or_after(start + timedelta(days=period.amount))
    return calendar.next_business_day_on_or_after(period.end(start))


def _categories(spec: ObligationSpec, op: Operation) -> tuple[str, ...]:
    asked = tuple(op.data.get("data_categories") or ())
    named = spec.param("data_categories")
    if not named:
        return asked
    return tuple(c for c in named if c in asked) if asked else tuple(named)


def compute(rule: Rule, spec: ObligationSpec, op: Operation, facts: SubjectFacts, at: datetime) -> Obligation | None:
    """The obligation ``spec`` of ``rule`` for this operation; None when its start is not known
    (a ``retain_until`` counted from a relationship that has not ended)."""
    text = spec.message("message") or _TEXTS.get(spec.type)
    received = op.received_at or at
    if spec.type in FROM_RECEIPT:
        unit, amount = spec.param("within")
        assert text is not None
        return Obligation(spec.type, rule.id, text, due=calendar.respond_by(received, {unit: amount}))
    if spec.type == "access_fee":
        return _access_fee(rule, spec, op, facts, received)
    if spec.type in ("verify_identity", "notify_recipients"):
        assert text is not None
        return Obligation(spec.type, rule.id, text)
    if spec.type in ("delete_by", "retain_until"):
        start = _start(spec, facts, at)
        if start is None:
            return None
        assert text is not None
        cats = _categories(spec, op)
        if spec.type == "retain_until":
            return Obligation("retain_until", rule.id, text, due=spec.param("period").end(start), data_categories=cats)
        after = spec.param("after")
        base = after.end(start) if after is not None else start
        return Obligation("delete_by", rule.id, text, due=deadline(base, spec.param("within")), data_categories=cats)
    raise ValueError(f"unknown obligation type {spec.type!r}")


def _start(spec: ObligationSpec, facts: SubjectFacts, at: datetime) -> date | None:
    """The Helsinki date a dated obligation counts from: its ``from`` fact, or the operation's
    day when the fact is known without a date (an inline ``erasure_requested: true``)."""
    path = spec.param("from")
    name = path.removeprefix("subject.")
    when = getattr(facts, name, None)
    if when is None:
        flag = {"erasure_requested_at": facts.erasure_requested, "relationship_ended_at": facts.relationship == "ended"}
        if not flag.get(name):
            return None
        when = at
    return calendar.to_helsinki_date(when)


def _access_fee(rule: Rule, spec: ObligationSpec, op: Operation, facts: SubjectFacts, received: datetime) -> Obligation:
    months = spec.param("free_per_months")
    if months is not None:  # the notice's 12-month window (kept for packs written before v2)
        chargeable = calendar.access_fee_chargeable(received, facts.access_requests, int(months))
        base = (spec.message("message_chargeable") or _FEE_CHARGEABLE_WINDOW) if chargeable else (spec.message("message_free") or _FEE_FREE_WINDOW)
        text = Text(base.fi.replace("{months}", str(months)), base.en.replace("{months}", str(months)))
        return Obligation("access_fee", rule.id, text, chargeable=chargeable)
    request = op.data.get("request") or {}
    free = int(spec.param("free_copies", 1))
    chargeable = int(request.get("copy_number") or 1) > free or bool(request.get("excessive"))
    text = (spec.message("message_chargeable") or _FEE_CHARGEABLE) if chargeable else (spec.message("message_free") or _FEE_FREE)
    return Obligation("access_fee", rule.id, text, chargeable=chargeable)
