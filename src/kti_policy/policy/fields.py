"""The fields a condition may test: request paths and subject facts, with their kinds.

One table serves the loader (which paths exist, which vocabulary checks a value, which operators
apply), the reference evaluator and the compiler (scalar, list, boolean or time encoding).
"""

from __future__ import annotations

from dataclasses import dataclass

from kti_policy.facts.fold import RELATIONSHIPS


@dataclass(frozen=True)
class Field:
    path: str
    shape: str  # "scalar" (one id or string), "list" (ids), "bool", "time" (an instant)
    vocab: str | None = None  # vocabulary kind whose ids the values must be
    # values the request schema or the events can set even when the vocabulary lacks them
    extra_values: tuple[str, ...] = ()


FIELDS: dict[str, Field] = {
    f.path: f
    for f in (
        Field("operation", "scalar", "operation"),
        Field("purpose", "scalar", "purpose"),
        Field("data_categories", "list", "data_category"),
        Field("channel", "scalar", "channel"),
        Field("recipient.type", "scalar", "recipient_type"),
        Field("recipient.country", "scalar"),
        Field("recipient.name", "scalar"),
        Field("recipient.dpa", "bool"),
        Field("recipient.safeguards", "scalar", "transfer_safeguard"),
        Field("legal_basis.type", "scalar", "legal_basis_type"),
        Field("legal_basis.reference", "scalar"),
        Field("source", "scalar", "source"),
        Field("cookie.kind", "scalar", "cookie_kind"),
        Field("request.type", "scalar", "request_type"),
        Field("request.written", "bool"),
        Field("request.signed", "bool"),
        Field("request.identity_verified", "bool"),
        Field("request.extended", "bool"),
        Field("request.excessive", "bool"),
        Field("request.further_copy", "bool"),  # request.copy > 1
        Field("subject.kind", "scalar", "subject_kind"),
        Field("subject.consents", "list", "consent_purpose"),
        Field("subject.withdrawn_consents", "list", "consent_purpose"),
        Field("subject.objections", "list", "objection_scope"),
        Field("subject.relationship", "scalar", "relationship", RELATIONSHIPS),
        Field("subject.relationship_started_at", "time"),
        Field("subject.relationship_ended_at", "time"),
        Field("subject.erasure_requested", "bool"),
        Field("subject.erasure_requested_at", "time"),
        Field("subject.restricted", "bool"),
    )
}

TIME_OPERATORS = ("within", "more_than")

