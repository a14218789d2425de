"""What the obligations register owes and by when: the pure rules behind cases and deletion tasks.

No IO and no clock: callers pass dates (Europe/Helsinki) and the subscriptions. Kept apart from the
storage (``register.py``) so that the lead can wire these periods to the policy pack later without
touching SQL, and so that tests read the rules as a table.

- Cases (RULES Q1, Q2): an ``inquiry`` is answered within two business days, every other request
  within one month of receipt; a rights request may be extended once, to three months after receipt
  (moved off weekends and holidays), with the notice due on the first deadline.
- Deletion tasks (R1, R2, R4): an erasure request makes everything a system holds due one month
  after the request, except statutory-retention data (R1); the end of a relationship makes the
  marketing register's categories (section 5) due one month after the end, and each R1 category due
  at its ``retain_until`` (31 December of the end year + 10 or + 6 years, KPL 2:10). One task per
  subscription and due date, so a system that holds both records and vouchers gets two.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from typing import TYPE_CHECKING

from kti_policy.policy.calendar import add_business_days, add_months

if TYPE_CHECKING:
    from kti_policy.store.db import Subscriber

#: CONTRACT section 1: the marketing register's categories (notice section 5).
MARKETING_REGISTER = frozenset(
    {"name", "email", "mobile_phone", "company_and_position", "company_address"}
)
REQUEST_TYPES = (
    "access",
    "rectification",
    "completion",
    "erasure",
    "objection",
    "inquiry",
    "restriction",
    "portability",
)


@dataclass(frozen=True)
class RetentionPeriods:
    """The periods the register counts with; defaults are RULES R1, R2 and R4.

    ``statutory_years`` maps an R1 category to the years its retention runs after the end of the
    financial period (the calendar year) in which the relationship ended.
    """

    erasure_months: int = 1
    relationship_end_months: int = 1
    end_of_relationship_categories: frozenset[str] = MARKETING_REGISTER
    statutory_years: Mapping[str, int] = field(
        default_factory=lambda: {"accounting_records": 10, "accounting_vouchers": 6}
    )
    after_retention_months: int = 1  # R1: deletable from the day after retain_until, due a month after
    respond_months: int = 1
    inquiry_business_days: int = 2
    extended_months: int = 3

    def retain_until(self, category: str, ended: date) -> date:
        """31 December of the end year plus the category's statutory years."""
        return date(ended.year + self.statutory_years[category], 12, 31)


DEFAULT_PERIODS = RetentionPeriods()


def respond_due(request_type: str, received: date, periods: RetentionPeriods = DEFAULT_PERIODS) -> date:
    """Q1: two business days for an inquiry, one month for every rights request."""
    if request_type == "inquiry":
        return add_business_days(received, periods.inquiry_business_days)
    return add_months(received, periods.respond_months)


def extended_due(received: date, periods: RetentionPeriods = DEFAULT_PERIODS) -> date:
    """Q2: three months after receipt, moved to the next business day."""
    return add_months(received, periods.extended_months)


@dataclass(frozen=True)
class TaskSpec:
    """One deletion task to open: for ``system``, these categories, due on ``due``."""

    system: str
    data_categories: tuple[str, ...]
    due: date
    rule: str
    retain_until: date | None = None


def _holds(sub: Subscriber) -> frozenset[str]:
    return getattr(sub, "holds", frozenset()) or frozenset()


def erasure_tasks(
    subscriptions: Iterable[Subscriber],
    requested: date,
    periods: RetentionPeriods = DEFAULT_PERIODS,
) -> list[TaskSpec]:
    """R2: every held category but R1 data, due one month after the request."""
    due = add_months(requested, periods.erasure_months)
    out: list[TaskSpec] = []
    for sub in subscriptions:
        cats = sorted(_holds(sub) - set(periods.statutory_years))
        if cats:
            out.append(TaskSpec(sub.id, tuple(cats), due, "R2"))
    return out


def relationship_end_tasks(
    subscriptions: Iterable[Subscriber],
    ended: date,
    periods: RetentionPeriods = DEFAULT_PERIODS,
) -> list[TaskSpec]:
    """R4: the marketing register one month after the end; R1: each category from the day after
    its retain_until, due a month after that date (as the pack's ``retention.*-delete-due``)."""
    due = add_months(ended, periods.relationship_end_months)
    out: list[TaskSpec] = []
    for sub in subscriptions:
        held = _holds(sub)
        marketing = sorted(held & periods.end_of_relationship_categories)
        if marketing:
            out.append(TaskSpec(sub.id, tuple(marketing), due, "R4"))
        by_date: dict[date, list[str]] = {}
        for cat in sorted(held & set(periods.statutory_years)):
            by_date.setdefault(periods.retain_until(cat, ended), []).append(cat)
        for until, cats in sorted(by_date.items()):
            due_r1 = add_months(until, periods.after_retention_months)
            out.append(TaskSpec(sub.id, tuple(cats), due_r1, "R1", retain_until=until))
    return out


def due_soon_threshold(today: date, lead_business_days: int) -> date:
    """The latest due date that is "due soon" today: ``today`` + the lead in business days.

    A deadline D is announced on the lead-th business day before it, i.e. once D <= this date.
    """
    return add_business_days(today, lead_business_days)


def parse_lead_days(value: object, default: int = 5) -> int:
    """``KTI_OBLIGATION_LEAD_DAYS``: a non-negative whole number of business days."""
    from kti_policy.errors import ConfigError

    if value is None or str(value).strip() == "":
        return default
    try:
        days = int(str(value).strip())
    except ValueError:
        raise ConfigError(
            f"KTI_OBLIGATION_LEAD_DAYS must be a whole number of business days, got {value!r}",
            {"setting": "KTI_OBLIGATION_LEAD_DAYS"},
        ) from None
    if days < 0:
        raise ConfigError(
            "KTI_OBLIGATION_LEAD_DAYS must not be negative", {"setting": "KTI_OBLIGATION_LEAD_DAYS"}
        )
    return days


__all__: Sequence[str] = [
    "DEFAULT_PERIODS",
    "MARKETING_REGISTER",
    "REQUEST_TYPES",
    "RetentionPeriods",
    "TaskSpec",
    "due_soon_threshold",
    "erasure_tasks",
    "extended_due",
    "parse_lead_days",
    "relationship_end_tasks",
    "respond_due",
]
