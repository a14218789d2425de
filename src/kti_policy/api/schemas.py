"""HTTP-level marshmallow schemas: the envelopes around the core's request schema.

The decision request itself is ``kti_policy.decide.operation.OperationSchema`` (the core validates it,
together with the vocabulary, in ``parse_operation``); this module adds the batch envelope, the
response shapes and the error body. ``kti_policy.api.openapi`` documents the API from these same
classes, so the published schema cannot drift from what the service checks.
"""

from __future__ import annotations

import json
from typing import Any

import orjson
from flask import Request, request
from marshmallow import RAISE, Schema, ValidationError, fields, validate
from werkzeug.exceptions import ClientDisconnected, UnsupportedMediaType

from kti_policy.errors import RequestError

MAX_BATCH = 1000


def load_or_400(schema: Schema, body: Any, what: str) -> dict[str, Any]:
    """``schema.load(body)``, or a 400 ``RequestError`` naming every bad field (``invalid <what>``)."""
    try:
        return dict(schema.load(body))
    except ValidationError as exc:
        errs = exc.normalized_messages()
        raise RequestError(
            f"invalid {what}: " + "; ".join(f"{k}: {v}" for k, v in errs.items()), {"errors": errs}
        ) from None


def operation_schema() -> type[Schema]:
    """The core's decision request schema (imported late: the core may load after this module)."""
    from kti_policy.decide.operation import OperationSchema

    return OperationSchema


class _OperationList(fields.List):
    """A list of decision requests; each item is validated by the core with its index, so the
    envelope only checks that it is a list of objects. Documented as ``array of Operation``."""

    def _deserialize(self, value: Any, attr: Any, data: Any, **kwargs: Any) -> list[Any]:
        if not isinstance(value, list):
            raise self.make_error("invalid")
        return list(value)


class BatchRequestSchema(Schema):
    class Meta:
        unknown = RAISE

    operations = _OperationList(
        fields.Nested(lambda: operation_schema()()),
        required=True,
        validate=validate.Length(max=MAX_BATCH),
        metadata={"description": f"decision requests, at most {MAX_BATCH}"},
    )


class ReasonSchema(Schema):
    rule = fields.String(required=True)
    effect = fields.String(required=True, validate=validate.OneOf(["permit", "forbid"]))
    message = fields.String(required=True, metadata={"description": "in the negotiated language"})
    source = fields.String(metadata={"description": "citation in the register notice, e.g. §7"})


class ObligationSchema(Schema):
    type = fields.String(required=True, validate=validate.OneOf(["respond_by", "access_fee"]))
    due = fields.Date(metadata={"description": "respond_by: date in Europe/Helsinki"})
    chargeable = fields.Boolean(metadata={"description": "access_fee"})
    rule = fields.String()
    message = fields.String()


class DecisionSchema(Schema):
    decision_id = fields.String(required=True)
    decision = fields.String(required=True, validate=validate.OneOf(["allow", "deny"]))
    allowed = fields.Boolean(required=True)
    reasons = fields.List(fields.Nested(ReasonSchema), required=True)
    obligations = fields.List(fields.Nested(ObligationSchema), required=True)
    policy_version = fields.String(required=True)
    evaluated_at = fields.DateTime(required=True)


class BatchResponseSchema(Schema):
    decisions = fields.List(fields.Nested(DecisionSchema), required=True)


class ErrorSchema(Schema):
    error = fields.String(
        required=True,
        metadata={"description": "stable snake_case code, e.g. bad_request, unknown_vocabulary_id"},
    )
    message = fields.String(required=True)
    details = fields.Dict(
        required=True,
        metadata={
            "description": "bad_request: `fields` (field -> messages) and, in a batch, `index`; "
            "unknown_vocabulary_id: `field`, `value`, `known`; invalid_policies: `errors` "
            "(file, line, col, code, message) and `messages` (file:line:col: message)"
        },
    )


class PolicyErrorSchema(Schema):
    code = fields.String(required=True)
    message = fields.String(required=True)
    file = fields.String(required=True)
    line = fields.Integer(required=True)
    col = fields.Integer(required=True)
    severity = fields.String()


class PolicySetSchema(Schema):
    policy_version = fields.String(required=True)
    policies = fields.List(fields.Dict(), metadata={"description": "each policy with its rule ids"})
    vocabulary = fields.Dict(metadata={"description": "kind -> id -> fi/en labels"})


class ReloadResultSchema(Schema):
    policy_version = fields.String(required=True)
    previous_version = fields.String(required=True)
    changed = fields.Boolean(required=True)
    policies = fields.List(fields.String())


class HealthSchema(Schema):
    status = fields.String(required=True)


class ReadySchema(Schema):
    status = fields.String(required=True, validate=validate.OneOf(["ready", "not_ready"]))
    policy_version = fields.String(allow_none=True)
    checks = fields.Dict(keys=fields.String(), values=fields.String())


def read_json_object() -> dict[str, Any]:
    """The request body as a JSON object.

    415 when the body is not declared JSON, 413 when it is too large (``MAX_CONTENT_LENGTH``; a
    chunked body is measured in ``app._bounded_chunked_body``), 400 when it
    does not parse, is not an object, repeats a key in one object, or holds a lone UTF-16 surrogate
    (``"\\ud800"``: valid JSON, but no UTF-8 text; it would fail later, in the pseudonym's hash or
    the log line). Every endpoint that takes JSON reads it here, so the checks cover them all.
    """
    req = current_request()
    if req.environ.get("CONTENT_TYPE") != "application/json" and not req.is_json:
        raise UnsupportedMediaType(
            "the body must be JSON: send 'Content-Type: application/json'"
        )
    raw = request_body(req)
    body, repeated = _parse_json(raw)
    if not isinstance(body, dict):
        raise RequestError(
            f"the body must be a JSON object, not {_json_type(body)}", {"fields": {"_schema": []}}
        )
    # the walk finds nothing unless an object repeated a key or the text may hold a lone surrogate:
    # skipped for a body with neither (most bodies; the walk cost ~10 us per decision in a batch)
    problem = find_unsafe_json(body) if repeated or _may_hold_surrogate(raw) else None
    if problem is not None:
        where, what = problem
        raise RequestError(f"{where}: {what}", {"field": where, "fields": {where: [what]}})
    return body


def request_body(req: Request | None = None) -> bytes:
    """``request.get_data()``: read straight from the WSGI input when the length is declared.

    werkzeug's way (a limited stream around the input, read to its end through ``io``) cost 12 us
    of a single decision request (bench/app_profile.py); a declared length within the limit needs
    one ``read``. The bytes are kept where ``get_data`` keeps them, so a later ``get_data()`` gives
    the same (``tests/api/test_request_json.py`` pins that). Everything else takes werkzeug's
    path: no or an odd length, chunked, a body already read, one over ``MAX_CONTENT_LENGTH``
    (werkzeug's 413). Fewer bytes than declared is werkzeug's 400 (``ClientDisconnected``).
    ``req``: the current request, when the caller already looked it up."""
    if req is None:
        req = current_request()
    environ = req.environ
    declared = environ.get("CONTENT_LENGTH") or ""
    if (
        not (declared.isascii() and declared.isdigit())
        or "HTTP_TRANSFER_ENCODING" in environ
        or "_cached_data" in req.__dict__
        or "stream" in req.__dict__
    ):
        return req.get_data(cache=True)
    length, limit = int(declared), req.max_content_length
    if limit is not None and length > limit:
        return req.get_data(cache=True)
    raw = environ["wsgi.input"].read(length) if length else b""
    if len(raw) != length:
        raise ClientDisconnected()
    req._cached_data = raw  # type: ignore[attr-defined]  # werkzeug's get_data cache
    return raw


def current_request() -> Request:
    """The request behind Flask's ``request`` proxy: each attribute read through the proxy looks the
    context up again (about 1 us each, measured), so code on the decision path reads it once."""
    return request._get_current_object()  # type: ignore[attr-defined,no-any-return]


def _parse_json(raw: bytes) -> tuple[Any, bool]:
    """The parsed body and whether an object in it repeated a key (a ``_DuplicateKeys`` marks it).

    orjson parses a request body in a fraction of the standard library's time, but it keeps the
    last of repeated keys silently, turns integers beyond 64 bits into floats and refuses what the
    standard library reads (a BOM, UTF-16, NaN, 1e400, lone surrogates). Its answer is used only
    when it is provably the standard library's: the text has no backslash (so no escapes: every
    string is its own bytes and holds no quote), no run of 19 digits (an integer orjson might make
    a float of), and orjson's own writing of the result has as many quotes as the text (a repeated
    key would have lost at least its two). Its floats are correctly rounded, as Python's. Every
    other body takes the standard parser, whose answers and errors clients have always had
    (``tests/api/test_request_json.py``)."""
    if b"\\" not in raw and _LONG_DIGITS not in raw.translate(_DIGITS_AS_ZERO):
        try:
            fast = orjson.loads(raw)
            same = orjson.dumps(fast).count(b'"') == raw.count(b'"')
        except (orjson.JSONDecodeError, orjson.JSONEncodeError):  # e.g. nested deeper than orjson writes
            same = False
        if same:
            return fast, False
    return _parse_json_stdlib(raw)


# a run of 19 digits, found as 19 zeros once every digit reads as 0 (a regular expression cost
# ten times as much on a batch's body)
_DIGITS_AS_ZERO = bytes.maketrans(b"123456789", b"000000000")
_LONG_DIGITS = b"0" * 19


def _parse_json_stdlib(raw: bytes) -> tuple[Any, bool]:
    repeated: list[bool] = []

    def pairs(items: list[tuple[str, Any]]) -> dict[str, Any]:
        obj = _object_without_duplicates(items)
        if isinstance(obj, _DuplicateKeys):
            repeated.append(True)
        return obj

    try:
        return json.loads(raw, object_pairs_hook=pairs), bool(repeated)
    except (ValueError, RecursionError) as exc:
        detail: dict[str, Any] = {}
        if isinstance(exc, json.JSONDecodeError):
            detail = {"line": exc.lineno, "col": exc.colno}
        raise RequestError("the body is not valid JSON", detail) from None


def _may_hold_surrogate(raw: bytes) -> bool:
    """Whether JSON text may decode to a lone surrogate: a ``\\ud800``-style escape (any ``\\ud``,
    either case), UTF-8 bytes of one (``json.loads`` decodes with ``surrogatepass``: any ``0xED``
    byte), or a UTF-16/32 body (a NUL or a byte-order mark among the first four bytes)."""
    head = raw[:4]
    return (b"\\ud" in raw or b"\\uD" in raw or b"\xed" in raw
            or b"\x00" in head or head[:1] in (b"\xff", b"\xfe"))


class _DuplicateKeys(dict):  # type: ignore[type-arg]
    """A JSON object that repeated a key; ``find_unsafe_json`` reports it with its path."""

    duplicate: str = ""


def _object_without_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(pairs)
    if len(obj) != len(pairs):
        seen: set[str] = set()
        marked = _DuplicateKeys(obj)
        marked.duplicate = next(k for k, _ in pairs if k in seen or seen.add(k))  # type: ignore[func-returns-value]
        return marked
    return obj


def _has_surrogate(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def find_unsafe_json(value: Any, path: str = "") -> tuple[str, str] | None:
    """The first (path, problem) in a parsed JSON value: a repeated key (two values for
    ``operation`` make an ambiguous request about personal data) or a string that is not valid
    Unicode text (a lone surrogate). Paths read like ``operations[3].subject.id``."""
    stack: list[tuple[str, Any]] = [(path, value)]
    while stack:
        where, v = stack.pop()
        if isinstance(v, str):
            if _has_surrogate(v):
                return where or "body", "not valid Unicode text (a lone UTF-16 surrogate)"
        elif isinstance(v, dict):
            if isinstance(v, _DuplicateKeys):
                key = f"{where}.{v.duplicate}" if where else v.duplicate
                return key, "the key appears more than once in the object"
            for k, item in reversed(list(v.items())):
                child = f"{where}.{k}" if where else str(k)
                if _has_surrogate(k):
                    return where or "body", "a key is not valid Unicode text (a lone UTF-16 surrogate)"
                stack.append((child, item))
        elif isinstance(v, list):
            stack.extend((f"{where}[{i}]", item) for i, item in reversed(list(enumerate(v))))
    return None


def _json_type(value: Any) -> str:
    return {list: "an array", str: "a string", bool: "a boolean", type(None): "null"}.get(
        type(value), "a number"
    )


# -- events, subjects and deliveries (CONTRACT sections 3 and 4) --------------------------------
# ``Store.record_events`` checks events itself (with the vocabulary); these document the shapes.


class EventSchema(Schema):
    id = fields.String(required=True, metadata={"description": "unique event id, for idempotency"})
    type = fields.String(required=True, metadata={
        "description": "consent.granted, consent.withdrawn, objection.registered, "
                       "objection.withdrawn, erasure.requested, relationship.started, "
                       "relationship.ended, access_request.received, ..."})
    subject_id = fields.String(required=True, metadata={"description": "the caller's customer id"})
    occurred_at = fields.DateTime(required=True, metadata={"description": "ISO 8601 with offset"})
    data = fields.Dict(metadata={"description": "per type, e.g. {\"purpose\": \"disclosure\"}"})


class EventBatchRequestSchema(Schema):
    events = fields.List(fields.Nested(EventSchema), required=True,
                         validate=validate.Length(max=MAX_BATCH))


class EventRecordSchema(Schema):
    id = fields.String(required=True)
    type = fields.String(required=True)
    subject_key = fields.String(required=True, metadata={"description": "keyed hash of subject_id"})
    occurred_at = fields.DateTime(required=True)
    received_at = fields.DateTime(required=True)
    sequence = fields.Integer(required=True, metadata={"description": "arrival order"})
    data = fields.Dict(required=True)


class EventBatchItemSchema(EventRecordSchema):
    created = fields.Boolean(required=True, metadata={"description": "false for a repeated id"})


class EventBatchResultSchema(Schema):
    events = fields.List(fields.Nested(EventBatchItemSchema), required=True)
    created = fields.Integer(required=True)
    duplicates = fields.Integer(required=True)


class SubjectViewSchema(Schema):
    subject_key = fields.String(required=True)
    consents = fields.List(fields.Raw(), required=True)
    objections = fields.List(fields.Raw(), required=True)
    relationship = fields.String(allow_none=True, metadata={"description": "active, ended or null"})
    erasure_requested = fields.Boolean(required=True)
    access_requests = fields.List(fields.String())
    last_access_request_at = fields.String(allow_none=True)
    history = fields.List(fields.Nested(EventRecordSchema), required=True)


class DeliveryAttemptSchema(Schema):
    at = fields.String(required=True)
    outcome = fields.String(required=True)
    status_code = fields.Integer(allow_none=True)
    error = fields.String(allow_none=True)
    duration_ms = fields.Float()


class DeliverySchema(Schema):
    id = fields.Integer(required=True)
    subscription_id = fields.String(required=True)
    event_id = fields.String(required=True)
    event_type = fields.String(required=True)
    status = fields.String(required=True,
                           validate=validate.OneOf(["pending", "delivered", "dead"]))
    attempt_count = fields.Integer(required=True)
    next_attempt_at = fields.String(allow_none=True)
    last_status_code = fields.Integer(allow_none=True)
    last_error = fields.String(allow_none=True)
    created_at = fields.String(allow_none=True)
    delivered_at = fields.String(allow_none=True)
    attempts = fields.List(fields.Nested(DeliveryAttemptSchema), required=True)


class DeliveryListSchema(Schema):
    deliveries = fields.List(fields.Nested(DeliverySchema), required=True)
