"""A decision request: marshmallow schema, vocabulary checks, and the ``Operation`` it becomes.

Shape errors name each bad field (``RequestError`` with ``details.errors``); an id the loaded
vocabulary does not know is ``UnknownVocabularyId`` naming the field, the value and the known ids.
Neither ever turns into a deny: a client error is a 400, not a decision.
"""

from __future__ import annotations

from collections.abc import Mapping
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from marshmallow import RAISE, Schema, ValidationError, fields, validate, validates_schema

from kti_policy.errors import RequestError, UnknownVocabularyId
from kti_policy.facts.fold import RELATIONSHIPS
from kti_policy.policy.model import Vocabulary

from .timerange import BoundedAwareDateTime

MAX_ID_LENGTH = 256
# Set while replaying decisions logged before CONTRACT v2 (``kti-policy diff``): the fields v2 made
# required (recipient.country for disclose, cookie for store_cookie) may be missing there, and
# read as "not given", as they did when the decision was made.
_REPLAYING: ContextVar[bool] = ContextVar("kti_replaying", default=False)
MAX_LIST = 100


def strict_bool(**kw: Any) -> fields.Boolean:
    """JSON true/false only: "y" or 1 must not quietly mean true in a privacy decision."""
    return fields.Boolean(truthy={True}, falsy={False}, **kw)


class _Base(Schema):
    class Meta:
        unknown = RAISE


def id_field(**kw: Any) -> fields.String:
    return fields.String(validate=validate.Length(min=1, max=MAX_ID_LENGTH), **kw)


def id_list(**kw: Any) -> fields.List:
    return fields.List(id_field(), validate=validate.Length(max=MAX_LIST), **kw)


def time_field(description: str) -> fields.AwareDateTime:
    return BoundedAwareDateTime(default_timezone=UTC, metadata={"description": description})


class SubjectSchema(_Base):
    id = fields.String(validate=validate.Length(min=1, max=MAX_ID_LENGTH),
                       metadata={"description": "The caller's customer id (pseudonymised before it is stored or logged); "
                                                "required except for store_cookie"})
    consents = id_list(metadata={"description": "Inline consent purpose ids, added to recorded ones"})
    objections = id_list(metadata={"description": "Inline objection scope ids, added to recorded ones"})
    relationship = fields.String(validate=validate.OneOf(RELATIONSHIPS),
                                 metadata={"description": "active or ended; a recorded 'ended' always wins"})
    erasure_requested = strict_bool()
    kind = id_field(metadata={"description": "Subject kind id (consumer, business_contact); consumer wins"})
    relationship_started_at = time_field("When the customer relationship started")
    relationship_ended_at = time_field("When the customer relationship ended (a recorded end always wins)")
    erasure_requested_at = time_field("When erasure was requested")
    restricted = strict_bool(metadata={"description": "Processing is restricted (GDPR 18); a recorded restriction always wins"})


class RecipientSchema(_Base):
    type = id_field(required=True, metadata={"description": "Recipient type id"})
    name = fields.String(validate=validate.Length(max=500))
    country = fields.String(validate=validate.Regexp(r"^[A-Z]{2}$", error="must be an ISO 3166 alpha-2 code like FI"),
                            metadata={"description": "ISO 3166 alpha-2; required for disclose"})
    dpa = strict_bool(metadata={"description": "A data processing agreement (GDPR 28(3)) binds the recipient"})
    safeguards = id_field(metadata={"description": "Transfer safeguard id (scc, bcr, dpf)"})


class LegalBasisSchema(_Base):
    type = id_field(required=True, metadata={"description": "legal_obligation, consent, contract or legitimate_interest"})
    reference = fields.String(validate=validate.Length(max=1000))


class SubjectRequestSchema(_Base):
    type = id_field(required=True, metadata={"description": "Request type id"})
    received_at = BoundedAwareDateTime(default_timezone=UTC, metadata={"description": "When the request was received (ISO 8601)"})
    written = strict_bool()
    signed = strict_bool()
    identity_verified = strict_bool()
    extended = strict_bool(metadata={"description": "The deadline is extended by two months (GDPR 12(3))"})
    # loaded as copy_number: marshmallow's dump would read a dict's own .copy method otherwise
    copy = fields.Integer(strict=True, validate=validate.Range(min=1, max=10_000), data_key="copy", attribute="copy_number",
                          metadata={"description": "Which copy of the data this is (1 = the first, free)"})
    excessive = strict_bool(metadata={"description": "Documented as manifestly unfounded or excessive (GDPR 12(5))"})


class CookieSchema(_Base):
    kind = id_field(required=True, metadata={"description": "Cookie kind id"})
    name = fields.String(validate=validate.Length(max=500))
    lifetime_days = fields.Integer(strict=True, validate=validate.Range(min=0, max=100_000))


class OperationSchema(_Base):
    """The body of ``POST /v1/decisions`` (CONTRACT section 2)."""

    operation = id_field(required=True, metadata={"description": "Operation id, e.g. disclose"})
    purpose = id_field(metadata={"description": "Purpose id (required for process)"})
    data_categories = id_list(load_default=list)
    subject = fields.Nested(SubjectSchema, metadata={"description": "Required except for store_cookie"})
    recipient = fields.Nested(RecipientSchema, metadata={"description": "Required for disclose"})
    legal_basis = fields.Nested(LegalBasisSchema)
    source = id_field(metadata={"description": "Source id (required for collect)"})
    request = fields.Nested(SubjectRequestSchema, metadata={"description": "Required for subject_request"})
    channel = id_field(metadata={"description": "Channel id for marketing (email, sms, phone, post, kti_media)"})
    cookie = fields.Nested(CookieSchema, metadata={"description": "Required for store_cookie"})
    at = BoundedAwareDateTime(default_timezone=UTC, metadata={"description": "When the operation would happen (default: now)"})

    @validates_schema
    def _needed(self, data: dict[str, Any], **_: Any) -> None:
        op = data.get("operation")
        replay = _REPLAYING.get()
        needs = {"process": "purpose", "disclose": "recipient", "subject_request": "request", "collect": "source"}
        if not replay:
            needs["store_cookie"] = "cookie"
        errors: dict[str, Any] = {}
        if op != "store_cookie" and "subject" not in data:
            errors["subject"] = [f"required for operation {op!r}"]
        elif op != "store_cookie" and not data["subject"].get("id"):
            errors["subject"] = {"id": [f"required for operation {op!r}"]}
        if op in needs and needs[op] not in data:
            errors[needs[op]] = [f"required for operation {op!r}"]
        if op == "disclose" and "recipient" in data and not data["recipient"].get("country") and not replay:
            # a missing country must never count as Finland (RULES D6)
            errors["recipient"] = {"country": ["required for operation 'disclose'"]}
        request = data.get("request") or {}
        if request.get("type") == "inquiry" and request.get("extended"):
            errors["request"] = {"extended": ["an inquiry is answered in two business days and cannot be extended"]}
        if errors:
            raise ValidationError(errors)


_SCHEMA = OperationSchema()

# Which vocabulary kind each id-valued field takes.
_VOCAB_FIELDS: tuple[tuple[tuple[str, ...], str], ...] = (
    (("operation",), "operation"),
    (("purpose",), "purpose"),
    (("data_categories",), "data_category"),
    (("recipient", "type"), "recipient_type"),
    (("legal_basis", "type"), "legal_basis_type"),
    (("source",), "source"),
    (("request", "type"), "request_type"),
    (("subject", "consents"), "consent_purpose"),
    (("subject", "objections"), "objection_scope"),
    (("subject", "kind"), "subject_kind"),
    (("recipient", "safeguards"), "transfer_safeguard"),
    (("channel",), "channel"),
    (("cookie", "kind"), "cookie_kind"),
)


@dataclass(frozen=True)
class Operation:
    """A validated decision request. ``data`` is the normalised body (times as datetimes)."""

    data: Mapping[str, Any]

    @property
    def operation(self) -> str:
        return str(self.data["operation"])

    @property
    def subject_id(self) -> str | None:
        subject = self.data.get("subject")
        return subject.get("id") if subject else None

    @property
    def inline_facts(self) -> dict[str, Any] | None:
        subject = self.data.get("subject")
        if not subject:
            return None
        facts = {k: v for k, v in subject.items() if k != "id"}
        return facts or None

    @property
    def at(self) -> datetime | None:
        return self.data.get("at")

    @property
    def received_at(self) -> datetime | None:
        req = self.data.get("request") or {}
        return req.get("received_at")

    def to_dict(self, subject_id: str | None = None) -> dict[str, Any]:
        """JSON form; ``subject_id`` replaces the clear id (the decision log passes a pseudonym)."""
        out = _SCHEMA.dump(self.data)
        if subject_id is not None and "subject" in out:
            out["subject"] = dict(out["subject"], id=subject_id)
        return out


def parse_operation(body: Any, vocabulary: Vocabulary, field_prefix: str = "", replay: bool = False) -> Operation:
    """Validate a request body against the schema and the vocabulary (``replay``: a logged request,
    which may predate the fields CONTRACT v2 made required)."""
    if replay:
        token = _REPLAYING.set(True)
        try:
            return parse_operation(body, vocabulary, field_prefix)
        finally:
            _REPLAYING.reset(token)
    if not isinstance(body, Mapping):
        where = field_prefix.rstrip(".")
        raise RequestError(f"{where or 'the body'} must be a JSON object", {"field": where or None})
    try:
        data = _SCHEMA.load(body)
    except ValidationError as exc:
        op = body.get("operation")
        if isinstance(op, str) and op and not vocabulary.knows("operation", op):
            raise UnknownVocabularyId(field_prefix + "operation", op, vocabulary.ids("operation")) from None
        errs = _prefixed(exc.normalized_messages(), field_prefix)
        raise RequestError(_summary(errs), {"errors": errs}) from None
    for path, kind in _VOCAB_FIELDS:
        value: Any = data
        for part in path:
            value = value.get(part) if isinstance(value, Mapping) else None
        name = field_prefix + ".".join(path)
        values = value if isinstance(value, list) else [value]
        for i, v in enumerate(values):
            if v is not None and not vocabulary.knows(kind, v):
                where = f"{name}[{i}]" if isinstance(value, list) else name
                raise UnknownVocabularyId(where, v, vocabulary.ids(kind))
    return Operation(data)


def _prefixed(errs: Mapping[str, Any], prefix: str) -> dict[str, Any]:
    return {f"{prefix}{k}": v for k, v in errs.items()} if prefix else dict(errs)


def _summary(errs: Mapping[str, Any]) -> str:
    parts = []
    for name, msg in errs.items():
        if isinstance(msg, list):
            parts.append(f"{name}: {' '.join(str(m) for m in msg)}")
        elif isinstance(msg, dict):
            inner = "; ".join(f"{k}: {v}" for k, v in msg.items())
            parts.append(f"{name}: {inner}")
        else:
            parts.append(f"{name}: {msg}")
    return "invalid request: " + "; ".join(parts)
