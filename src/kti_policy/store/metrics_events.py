"""Prometheus metrics of events, the outbox and webhook delivery.

Defined here, exposed by whoever owns ``/metrics`` (the default registry; in multiprocess mode the
gauges keep the most recent value written by any process). ``update_outbox_gauges(store)`` refreshes
the outbox gauges from the database; call it when ``/metrics`` is scraped (and the worker calls it
after each round).
"""

from __future__ import annotations

from typing import Any, Protocol

from prometheus_client import Counter, Gauge, Histogram


class OutboxStats(Protocol):
    """What the gauges read (``store.db.Store`` is one; the store imports this module)."""

    def outbox_stats(self) -> dict[str, Any]: ...

EVENTS_RECORDED = Counter(
    "kti_events_recorded_total",
    "Subject events received, by type and result (created or duplicate of a recorded id)",
    ["type", "result"],
)
DELIVERIES = Counter(
    "kti_webhook_deliveries_total",
    "Webhook delivery attempts by subscription and outcome (delivered, failed = will retry, dead)",
    ["subscription", "outcome"],
)
DELIVERY_SECONDS = Histogram(
    "kti_webhook_delivery_seconds",
    "Duration of one webhook delivery attempt (HTTP request), seconds",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 15),
)
FACTS_CACHE = Counter(
    "kti_facts_cache_total",
    "Subjects' facts a decision request took from the facts cache (hit) or read from the events (miss)",
    ["result"],
)
_FACTS_HIT = FACTS_CACHE.labels(result="hit")
_FACTS_MISS = FACTS_CACHE.labels(result="miss")
OUTBOX_DEPTH = Gauge(
    "kti_outbox_depth", "Webhook deliveries waiting to be sent", multiprocess_mode="mostrecent"
)
OUTBOX_OLDEST_AGE = Gauge(
    "kti_outbox_oldest_pending_age_seconds",
    "Age of the oldest pending webhook delivery (0 when none)",
    multiprocess_mode="mostrecent",
)
OUTBOX_DEAD = Gauge(
    "kti_outbox_dead",
    "Webhook deliveries that gave up (retry them)",
    multiprocess_mode="mostrecent",
)


def count_facts_cache(hits: int, misses: int) -> None:
    """Count one facts read's cache hits and misses (children looked up once, not per request)."""
    if hits:
        _FACTS_HIT.inc(hits)
    if misses:
        _FACTS_MISS.inc(misses)


def update_outbox_gauges(store: OutboxStats) -> dict[str, object]:
    """Set the outbox gauges from ``store.outbox_stats()``; returns the stats."""
    stats = store.outbox_stats()
    OUTBOX_DEPTH.set(stats["depth"])
    OUTBOX_OLDEST_AGE.set(stats["oldest_pending_age_seconds"] or 0.0)
    OUTBOX_DEAD.set(stats["dead"])
    return stats
