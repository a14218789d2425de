"""Prometheus metrics of the decision service.

Under gunicorn each worker is a process of its own; ``gunicorn.conf.py`` sets
``PROMETHEUS_MULTIPROC_DIR`` before any worker imports prometheus-client, so every worker writes its
samples to files there and ``/metrics`` (served by any one worker) aggregates them all with a
``MultiProcessCollector``. Without that variable (``kti-policy serve``, tests) the process-local
default registry is used.

The metric objects are created on first use, not at import time.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from typing import Any

LATENCY_BUCKETS = (
    0.0005, 0.001, 0.0025, 0.005, 0.0075, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
)


class _Labelled:
    """A metric whose labelled children are looked up once per label set.

    ``metric.labels(...)`` in prometheus-client validates the names and takes a lock on every
    call (about 5 us, several times per request); the children it returns live as long as the
    metric, so they are kept here by their label values. Everything else is the metric's own.
    """

    __slots__ = ("_metric", "_children", "_lock")

    def __init__(self, metric: Any) -> None:
        self._metric = metric
        self._children: dict[tuple[Any, ...], Any] = {}
        self._lock = threading.Lock()

    def labels(self, *values: Any, **labels: Any) -> Any:
        key: tuple[Any, ...] = tuple(labels.items()) if labels else tuple(enumerate(values))
        child = self._children.get(key)
        if child is None:
            child = self._metric.labels(*values, **labels)
            with self._lock:
                self._children[key] = child
        return child

    def remove(self, *values: Any) -> None:
        with self._lock:
            self._children.clear()
        self._metric.remove(*values)

    def clear(self) -> None:
        with self._lock:
            self._children.clear()
        self._metric.clear()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._metric, name)


@dataclass(frozen=True)
class Metrics:
    decisions: Any  # Counter(decision, operation)
    decision_seconds: Any  # Histogram(kind): time to answer one decision request or batch
    http_requests: Any  # Counter(endpoint, method, status)
    http_seconds: Any  # Histogram(endpoint)
    reloads: Any  # Counter(result)
    policy_version: Any  # Gauge(version): 1 for the version this worker serves (pid label per worker)

    def set_policy_version(self, old: str | None, new: str) -> None:
        if old is not None and old != new:
            self.policy_version.labels(version=old).set(0)
        self.policy_version.labels(version=new).set(1)


_lock = threading.Lock()
_metrics: Metrics | None = None


def multiprocess_dir() -> str | None:
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR") or os.environ.get("prometheus_multiproc_dir")


def get_metrics() -> Metrics:
    """This process's metric objects (created once)."""
    global _metrics
    if _metrics is not None:
        return _metrics
    with _lock:
        if _metrics is None:
            from prometheus_client import Counter, Gauge, Histogram

            raw = dict(
                decisions=Counter(
                    "kti_decisions_total",
                    "Decisions answered, by decision and operation",
                    ["decision", "operation"],
                ),
                decision_seconds=Histogram(
                    "kti_decision_request_seconds",
                    "Time to answer a decision request (kind=single) or batch (kind=batch)",
                    ["kind"],
                    buckets=LATENCY_BUCKETS,
                ),
                http_requests=Counter(
                    "kti_http_requests_total",
                    "HTTP requests, by endpoint, method and status",
                    ["endpoint", "method", "status"],
                ),
                http_seconds=Histogram(
                    "kti_http_request_seconds",
                    "HTTP request latency by endpoint",
                    ["endpoint"],
                    buckets=LATENCY_BUCKETS,
                ),
                reloads=Counter(
                    "kti_policy_reloads_total",
                    "Policy reloads by result (ok, invalid, sync)",
                    ["result"],
                ),
                policy_version=Gauge(
                    "kti_policy_version_info",
                    "1 for the policy_version a worker serves, 0 for one it served before "
                    "(multiprocess: one series per live worker, labelled pid)",
                    ["version"],
                    multiprocess_mode="liveall",
                ),
            )
            _metrics = Metrics(**{name: _Labelled(m) for name, m in raw.items()})
    assert _metrics is not None
    return _metrics


def render_latest() -> tuple[bytes, str]:
    """The Prometheus text exposition of every worker (multiprocess) or of this process."""
    from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, generate_latest

    directory = multiprocess_dir()
    if directory:
        from prometheus_client import multiprocess

        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry, path=directory)
        return generate_latest(registry), CONTENT_TYPE_LATEST
    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST
