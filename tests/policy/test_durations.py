"""durations: parsing periods and where an operation stands against them, at every boundary."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest

from kti_policy.policy.calendar import HELSINKI
from kti_policy.policy.durations import (
    NONE,
    PAST,
    WITHIN,
    Period,
    PeriodSyntaxError,
    parse_period,
    state,
    until,
)


@pytest.mark.parametrize(
    ("text", "period"),
    [
        ("1 month", Period(1, "months")),
        ("2 months ago", Period(2, "months")),
        ("1 day", Period(1, "days")),
        ("30 days", Period(30, "days")),
        ("2 business days", Period(2, "business_days")),
        ("1 year", Period(1, "years")),
        ("6 years from year end", Period(6, "years", True)),
        ("10 years from the end of its year", Period(10, "years", True)),
        ("  3   months  ", Period(3, "months")),
    ],
)
def test_parse_period(text: str, period: Period) -> None:
    assert parse_period(text) == period
    assert parse_period(period.to_data()) == period


@pytest.mark.parametrize("text", ["", "month", "1", "1 fortnight", "one month", "-1 month", "0 days", "1 month later",
                                  "1.5 months", "99999 days"])
def test_bad_periods_say_how_to_write_one(text: str) -> None:
    with pytest.raises(PeriodSyntaxError, match="period|number"):
        parse_period(text)


@pytest.mark.parametrize(
    ("period", "start", "end"),
    [
        (Period(1, "months"), date(2026, 1, 31), date(2026, 2, 28)),  # clamped to the month's end
        (Period(1, "months"), date(2024, 1, 31), date(2024, 2, 29)),  # leap year
        (Period(1, "years"), date(2024, 2, 29), date(2025, 2, 28)),  # leap day + 1 year
        (Period(1, "months"), date(2026, 12, 15), date(2027, 1, 15)),  # over the year end
        (Period(6, "years", True), date(2026, 1, 1), date(2032, 12, 31)),
        (Period(6, "years", True), date(2026, 12, 31), date(2032, 12, 31)),
        (Period(10, "years", True), date(2020, 5, 3), date(2030, 12, 31)),
        (Period(2, "business_days"), date(2026, 12, 23), date(2026, 12, 29)),  # 24-26 Dec and a Sunday
        (Period(1, "days"), date(2026, 12, 31), date(2027, 1, 1)),
    ],
)
def test_period_end(period: Period, start: date, end: date) -> None:
    assert period.end(start) == end


def _at(d: date, hour: int = 12, minute: int = 0) -> datetime:
    return datetime(d.year, d.month, d.day, hour, minute, tzinfo=HELSINKI)


@pytest.mark.parametrize(
    ("fact", "now", "expected"),
    [
        (None, date(2026, 3, 1), NONE),
        # ended 31 Jan 2026: one month is up to and including 28 Feb
        (date(2026, 1, 31), date(2026, 2, 27), WITHIN),  # the day before
        (date(2026, 1, 31), date(2026, 2, 28), WITHIN),  # the day of
        (date(2026, 1, 31), date(2026, 3, 1), PAST),  # the day after
        (date(2024, 1, 31), date(2024, 2, 29), WITHIN),  # leap year: the day of
        (date(2024, 1, 31), date(2024, 3, 1), PAST),
    ],
)
def test_state_one_month(fact: date | None, now: date, expected: str) -> None:
    value = _at(fact) if fact else None
    assert state(value, _at(now), Period(1, "months")) == expected


@pytest.mark.parametrize(
    ("now", "expected"),
    [(date(2032, 12, 30), WITHIN), (date(2032, 12, 31), WITHIN), (date(2033, 1, 1), PAST)],
)
def test_state_vouchers_six_years_from_year_end(now: date, expected: str) -> None:
    assert state(_at(date(2026, 5, 3)), _at(now), Period(6, "years", True)) == expected


def test_state_counts_helsinki_dates_not_utc_dates() -> None:
    # 31 Jan 2026 00:30 in Helsinki is 30 Jan 22:30 UTC: the Helsinki date (31 Jan) counts
    ended = datetime(2026, 1, 30, 22, 30, tzinfo=UTC)
    assert state(ended, _at(date(2026, 2, 28), 23, 59), Period(1, "months")) == WITHIN
    # 1 Mar 2026 00:10 in Helsinki is still 28 Feb in UTC: past in Helsinki terms
    assert state(ended, datetime(2026, 2, 28, 22, 10, tzinfo=UTC), Period(1, "months")) == PAST


def test_until_is_the_exact_last_day() -> None:
    assert until(_at(date(2026, 6, 1)), Period(6, "years", True)) == date(2032, 12, 31)  # a Friday; no shift
    assert until(_at(date(2026, 6, 1)), Period(10, "years", True)) == date(2036, 12, 31)


def test_period_words() -> None:
    assert Period(1, "months").text("en") == "1 month"
    assert Period(6, "years", True).text("en") == "6 years from the end of its year"
    assert Period(1, "months").text("fi") == "1 kuukausi"
    assert Period(2, "business_days").text("fi") == "2 arkipäivää"
