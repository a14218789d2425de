"""Periods of time in policies: "1 month", "6 years from year end", and where an instant stands.

A duration condition asks where the operation's day stands against a period that starts at a dated
fact (``subject.relationship_ended_at: {within: 1 month}``). Everything is in Europe/Helsinki
calendar dates, as the law counts them: the period *ends* on a date (``Period.end``) and

- ``within``    holds when the fact is given and the operation's date is on or before that end;
- ``more_than`` holds when the fact is given and the operation's date is after that end.

So a period of "1 month" from 2026-01-31 ends on 2026-02-28: on 28 February the fact is still
within it, on 1 March more than a month has passed. "N years from year end" first moves the start
to 31 December of its year (the Accounting Act's "the end of the calendar year in which ..."), so
6 years from year end of any day of 2026 ends on 31 December 2032. Months and years clamp to the
month's last day (29 Feb + 1 year = 28 Feb); there is no business-day shift in conditions: a
deadline moved to the next business day is an obligation's date, not a fact about the data.

``state`` gives one of three words, which is also what the compiled rules match on: ``none`` (the
fact is not given), ``within`` or ``past``. Both the reference evaluator and the durable-rules
projection call it, so the calendar arithmetic exists once.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime, timedelta

from . import calendar

UNITS = ("days", "business_days", "months", "years")
NONE, WITHIN, PAST = "none", "within", "past"
STATES = (NONE, WITHIN, PAST)

_UNIT_WORDS = {
    "day": "days", "days": "days",
    "business day": "business_days", "business days": "business_days",
    "month": "months", "months": "months",
    "year": "years", "years": "years",
}
_PERIOD_RE = re.compile(
    r"^\s*(?P<n>\d{1,4})\s+(?P<unit>business\s+days?|days?|months?|years?)"
    r"(?P<ye>\s+from\s+(?:the\s+)?(?:year\s+end|end\s+of\s+(?:its|the)\s+year))?"
    r"(?:\s+ago)?\s*$"
)
MAX_AMOUNT = 1000


class PeriodSyntaxError(ValueError):
    """A period that is not ``<n> <unit> [from year end] [ago]``."""


@dataclass(frozen=True)
class Period:
    """``amount`` ``unit`` after a start date, optionally counted from the end of its year."""

    amount: int
    unit: str  # one of UNITS
    from_year_end: bool = False

    def end(self, start: date) -> date:
        """The last date still within the period that starts on ``start``."""
        base = date(start.year, 12, 31) if self.from_year_end else start
        if self.unit == "days":
            return base + timedelta(days=self.amount)
        if self.unit == "business_days":
            return calendar.add_business_days(base, self.amount)
        months = self.amount * (12 if self.unit == "years" else 1)
        return calendar.add_months_clamped(base, months)

    @property
    def key(self) -> str:
        """A stable identifier (compiled field names, cache keys)."""
        return f"{self.amount}{self.unit}{'_ye' if self.from_year_end else ''}"

    def text(self, lang: str = "en") -> str:
        n = self.amount
        if lang == "fi":
            unit = {"days": "päivää", "business_days": "arkipäivää", "months": "kuukautta", "years": "vuotta"}[self.unit]
            if n == 1:
                unit = {"days": "päivä", "business_days": "arkipäivä", "months": "kuukausi", "years": "vuosi"}[self.unit]
            return f"{n} {unit}" + (" vuoden lopusta" if self.from_year_end else "")
        word = self.unit.replace("_", " ")
        if n == 1:
            word = word[:-1]
        return f"{n} {word}" + (" from the end of its year" if self.from_year_end else "")

    def to_data(self) -> str:
        """The period as the policy file writes it."""
        word = self.unit.replace("_", " ")
        if self.amount == 1:
            word = word[:-1]
        return f"{self.amount} {word}" + (" from year end" if self.from_year_end else "")


def parse_period(text: str) -> Period:
    """``"1 month"``, ``"2 business days"``, ``"6 years from year end"`` (``ago`` may follow)."""
    m = _PERIOD_RE.match(text) if isinstance(text, str) else None
    if m is None:
        raise PeriodSyntaxError(
            f"{text!r} is not a period: write '<number> <days|business days|months|years>', "
            "optionally followed by 'from year end', e.g. '1 month' or '6 years from year end'"
        )
    amount = int(m.group("n"))
    if not 1 <= amount <= MAX_AMOUNT:
        raise PeriodSyntaxError(f"{text!r}: the number must be between 1 and {MAX_AMOUNT}")
    unit = _UNIT_WORDS[" ".join(m.group("unit").split())]
    return Period(amount, unit, bool(m.group("ye")))


def state(value: datetime | None, now: datetime, period: Period) -> str:
    """Where the operation's instant ``now`` stands against ``period`` from ``value``."""
    if value is None:
        return NONE
    end = period.end(calendar.to_helsinki_date(value))
    return WITHIN if calendar.to_helsinki_date(now) <= end else PAST


def until(value: datetime, period: Period) -> date:
    """The period's end for a dated fact: the ``retain_until`` of statutory retention."""
    return period.end(calendar.to_helsinki_date(value))
