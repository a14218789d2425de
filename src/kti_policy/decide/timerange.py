"""The span of times the service accepts in requests and events.

A time near the ends of ``datetime``'s range (``0001-01-01T00:00:00+05:00``,
``9999-12-31T23:00:00-05:00``) parses, but overflows when it is turned into UTC or when a deadline
is added to it, which surfaced as a 500 deep inside a decision or an insert. Every time a client
sends is checked here first, so it is a 400 naming the field instead.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from marshmallow import ValidationError, fields

EARLIEST = datetime(1900, 1, 1, tzinfo=UTC)
LATEST = datetime(3000, 1, 1, tzinfo=UTC)  # exclusive; leaves room for any deadline
RANGE_MESSAGE = "must lie between 1900-01-01 and 2999-12-31 (UTC)"


def in_range(value: datetime) -> bool:
    """True when ``value`` (aware) converts to UTC and lies within [EARLIEST, LATEST)."""
    try:
        utc = value.astimezone(UTC)
    except (OverflowError, ValueError):
        return False
    return EARLIEST <= utc < LATEST


class BoundedAwareDateTime(fields.AwareDateTime):
    """``AwareDateTime`` that refuses times outside ``in_range`` with a field error."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> datetime:
        try:
            parsed = super()._deserialize(value, attr, data, **kwargs)
        except OverflowError:
            raise ValidationError(RANGE_MESSAGE) from None
        if not in_range(parsed):
            raise ValidationError(RANGE_MESSAGE)
        return parsed
