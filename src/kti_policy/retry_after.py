"""The ``Retry-After`` header read once for every side that honours it: the webhook worker (a
receiver asking to wait) and the client library (the service answering 503). No dependencies, so
the client stays importable without the service's stack."""

from __future__ import annotations

import email.utils
from datetime import UTC, datetime


def parse_retry_after(value: str | None, now: datetime) -> float | None:
    """Seconds from a ``Retry-After`` header (delta-seconds or an HTTP date), or None."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - now).total_seconds())
