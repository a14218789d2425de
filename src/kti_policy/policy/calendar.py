"""Deadlines in Europe/Helsinki: business days, "one month", and the access-fee window.

CONTRACT section 2 fixes the rules: deadlines are calendar dates in Europe/Helsinki; "one month"
ends on the same day number of the next month (the month's last day where there is none) and, when
that day is not a business day, moves to the next business day; "n business days" counts days that
are neither Saturday, Sunday nor a Finnish public holiday, Christmas Eve and Midsummer Eve included.

Every function here is pure (no IO, no clock): callers pass the instant a request was received.
Naive datetimes are taken as UTC everywhere.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import UTC, date, datetime, timedelta
from functools import cache
from zoneinfo import ZoneInfo

import holidays

HELSINKI = ZoneInfo("Europe/Helsinki")

_SATURDAY = 5
_FRIDAY = 4


def _aware(t: datetime) -> datetime:
    """``t`` as an aware datetime; a naive one is taken as UTC."""
    return t.replace(tzinfo=UTC) if t.tzinfo is None else t


def _check_date(d: date) -> None:
    # datetime is a subclass of date but never equals one, so holiday lookups would silently miss.
    if isinstance(d, datetime) or not isinstance(d, date):
        raise TypeError(f"expected a date, not {type(d).__name__} (use to_helsinki_date first)")


def to_helsinki_date(t: datetime) -> date:
    """The calendar date in Europe/Helsinki of the instant ``t`` (naive ``t`` is taken as UTC)."""
    return _aware(t).astimezone(HELSINKI).date()


def midsummer_eve(year: int) -> date:
    """Midsummer Eve: the Friday between June 19 and 25."""
    june19 = date(year, 6, 19)
    return june19 + timedelta(days=(_FRIDAY - june19.weekday()) % 7)


@cache
def finnish_holidays(year: int) -> frozenset[date]:
    """Finnish public holidays of ``year`` (the ``holidays`` package's FI calendar), always with
    Christmas Eve and Midsummer Eve, which the contract counts as holidays whether or not the
    installed ``holidays`` version lists them. Cached per year."""
    days = set(holidays.country_holidays("FI", years=year).keys())
    days.add(date(year, 12, 24))
    days.add(midsummer_eve(year))
    return frozenset(days)


def is_business_day(d: date) -> bool:
    """True unless ``d`` is a Saturday, a Sunday or a Finnish holiday (see ``finnish_holidays``)."""
    _check_date(d)
    return d.weekday() < _SATURDAY and d not in finnish_holidays(d.year)


def next_business_day_on_or_after(d: date) -> date:
    """``d`` itself when it is a business day, else the first business day after it."""
    _check_date(d)
    while not is_business_day(d):
        d += timedelta(days=1)
    return d


def add_business_days(d: date, n: int) -> date:
    """The n-th business day after ``d``; ``d`` itself never counts, whatever day it is.

    Received Friday, n=2 -> Tuesday (Monday is the first). n=0 returns ``d`` unchanged; a negative
    ``n`` raises ValueError.
    """
    _check_date(d)
    if isinstance(n, bool) or not isinstance(n, int) or n < 0:
        raise ValueError(f"business days must be a non-negative int, not {n!r}")
    while n > 0:
        d += timedelta(days=1)
        if is_business_day(d):
            n -= 1
    return d


def add_months_clamped(d: date, months: int) -> date:
    """The same day number ``months`` months later (earlier when negative), or that month's last
    day where it has no such day (Jan 31 + 1 -> Feb 28/29). No business-day adjustment."""
    _check_date(d)
    index = d.year * 12 + (d.month - 1) + months
    year, month = divmod(index, 12)
    first_of_next = date(year + (month + 1) // 12, (month + 1) % 12 + 1, 1)
    last = (first_of_next - timedelta(days=1)).day
    return date(year, month + 1, min(d.day, last))


def add_months(d: date, months: int) -> date:
    """``add_months_clamped(d, months)``, moved to the next business day when it is not one."""
    if isinstance(months, bool) or not isinstance(months, int) or months < 1:
        raise ValueError(f"months must be a positive int, not {months!r}")
    return next_business_day_on_or_after(add_months_clamped(d, months))


def add_one_month(d: date) -> date:
    """The contract's "one month" deadline from the date ``d``: same day number next month (the
    month's last day where there is none), then the next business day if that is not one."""
    return add_months(d, 1)


def respond_by(received_at: datetime, within: Mapping[str, int]) -> date:
    """The response deadline (a Helsinki date) for a request received at ``received_at``.

    ``within`` is exactly one of ``{"months": m}`` (m >= 1, see ``add_months``) or
    ``{"business_days": n}`` (n >= 1, see ``add_business_days``), counted from the Helsinki date of
    ``received_at``. Anything else raises ValueError.
    """
    if not isinstance(within, Mapping) or len(within) != 1:
        raise ValueError(
            f"within must be {{'months': m}} or {{'business_days': n}}, not {within!r}"
        )
    [(unit, amount)] = within.items()
    if isinstance(amount, bool) or not isinstance(amount, int) or amount < 1:
        raise ValueError(f"{unit} must be a positive int, not {amount!r}")
    received = to_helsinki_date(received_at)
    if unit == "months":
        return add_months(received, amount)
    if unit == "business_days":
        return add_business_days(received, amount)
    raise ValueError(f"unknown deadline unit {unit!r}: expected 'months' or 'business_days'")


def months_before(t: datetime, months: int) -> datetime:
    """The same Helsinki wall-clock time ``months`` calendar months before ``t``, day clamped to the
    month's end (2028-02-29 minus 12 -> 2027-02-28), returned in UTC. A wall time that falls in a
    DST gap or overlap resolves with fold=0 (the earlier offset)."""
    local = _aware(t).astimezone(HELSINKI)
    day = add_months_clamped(local.date(), -months)
    start = local.replace(year=day.year, month=day.month, day=day.day, fold=0)
    return start.astimezone(UTC)


def access_fee_chargeable(
    received_at: datetime, previous: Iterable[datetime], months: int = 12
) -> bool:
    """True when an earlier access request falls in the ``months`` months before this one.

    The window is ``[months_before(received_at, months), received_at)``: inclusive at its start,
    the same Helsinki wall-clock instant ``months`` calendar months back (day clamped to the end of
    the month), exclusive at ``received_at``. Previous requests at or after ``received_at`` are
    ignored, so this request recorded as an event (same instant) never makes itself chargeable.
    Comparisons are between instants (all converted to UTC); naive datetimes are taken as UTC.
    """
    if isinstance(months, bool) or not isinstance(months, int) or months < 1:
        raise ValueError(f"months must be a positive int, not {months!r}")
    end = _aware(received_at).astimezone(UTC)
    start = months_before(end, months)
    return any(start <= _aware(p).astimezone(UTC) < end for p in previous)
