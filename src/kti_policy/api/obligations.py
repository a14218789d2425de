"""The obligations register over HTTP (CONTRACT section 8). Thin over ``Register``.

- ``POST /v1/requests`` (ingest): 201 with the new case, 200 with the first one for a repeated
  (type, reference); type ``erasure`` also records the ``erasure.requested`` fact, as the event.
- ``GET /v1/obligations`` (query), ``GET /v1/obligations/<id>`` (query, with history and the
  webhook deliveries), ``GET /v1/obligations.csv`` (admin; the same filters, every row).
- ``POST /v1/obligations/<id>/extend|complete|refuse`` (ingest): 200 with the obligation; 409 when
  its state forbids the action.

``init_app`` builds the ``Register`` on the app's store (its event hook then opens cases from
``POST /v1/events``) with the clock ``KTI_CLOCK`` (a callable; tests freeze time with it).
Who acted is recorded as the API key's fingerprint, never the key.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any

from flask import Blueprint, Flask, Response, current_app, jsonify, request, stream_with_context

from kti_policy.errors import NotFound
from kti_policy.register.ledger import ObligationConflict, Register
from kti_policy.register.query import Query, csv_text, detail, list_page
from kti_policy.store.tables import utcnow

from .auth import presented_key, require_role
from .errors import error_response
from .events import ingest_auth
from .obligation_schemas import OPENAPI_SCHEMAS
from .schemas import read_json_object

bp = Blueprint("obligations", __name__)
__all__ = ["OPENAPI_SCHEMAS", "bp", "init_app"]  # OPENAPI_SCHEMAS: read by openapi.py

_OBLIGATION = """
          content:
            application/json:
              schema: ObligationRecord
"""
_ERROR = """
          content:
            application/json:
              schema: Error
"""


def init_app(app: Flask, store: Any, config: Mapping[str, Any]) -> None:
    """Attach the register (needs a real ``Store``: one with event hooks) and the routes."""
    if not hasattr(store, "add_event_hook"):
        return
    from kti_policy.register.rules import REQUEST_TYPES

    try:
        vocab = app.extensions["kti"].policy_set().vocabulary
        request_types = tuple(vocab.ids("request_type")) or REQUEST_TYPES
    except Exception:  # a policy set without request types: the contract's ids
        request_types = REQUEST_TYPES
    clock = config.get("KTI_CLOCK")
    clock = clock if callable(clock) else utcnow  # a callable from tests; never the env
    app.extensions["kti_register"] = Register(store, clock=clock, request_types=request_types)
    app.register_blueprint(bp)


def _register() -> Register:
    reg: Register = current_app.extensions["kti_register"]
    return reg


MAX_ID = 2**63 - 1  # a BIGINT; a larger id in the URL would overflow the database driver


def _id(oid: int) -> int:
    """``oid`` when it can name an obligation; 404 for ids no row can have."""
    if not 1 <= oid <= MAX_ID:
        raise NotFound(f"no obligation {oid}", {"id": oid})
    return oid


def _actor() -> str:
    key = presented_key()
    if not key:
        return "api (no key: authentication off)"
    return "api key " + hashlib.sha256(key.encode()).hexdigest()[:12]


@bp.errorhandler(ObligationConflict)
def _conflict(err: ObligationConflict) -> Response:
    resp = error_response(409, err.code, err.message, dict(err.details))
    return resp


@bp.post("/v1/requests")
@ingest_auth
def post_request() -> Any:
    opened = _register().open_request(read_json_object(), _actor())
    return jsonify(opened.obligation), 201 if opened.created else 200


def _query() -> Query:
    state = current_app.extensions["kti"]
    return Query.parse(request.args, state.subject_key)


@bp.get("/v1/obligations")
@require_role("query")
def list_obligations() -> Any:
    """List obligations, soonest due first (filters combine with AND; cursor pagination)
    ---
    get:
      parameters:
        - {in: query, name: status, schema: {type: string, enum: [open, extended, completed, refused]}}
        - {in: query, name: overdue, schema: {type: string, enum: ["true", "false"]}}
        - {in: query, name: type, schema: {type: string}}
        - {in: query, name: request_type, schema: {type: string}}
        - {in: query, name: system, schema: {type: string}}
        - {in: query, name: due_before, schema: {type: string, format: date}, description: exclusive}
        - {in: query, name: reference, schema: {type: string}}
        - {in: query, name: subject_id, schema: {type: string}, description: hashed to look up}
        - {in: query, name: limit, schema: {type: integer, minimum: 1, maximum: 1000, default: 100}}
        - {in: query, name: cursor, schema: {type: string}}
      responses:
        "200":
          description: "{items: [obligation], next_cursor: string | null}"
          content:
            application/json:
              schema: ObligationRecordList
    """
    reg = _register()
    query = _query()
    with reg.store._read() as conn:
        return jsonify(list_page(conn, query, reg.today()))


@bp.get("/v1/obligations.csv")
@require_role("admin")
def export_obligations() -> Any:
    """Export obligations as CSV for the Data Protection Officer (the list's filters)
    ---
    get:
      responses:
        "200":
          description: "text/csv: id, type, request_type, status, overdue, due, received,
            reference, system, rule, data_categories, extension_notice_by, retain_until, closed_at"
          content:
            text/csv:
              schema: {type: string}
    """
    reg = _register()
    query = _query()
    today = reg.today()

    def generate() -> Any:
        with reg.store._read() as conn:
            yield from csv_text(conn, query, today)

    name = f"obligations-{today.isoformat()}.csv"
    return Response(
        stream_with_context(generate()),
        mimetype="text/csv",
        headers={"Content-Disposition": f'attachment; filename="{name}"'},
    )


@bp.get("/v1/obligations/<int:oid>")
@require_role("query")
def get_obligation(oid: int) -> Any:
    reg = _register()
    with reg.store._read() as conn:
        return jsonify(detail(conn, _id(oid), reg.today()))


def _action_doc(what: str, body: str) -> str:
    """The docstring of an action: ``body`` names its request schema."""
    return f"""{what}
    ---
    post:
      requestBody:
        content:
          application/json:
            schema: {body}
      responses:
        "200":
          description: the obligation after the change{_OBLIGATION}
        "409":
          description: its state forbids this action{_ERROR}
    """


@bp.post("/v1/obligations/<int:oid>/extend")
@require_role("ingest")
def extend_obligation(oid: int) -> Any:
    return jsonify(_register().extend(_id(oid), read_json_object(), _actor()))


@bp.post("/v1/obligations/<int:oid>/complete")
@require_role("ingest")
def complete_obligation(oid: int) -> Any:
    body = read_json_object() if request.get_data(cache=True) else {}
    return jsonify(_register().complete(_id(oid), body, _actor()))


@bp.post("/v1/obligations/<int:oid>/refuse")
@require_role("ingest")
def refuse_obligation(oid: int) -> Any:
    return jsonify(_register().refuse(_id(oid), read_json_object(), _actor()))


extend_obligation.__doc__ = _action_doc(
    "Extend a rights request once, on or before its due date: due becomes three months after "
    "receipt (GDPR 12(3))",
    "ObligationReason",
)
complete_obligation.__doc__ = _action_doc("Complete an open or extended obligation",
                                          "ObligationNote")
refuse_obligation.__doc__ = _action_doc(
    "Refuse an open or extended obligation (reason required: cite the rule)",
    "ObligationReason",
)


post_request.__doc__ = """Open a data subject request case (201; 200 with the first case for a repeated reference)
    ---
    post:
      requestBody:
        required: true
        content:
          application/json:
            schema: RequestCase
      responses:
        "201":
          description: the new case""" + _OBLIGATION + """
        "200":
          description: the case opened earlier with this type and reference""" + _OBLIGATION + """
    """
get_obligation.__doc__ = """One obligation with its full history and the webhook deliveries sent for it
    ---
    get:
      responses:
        "200":
          description: the obligation, with history and deliveries""" + _OBLIGATION + """
    """
