"""Events, subjects and webhook deliveries over HTTP (CONTRACT sections 3 and 4). Thin over ``Store``.

- ``POST /v1/events`` (role ``ingest``): 201 with the stored record, 200 with the same body when the
  id was already recorded; ``POST /v1/events/batch`` ``{"events": [...]}`` (at most 1000, all or none):
  201 when any was new, else 200, each item with ``created``.
  When ``KTI_INBOUND_WEBHOOK_SECRET`` is set, these two take a Standard Webhooks signature over the
  raw body *instead of* an API key (401 on a missing, bad or stale one).
- ``GET /v1/subjects/<id>`` (role ``query``): facts and history, keyed by the pseudonym; 404 when none.
- ``GET /v1/hooks/deliveries?status=&limit=&subscription_id=`` (role ``admin``): the outbox and each
  delivery's attempt log (never the body).
- ``POST /v1/hooks/deliveries/<id>/retry`` (role ``admin``): a dead delivery goes out again.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar, cast

from flask import Blueprint, current_app, jsonify, request

from kti_policy.errors import NotFound, RequestError
from kti_policy.hooks.inbound import verify_inbound

F = TypeVar("F", bound=Callable[..., Any])

bp = Blueprint("events", __name__)

VOCABULARY_KINDS = ("consent_purpose", "objection_scope", "subject_kind")


def _state() -> Any:
    return current_app.extensions["kti"]


def _role(role: str) -> Callable[[F], F]:
    from .auth import require_role  # the app owner's module; imported lazily

    return require_role(role)


def ingest_auth(view: F) -> F:
    """API key with role ``ingest``, or, when ``KTI_INBOUND_WEBHOOK_SECRET`` is set, a valid
    Standard Webhooks signature over the raw body."""

    @functools.wraps(view)
    def wrapped(*args: Any, **kwargs: Any) -> Any:
        secret = current_app.config.get("KTI_INBOUND_WEBHOOK_SECRET")
        if secret:
            verify_inbound(secret, request.headers, request.get_data(cache=True))
        else:
            from .auth import check_role

            check_role("ingest")
        return view(*args, **kwargs)

    wrapped.required_role = "ingest"  # type: ignore[attr-defined]  # read by the openapi builder
    return cast(F, wrapped)


def _vocabulary() -> dict[str, set[str]]:
    vocab = _state().policy_set().vocabulary
    return {kind: set(vocab.ids(kind)) for kind in VOCABULARY_KINDS}


def _body() -> dict[str, Any]:
    from .schemas import read_json_object

    return read_json_object()


@bp.post("/v1/events")
@ingest_auth
def post_event() -> Any:
    """Record one event.
    ---
    post:
      summary: Record an event
      description: >-
        Idempotent on `id`: 201 when recorded, 200 with the same body when the same id (and
        content) arrives again. With KTI_INBOUND_WEBHOOK_SECRET set, a Standard Webhooks signature
        replaces the API key.
      requestBody:
        required: true
        content:
          application/json:
            schema: Event
      responses:
        201:
          description: recorded
          content:
            application/json:
              schema: EventRecord
        200:
          description: this id was recorded before; nothing changed
          content:
            application/json:
              schema: EventRecord
        409:
          description: the same id was recorded before with other content
          content:
            application/json:
              schema: Error
    """
    result = _state().store.record_events([_body()], _vocabulary(), batch=False)[0]
    return jsonify(result.to_dict()), 201 if result.created else 200


@bp.post("/v1/events/batch")
@ingest_auth
def post_events_batch() -> Any:
    """Record up to 1000 events at once, all or none.
    ---
    post:
      summary: Record several events at once
      description: >-
        All or none: one bad event makes the whole batch a 400 naming its index. 201 when any
        event was new, else 200; each item says whether it was `created`.
      requestBody:
        required: true
        content:
          application/json:
            schema: EventBatchRequest
      responses:
        201:
          description: at least one event was new
          content:
            application/json:
              schema: EventBatchResult
        200:
          description: every event had been recorded before
          content:
            application/json:
              schema: EventBatchResult
        409:
          description: the same id was recorded before with other content
          content:
            application/json:
              schema: Error
    """
    body = _body()
    events = body.get("events")
    unknown = sorted(set(body) - {"events"})
    if unknown:
        raise RequestError(
            f"{unknown[0]}: unknown field (expected 'events')", {"field": unknown[0]}
        )
    if not isinstance(events, list):
        raise RequestError("events: required, a list of events", {"field": "events"})
    results = _state().store.record_events(events, _vocabulary(), batch=True)
    created = sum(r.created for r in results)
    return jsonify(
        {
            "events": [{**r.to_dict(), "created": r.created} for r in results],
            "created": created,
            "duplicates": len(results) - created,
        }
    ), (201 if created else 200)


@bp.get("/v1/subjects/<path:subject_id>")
@_role("query")
def get_subject(subject_id: str) -> Any:
    """A subject's current facts and event history.
    ---
    get:
      summary: A subject's facts and history
      description: Keyed by the pseudonym; the clear id is not stored. 404 when no event names it.
      responses:
        200:
          description: the facts folded from the events, and the events
          content:
            application/json:
              schema: SubjectView
    """
    view = _state().store.subject_view(subject_id)
    if view is None:
        raise NotFound("no events are recorded for this subject", {})
    return jsonify(view)


@bp.get("/v1/hooks/deliveries")
@_role("admin")
def list_deliveries() -> Any:
    """Webhook deliveries, newest first, each with its attempts.
    ---
    get:
      summary: List webhook deliveries
      parameters:
        - {in: query, name: status, schema: {type: string, enum: [pending, delivered, dead]}}
        - {in: query, name: subscription_id, schema: {type: string}}
        - {in: query, name: limit, schema: {type: integer, minimum: 1, maximum: 1000, default: 100}}
      responses:
        200:
          description: the deliveries (never their bodies)
          content:
            application/json:
              schema: DeliveryList
        400:
          description: a bad status or limit
          content:
            application/json:
              schema: Error
    """
    try:
        limit = int(request.args.get("limit", 100))
    except ValueError:
        raise RequestError("limit: must be an integer", {"field": "limit"}) from None
    if not 1 <= limit <= 1000:
        raise RequestError("limit: must be between 1 and 1000", {"field": "limit"})
    deliveries = _state().store.list_deliveries(
        status=request.args.get("status") or None,
        limit=limit,
        subscription_id=request.args.get("subscription_id") or None,
    )
    return jsonify({"deliveries": deliveries})


@bp.post("/v1/hooks/deliveries/<int:delivery_id>/retry")
@_role("admin")
def retry_delivery(delivery_id: int) -> Any:
    """Send a dead delivery again now.
    ---
    post:
      summary: Retry a dead webhook delivery
      description: No request body. One more attempt now; dead again if it fails.
      responses:
        200:
          description: the delivery, pending again
          content:
            application/json:
              schema: Delivery
        400:
          description: the delivery is not dead
          content:
            application/json:
              schema: Error
    """
    if delivery_id > 2**63 - 1:  # beyond any database id (SQLite would raise OverflowError)
        raise NotFound(f"no delivery {delivery_id}", {"id": delivery_id})
    return jsonify(_state().store.retry_delivery(delivery_id))
