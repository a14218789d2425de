"""The one place that maps errors to HTTP (STYLE habit 2).

Every error leaves the service as JSON ``{"error": code, "message": ..., "details": {...}}``:
library errors (``KtiError`` subclasses) by their ``code``, marshmallow ``ValidationError`` as
``bad_request`` naming each bad field, werkzeug's HTTP errors (404, 405, 413, 415, ...) with a
snake_case code of their own, and anything else as a generic 500 whose traceback goes only to the
server log.
"""

from __future__ import annotations

import logging
from typing import Any

from flask import Flask, Response, jsonify
from marshmallow import ValidationError
from werkzeug.exceptions import HTTPException

from kti_policy.errors import KtiError, PolicyErrors

log = logging.getLogger(__name__)

#: Library error code -> HTTP status. Codes not listed are server faults (500).
STATUS_BY_CODE: dict[str, int] = {
    "bad_request": 400,
    "unknown_vocabulary_id": 400,
    "unauthorized": 401,
    "forbidden": 403,
    "not_found": 404,
    "method_not_allowed": 405,
    "event_conflict": 409,
    "payload_too_large": 413,
    "too_costly": 413,
    "unsupported_media_type": 415,
    "invalid_policies": 422,
    "not_ready": 503,
    "playground_busy": 503,
}

#: werkzeug HTTP status -> our error code
CODE_BY_STATUS: dict[int, str] = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    406: "not_acceptable",
    408: "request_timeout",
    411: "length_required",
    413: "payload_too_large",
    414: "uri_too_long",
    421: "misdirected_request",
    415: "unsupported_media_type",
    429: "too_many_requests",
    431: "request_header_fields_too_large",
    500: "internal_error",
    501: "not_implemented",
    503: "service_unavailable",
}


def error_response(
    status: int, code: str, message: str, details: dict[str, Any] | None = None
) -> Response:
    resp = jsonify({"error": code, "message": message, "details": details or {}})
    resp.status_code = status
    return resp


def status_for(err: KtiError) -> int:
    return STATUS_BY_CODE.get(err.code, 500)


def render_kti_error(err: KtiError) -> Response:
    status = status_for(err)
    if status >= 500 and status != 503:  # 503: a known, passing condition (busy, not ready)
        log.error("internal error %s", err.code, exc_info=err)
        return error_response(500, "internal_error", "internal server error")
    details = dict(err.details)
    if isinstance(err, PolicyErrors):
        # the same objects the CLI prints: structured, and as "file:line:col: message" text
        details["errors"] = [e.to_dict() for e in err.errors]
        details["messages"] = [str(e) for e in err.errors]
    resp = error_response(status, err.code, err.message, details)
    if status == 503:
        resp.headers["Retry-After"] = str(details.get("retry_after", RETRY_AFTER_SECONDS))
    if status == 401:
        resp.headers["WWW-Authenticate"] = 'Bearer realm="kti-policy"'
    return resp


def render_validation_error(err: ValidationError) -> Response:
    fields = err.messages if isinstance(err.messages, dict) else {"_schema": err.messages}
    names = ", ".join(sorted(str(k) for k in fields)) if isinstance(fields, dict) else ""
    return error_response(400, "bad_request", f"invalid fields: {names}", {"fields": fields})


def render_http_exception(err: HTTPException) -> Response:
    status = err.code or 500
    if status >= 500:
        return error_response(status, CODE_BY_STATUS.get(status, "internal_error"), err.name)
    code = CODE_BY_STATUS.get(status, "http_error")
    details: dict[str, Any] = {}
    if status == 405:
        allowed = sorted(getattr(err, "valid_methods", None) or [])
        details["allowed_methods"] = allowed
    message = err.description or err.name
    resp = error_response(status, code, message, details)
    if status == 405 and details["allowed_methods"]:
        resp.headers["Allow"] = ", ".join(details["allowed_methods"])
    return resp


def render_unexpected(err: Exception) -> Response:
    if isinstance(err, HTTPException):
        return render_http_exception(err)
    log.exception("unhandled error")
    return error_response(500, "internal_error", "internal server error")


#: seconds a client is told to wait when the database does not answer
RETRY_AFTER_SECONDS = 5


def database_errors() -> tuple[type[Exception], ...]:
    """Exceptions that mean the database is down or unreachable (not a bug in a request): the
    SQLAlchemy wrappers, the pool's timeout, and the drivers' own (the decision path's single read
    runs on the driver directly)."""
    import sqlite3

    from sqlalchemy import exc as sa_exc

    kinds: list[type[Exception]] = [
        sa_exc.OperationalError, sa_exc.InterfaceError, sa_exc.TimeoutError, sa_exc.DisconnectionError,
        sqlite3.OperationalError,
    ]
    try:
        import psycopg

        kinds += [psycopg.OperationalError, psycopg.InterfaceError]
    except ImportError:  # pragma: no cover - psycopg is a dependency
        pass
    return tuple(kinds)


def render_database_unavailable(err: Exception) -> Response:
    """503 with ``Retry-After``: an event sender retries instead of dropping the event. One log
    line, without a traceback (an outage would otherwise fill the log with identical ones)."""
    log.warning("database unavailable: %s", type(err).__name__)
    resp = error_response(
        503, "service_unavailable", "the database is not available; retry later",
        {"retry_after": RETRY_AFTER_SECONDS},
    )
    resp.headers["Retry-After"] = str(RETRY_AFTER_SECONDS)
    return resp


def register_error_handlers(app: Flask) -> None:
    for kind in database_errors():
        app.register_error_handler(kind, render_database_unavailable)
    app.register_error_handler(KtiError, render_kti_error)
    app.register_error_handler(ValidationError, render_validation_error)
    app.register_error_handler(HTTPException, render_http_exception)
    app.register_error_handler(Exception, render_unexpected)
