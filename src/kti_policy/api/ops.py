"""Operations endpoints without a key: ``/healthz``, ``/readyz``, ``/metrics``, ``/openapi.json``."""

from __future__ import annotations

import logging
from typing import Any

from flask import Blueprint, Response, current_app, jsonify

from .metrics import render_latest

log = logging.getLogger(__name__)

bp = Blueprint("ops", __name__)


@bp.get("/healthz")
def healthz() -> Any:
    """Liveness: the process answers.
    ---
    get:
      summary: Liveness
      security: []
      responses:
        200:
          description: alive
          content:
            application/json:
              schema: Health
    """
    return jsonify({"status": "ok"})


@bp.get("/readyz")
def readyz() -> Any:
    """Readiness: policies loaded and the database reachable.
    ---
    get:
      summary: Readiness
      security: []
      responses:
        200:
          description: ready
          content:
            application/json:
              schema: Ready
        503:
          description: not ready (the checks say why)
          content:
            application/json:
              schema: Ready
    """
    state = current_app.extensions["kti"]
    checks: dict[str, str] = {}
    version = None
    try:
        loaded = state.loaded()
        version = loaded.version
        checks["policies"] = "ok"
    except Exception:
        checks["policies"] = "not loaded"
    try:
        state.store.ping()
        checks["database"] = "ok"
    except Exception as exc:
        log.warning("readyz: database check failed: %s", type(exc).__name__)
        checks["database"] = "unreachable"
    ready = all(v == "ok" for v in checks.values())
    resp = jsonify(
        {"status": "ready" if ready else "not_ready", "policy_version": version, "checks": checks}
    )
    resp.status_code = 200 if ready else 503
    return resp


@bp.get("/metrics")
def metrics() -> Any:
    """Prometheus metrics of every worker.
    ---
    get:
      summary: Prometheus metrics (text exposition format)
      security: []
      responses:
        200:
          description: metrics
          content:
            text/plain: {schema: {type: string}}
    """
    try:
        from kti_policy.store.metrics_events import update_outbox_gauges

        update_outbox_gauges(current_app.extensions["kti"].store)
    except Exception:
        log.warning("metrics: cannot refresh the outbox gauges", exc_info=True)
    data, content_type = render_latest()
    return Response(data, content_type=content_type)


@bp.get("/openapi.json")
def openapi_json() -> Any:
    """This API as OpenAPI 3, generated from the marshmallow schemas.
    ---
    get:
      summary: OpenAPI 3 description of every endpoint
      security: []
      responses:
        200:
          description: the OpenAPI document
          content:
            application/json: {schema: {type: object}}
    """
    return jsonify(current_app.extensions["kti"].openapi())
