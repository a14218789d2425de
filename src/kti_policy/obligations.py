"""Obligations a deciding rule attaches: ``respond_by`` dates and the ``access_fee``.

The dates come from ``calendar`` (Europe/Helsinki, Finnish holidays); the wording is built in and
a rule may override it with templates (``{due}`` is the date, in the reader's convention).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from . import calendar
from .facts import SubjectFacts
from .model import ObligationSpec, Rule, Text

_RESPOND_BY = Text(
    fi="Pyyntöön on vastattava viimeistään {due}.",
    en="The request must be answered by {due}.",
)
_FEE_FREE = Text(
    fi="Tarkastus on maksuton: rekisteröity ei ole tehnyt muuta tarkastuspyyntöä edeltävien {months} kuukauden aikana.",
    en="The access request is free of charge: the subject made no other access request in the {months} months before.",
)
_FEE_CHARGEABLE = Text(
    fi="Tarkastuksesta voidaan periä maksu: rekisteröity on tehnyt toisen tarkastuspyynnön edeltävien {months} kuukauden aikana.",
    en="A fee may be charged: the subject made another access request in the {months} months before.",
)


@dataclass(frozen=True)
class Obligation:
    type: str
    rule: str
    message: Text
    due: date | None = None
    chargeable: bool | None = None

    def to_dict(self, lang: str = "en") -> dict[str, Any]:
        d: dict[str, Any] = {"type": self.type}
        if self.due is not None:
            d["due"] = self.due.isoformat()
        if self.chargeable is not None:
            d["chargeable"] = self.chargeable
        d["rule"] = self.rule
        msg = self.message.get(lang)
        if self.due is not None:
            msg = msg.replace("{due}", _date_text(self.due, lang))
        d["message"] = msg
        return d


def _date_text(d: date, lang: str) -> str:
    return f"{d.day}.{d.month}.{d.year}" if lang == "fi" else d.isoformat()


def compute(rule: Rule, spec: ObligationSpec, received_at: datetime, facts: SubjectFacts) -> Obligation:
    if spec.type == "respond_by":
        unit, amount = spec.param("within")
        due = calendar.respond_by(received_at, {unit: amount})
        return Obligation("respond_by", rule.id, spec.message("message") or _RESPOND_BY, due=due)
    if spec.type == "access_fee":
        months = int(spec.param("free_per_months", 12))
        chargeable = calendar.access_fee_chargeable(received_at, facts.access_requests, months)
        base = (spec.message("message_chargeable") or _FEE_CHARGEABLE) if chargeable else (spec.message("message_free") or _FEE_FREE)
        text = Text(base.fi.replace("{months}", str(months)), base.en.replace("{months}", str(months)))
        return Obligation("access_fee", rule.id, text, chargeable=chargeable)
    raise ValueError(f"unknown obligation type {spec.type!r}")
