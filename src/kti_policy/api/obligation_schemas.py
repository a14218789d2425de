"""OpenAPI shapes of the obligations register (CONTRACT section 8), published by
``api/obligations.py`` as ``OPENAPI_SCHEMAS``. They document; ``Register`` validates the bodies
itself (errors name the field), so these are never used to load a request."""

from __future__ import annotations

from typing import Any

from marshmallow import Schema, fields, validate

from kti_policy.register.tables import STATUSES


class RequestCaseSchema(Schema):
    type = fields.String(required=True, metadata={"description": "request type id"})
    subject_id = fields.String(required=True, metadata={
        "description": "hashed at once with the pseudonym key; never stored clear"})
    received_at = fields.DateTime(required=True, metadata={"description": "ISO 8601"})
    reference = fields.String(required=True, metadata={
        "description": "the caller's ticket or letter number; with type, the idempotency key"})
    identity_verified = fields.Boolean()


class HistoryEntrySchema(Schema):
    at = fields.String(required=True)
    what = fields.String(required=True, metadata={
        "description": "opened, extended, completed, refused, due_soon, overdue, "
                       "deletion_due_queued; more fields per entry (due, reason, delivery ids)"})
    by = fields.String(required=True, metadata={
        "description": "the API key's fingerprint, event:<id> or scheduler"})


class ObligationDeliverySchema(Schema):
    id = fields.Integer(required=True)
    subscription_id = fields.String(required=True)
    webhook_id = fields.String(required=True)
    event_type = fields.String(required=True)
    status = fields.String(required=True)
    attempt_count = fields.Integer(required=True)
    created_at = fields.String(allow_none=True)
    next_attempt_at = fields.String(allow_none=True)
    delivered_at = fields.String(allow_none=True)


class ObligationRecordSchema(Schema):
    id = fields.Integer(required=True)
    type = fields.String(required=True, metadata={"description": "respond_by or delete_by"})
    request_type = fields.String(allow_none=True)
    status = fields.String(required=True, validate=validate.OneOf(STATUSES))
    overdue = fields.Boolean(required=True)
    due = fields.Date(required=True)
    received = fields.Date(required=True)
    reference = fields.String(required=True)
    system = fields.String(allow_none=True, metadata={"description": "deletion tasks: subscription id"})
    rule = fields.String(required=True)
    data_categories = fields.List(fields.String(), required=True)
    case_id = fields.Integer(allow_none=True)
    identity_verified = fields.Boolean(allow_none=True)
    original_due = fields.Date(allow_none=True)
    extension_notice_by = fields.Date(allow_none=True)
    retain_until = fields.Date(allow_none=True)
    created_at = fields.String(allow_none=True)
    closed_at = fields.String(allow_none=True)
    history = fields.List(fields.Dict(), metadata={
        "description": "[{at, what, by, ...}] oldest first (see HistoryEntry)"})
    deliveries = fields.List(fields.Nested(ObligationDeliverySchema), metadata={
        "description": "GET /v1/obligations/<id> and the actions: the webhooks sent for it"})


class ObligationRecordListSchema(Schema):
    items = fields.List(fields.Nested(ObligationRecordSchema), required=True)
    next_cursor = fields.String(allow_none=True, required=True)


class ReasonSchema(Schema):
    reason = fields.String(required=True)


class NoteSchema(Schema):
    note = fields.String()


OPENAPI_SCHEMAS: dict[str, Any] = {
    "RequestCase": RequestCaseSchema,
    "HistoryEntry": HistoryEntrySchema,
    "ObligationDelivery": ObligationDeliverySchema,
    "ObligationRecord": ObligationRecordSchema,
    "ObligationRecordList": ObligationRecordListSchema,
    "ObligationReason": ReasonSchema,
    "ObligationNote": NoteSchema,
}
