"""Deadlines in Europe/Helsinki (CONTRACT section 2, RULES "Data subject requests")."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kti_policy.policy.calendar import (
    access_fee_chargeable,
    add_business_days,
    add_months_clamped,
    add_one_month,
    finnish_holidays,
    is_business_day,
    midsummer_eve,
    months_before,
    respond_by,
    to_helsinki_date,
)

HEL = ZoneInfo("Europe/Helsinki")

# Bounded to the years the holidays package's FI calendar covers (it ends in 2100).
dates = st.dates(min_value=date(2000, 1, 1), max_value=date(2098, 12, 31))


@pytest.mark.parametrize(
    "t, expected",
    [
        # 23:30 UTC on Dec 31 is 01:30 on Jan 1 in Helsinki (EET, +02:00).
        (datetime(2026, 12, 31, 23, 30, tzinfo=UTC), date(2027, 1, 1)),
        (datetime(2026, 12, 31, 23, 30), date(2027, 1, 1)),  # naive is UTC
        (datetime(2026, 12, 31, 21, 59, tzinfo=UTC), date(2026, 12, 31)),
        (datetime(2026, 12, 31, 22, 0, tzinfo=UTC), date(2027, 1, 1)),
        # Summer time (EEST, +03:00).
        (datetime(2026, 6, 30, 20, 59, tzinfo=UTC), date(2026, 6, 30)),
        (datetime(2026, 6, 30, 21, 0, tzinfo=UTC), date(2026, 7, 1)),
        (datetime(2026, 3, 2, 10, 0, tzinfo=timezone(timedelta(hours=2))), date(2026, 3, 2)),
        (datetime(2026, 1, 1, 0, 30, tzinfo=timezone(timedelta(hours=-5))), date(2026, 1, 1)),
    ],
)
def test_to_helsinki_date(t: datetime, expected: date) -> None:
    assert to_helsinki_date(t) == expected


@pytest.mark.parametrize(
    "d, business",
    [
        (date(2026, 12, 23), True),  # Wed
        (date(2026, 12, 24), False),  # Thu, Christmas Eve
        (date(2026, 12, 25), False),  # Fri, Christmas Day
        (date(2026, 12, 26), False),  # Sat, St Stephen's Day
        (date(2026, 12, 28), True),  # Mon
        (date(2026, 12, 31), True),  # Thu, New Year's Eve is a working day
        (date(2027, 1, 1), False),  # Fri, New Year's Day
        (date(2027, 1, 6), False),  # Wed, Epiphany
        (date(2027, 1, 7), True),
        (date(2027, 3, 25), True),  # Maundy Thursday
        (date(2027, 3, 26), False),  # Good Friday
        (date(2027, 3, 29), False),  # Easter Monday
        (date(2027, 3, 30), True),
        (date(2026, 5, 1), False),  # Fri, May Day
        (date(2026, 5, 14), False),  # Thu, Ascension Day
        (date(2027, 5, 6), False),  # Thu, Ascension Day
        (date(2026, 6, 18), True),
        (date(2026, 6, 19), False),  # Fri, Midsummer Eve
        (date(2027, 6, 25), False),  # Fri, Midsummer Eve
        (date(2026, 10, 30), True),  # Fri before All Saints' Day (Sat Oct 31)
        (date(2026, 12, 6), False),  # Sun, Independence Day
        (date(2026, 12, 7), True),  # Mon: no substitute day in Finland
        (date(2027, 12, 6), False),  # Mon, Independence Day
        (date(2026, 11, 25), True),  # Wed, ordinary
        (date(2026, 11, 28), False),  # Sat
        (date(2026, 11, 29), False),  # Sun
    ],
)
def test_is_business_day(d: date, business: bool) -> None:
    assert is_business_day(d) is business


@pytest.mark.parametrize("year", [2026, 2027, 2028, 2029, 2030])
def test_christmas_eve_and_midsummer_eve_always_holidays(year: int) -> None:
    eve = midsummer_eve(year)
    assert eve.weekday() == 4 and date(year, 6, 19) <= eve <= date(year, 6, 25)
    assert {date(year, 12, 24), eve} <= finnish_holidays(year)


def test_datetime_is_rejected_where_a_date_is_meant() -> None:
    with pytest.raises(TypeError):
        is_business_day(datetime(2026, 12, 24, 12, 0))


@pytest.mark.parametrize(
    "d, n, expected",
    [
        (date(2026, 11, 27), 2, date(2026, 12, 1)),  # Fri -> Tue
        (date(2026, 11, 25), 2, date(2026, 11, 27)),  # Wed -> Fri
        (date(2026, 11, 28), 2, date(2026, 12, 1)),  # Sat -> Tue
        (date(2026, 12, 23), 2, date(2026, 12, 29)),  # Wed -> over Christmas -> Tue
        (date(2026, 12, 30), 2, date(2027, 1, 4)),  # Wed -> Thu 31, (Fri Jan 1) -> Mon
        (date(2027, 1, 5), 1, date(2027, 1, 7)),  # over Epiphany
        (date(2027, 3, 25), 1, date(2027, 3, 30)),  # over Easter
        (date(2026, 4, 30), 1, date(2026, 5, 4)),  # over May Day
        (date(2026, 5, 13), 2, date(2026, 5, 18)),  # over Ascension
        (date(2026, 6, 18), 1, date(2026, 6, 22)),  # over Midsummer Eve
        (date(2026, 12, 4), 1, date(2026, 12, 7)),  # Independence Day on a Sunday
        (date(2026, 11, 25), 0, date(2026, 11, 25)),
    ],
)
def test_add_business_days(d: date, n: int, expected: date) -> None:
    assert add_business_days(d, n) == expected


def test_add_business_days_rejects_negative() -> None:
    with pytest.raises(ValueError):
        add_business_days(date(2026, 11, 25), -1)


@pytest.mark.parametrize(
    "d, months, expected",
    [
        (date(2026, 1, 31), 1, date(2026, 2, 28)),
        (date(2028, 1, 31), 1, date(2028, 2, 29)),
        (date(2026, 3, 31), 1, date(2026, 4, 30)),
        (date(2026, 12, 15), 1, date(2027, 1, 15)),
        (date(2026, 8, 31), 6, date(2027, 2, 28)),
        (date(2028, 2, 29), -12, date(2027, 2, 28)),
        (date(2027, 1, 31), -1, date(2026, 12, 31)),
    ],
)
def test_add_months_clamped(d: date, months: int, expected: date) -> None:
    assert add_months_clamped(d, months) == expected


@pytest.mark.parametrize(
    "d, expected",
    [
        (date(2025, 1, 31), date(2025, 2, 28)),  # Jan 31 -> Feb 28 (a Friday)
        (date(2028, 1, 31), date(2028, 2, 29)),  # leap year
        (date(2026, 1, 31), date(2026, 3, 2)),  # Feb 28 2026 is a Saturday -> Monday
        (date(2026, 10, 17), date(2026, 11, 17)),  # plain
        (date(2026, 9, 26), date(2026, 10, 26)),  # Mon
        (date(2026, 10, 31), date(2026, 11, 30)),  # clamp, Mon
        (date(2026, 11, 24), date(2026, 12, 28)),  # Thu Dec 24 .. Sun 27 -> Mon
        (date(2026, 11, 6), date(2026, 12, 7)),  # Sun Dec 6 Independence Day -> Mon
        (date(2026, 12, 1), date(2027, 1, 4)),  # Fri Jan 1 New Year -> Mon
        (date(2026, 12, 6), date(2027, 1, 7)),  # Wed Jan 6 Epiphany -> Thu
        (date(2027, 2, 26), date(2027, 3, 30)),  # Good Friday .. Easter Monday -> Tue
        (date(2026, 4, 1), date(2026, 5, 4)),  # Fri May 1 -> Mon
        (date(2026, 4, 14), date(2026, 5, 15)),  # Thu May 14 Ascension -> Fri
        (date(2026, 5, 19), date(2026, 6, 22)),  # Fri Jun 19 Midsummer Eve -> Mon
        (date(2029, 11, 22), date(2029, 12, 27)),  # Sat Dec 22 .. Wed Dec 26: five days
        (date(2026, 3, 2), date(2026, 4, 2)),  # the DESIGN.md example
    ],
)
def test_add_one_month(d: date, expected: date) -> None:
    assert add_one_month(d) == expected


@pytest.mark.parametrize(
    "received_at, within, expected",
    [
        # Received Friday evening in Helsinki: Mon is the first business day, Tue the second.
        (datetime(2026, 11, 27, 18, 0, tzinfo=HEL), {"business_days": 2}, date(2026, 12, 1)),
        # 23:30 UTC on Thu Dec 31 is Fri Jan 1 (a holiday) in Helsinki: Mon 4, Tue 5.
        (datetime(2026, 12, 31, 23, 30, tzinfo=UTC), {"business_days": 2}, date(2027, 1, 5)),
        # Wed Dec 30 23:30 in Helsinki: Thu 31, then Mon 4; an hour later it is already Thu 31.
        (datetime(2026, 12, 30, 21, 30, tzinfo=UTC), {"business_days": 2}, date(2027, 1, 4)),
        (datetime(2026, 12, 30, 22, 30, tzinfo=UTC), {"business_days": 2}, date(2027, 1, 5)),
        # Jan 31 in Helsinki although Jan 30 in UTC, then Feb 28 2026 (Sat) -> Mon Mar 2.
        (datetime(2026, 1, 30, 22, 30, tzinfo=UTC), {"months": 1}, date(2026, 3, 2)),
        (datetime(2026, 1, 30, 21, 30), {"months": 1}, date(2026, 3, 2)),  # naive UTC: Jan 30
        (datetime(2026, 3, 2, 10, 0, tzinfo=HEL), {"months": 1}, date(2026, 4, 2)),
        (datetime(2026, 8, 31, 12, 0, tzinfo=HEL), {"months": 3}, date(2026, 11, 30)),
        (datetime(2026, 11, 25, 12, 0, tzinfo=HEL), {"months": 1}, date(2026, 12, 28)),
    ],
)
def test_respond_by(received_at: datetime, within: dict[str, int], expected: date) -> None:
    assert respond_by(received_at, within) == expected


@pytest.mark.parametrize(
    "within",
    [
        {},
        {"weeks": 1},
        {"months": 0},
        {"months": -1},
        {"months": 1.5},
        {"months": True},
        {"business_days": 0},
        {"business_days": "2"},
        {"months": 1, "business_days": 2},
    ],
)
def test_respond_by_rejects_bad_within(within: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        respond_by(datetime(2026, 11, 25, tzinfo=UTC), within)  # type: ignore[arg-type]


RECEIVED = datetime(2026, 11, 25, 10, 0, tzinfo=HEL)


@pytest.mark.parametrize(
    "previous, chargeable",
    [
        ([], False),
        ([RECEIVED], False),  # this request itself, recorded as an event
        ([RECEIVED.astimezone(UTC)], False),  # the same instant in another zone
        ([RECEIVED + timedelta(seconds=1)], False),  # later requests do not count
        ([RECEIVED - timedelta(seconds=1)], True),
        ([datetime(2026, 1, 10, 9, 0, tzinfo=HEL)], True),
        ([datetime(2025, 11, 25, 10, 0, tzinfo=HEL)], True),  # window start is inclusive
        ([datetime(2025, 11, 25, 9, 59, 59, tzinfo=HEL)], False),  # just before the window
        ([datetime(2025, 11, 25, 8, 0, tzinfo=UTC)], True),  # 10:00 Helsinki
        ([datetime(2025, 11, 25, 7, 59)], False),  # naive UTC, 09:59 Helsinki
        ([datetime(2024, 1, 1, tzinfo=HEL), RECEIVED], False),
        ([datetime(2024, 1, 1, tzinfo=HEL), datetime(2026, 6, 1, tzinfo=HEL)], True),
    ],
)
def test_access_fee_chargeable(previous: list[datetime], chargeable: bool) -> None:
    assert access_fee_chargeable(RECEIVED, previous) is chargeable


def test_access_fee_window_clamps_at_month_end_and_takes_months() -> None:
    leap = datetime(2028, 2, 29, 12, 0, tzinfo=HEL)
    assert months_before(leap, 12) == datetime(2027, 2, 28, 12, 0, tzinfo=HEL)
    assert access_fee_chargeable(leap, [datetime(2027, 2, 28, 12, 0, tzinfo=HEL)])
    assert not access_fee_chargeable(leap, [datetime(2027, 2, 28, 11, 59, tzinfo=HEL)])
    assert access_fee_chargeable(RECEIVED, [datetime(2026, 6, 1, tzinfo=HEL)], months=6)
    assert not access_fee_chargeable(RECEIVED, [datetime(2026, 5, 1, tzinfo=HEL)], months=6)
    with pytest.raises(ValueError):
        access_fee_chargeable(RECEIVED, [], months=0)


def test_access_fee_window_keeps_helsinki_wall_clock_across_dst() -> None:
    # Received in summer time (+03:00); the window starts at the same wall-clock time a year
    # back, when it was also summer time, and six months back, in winter time (+02:00).
    summer = datetime(2026, 7, 1, 9, 0, tzinfo=HEL)
    assert months_before(summer, 6) == datetime(2026, 1, 1, 7, 0, tzinfo=UTC)
    assert months_before(summer, 12) == datetime(2025, 7, 1, 6, 0, tzinfo=UTC)


@given(dates, st.integers(min_value=1, max_value=40))
def test_add_business_days_lands_on_a_business_day_after_d(d: date, n: int) -> None:
    result = add_business_days(d, n)
    assert result > d
    assert is_business_day(result)
    assert sum(is_business_day(d + timedelta(days=i)) for i in range(1, (result - d).days + 1)) == n


@given(dates)
def test_add_one_month_bounds(d: date) -> None:
    clamped = add_months_clamped(d, 1)
    result = add_one_month(d)
    assert is_business_day(result)
    assert result >= clamped
    # The clamped date is 28 (Jan 31 -> Feb 28) to 31 days later; the longest run of non-business
    # days is five (Sat Dec 22 .. Wed Dec 26 when Christmas Eve is a Monday), so at most 5 more.
    assert 28 <= (clamped - d).days <= 31
    assert (result - clamped).days <= 5
    assert 28 <= (result - d).days <= 36
    assert all(
        not is_business_day(clamped + timedelta(days=i)) for i in range((result - clamped).days)
    )


@given(dates, st.integers(min_value=0, max_value=23), st.integers(min_value=0, max_value=59))
def test_access_request_never_makes_itself_chargeable(d: date, hour: int, minute: int) -> None:
    received = datetime(d.year, d.month, d.day, hour, minute, tzinfo=HEL)
    assert not access_fee_chargeable(received, [received, received.astimezone(UTC)])
    assert access_fee_chargeable(received, [received - timedelta(minutes=1)])
