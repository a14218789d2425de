"""operation: request bodies -> Operation; shape errors name fields (with a batch prefix), unknown
ids are UnknownVocabularyId naming the field, the value and the known ids."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from kti_policy.decide.operation import parse_operation
from kti_policy.errors import RequestError, UnknownVocabularyId
from kti_policy.policy.loader import load_policy_set
from kti_policy.policy.model import Vocabulary

VOCAB: Vocabulary = load_policy_set(Path(__file__).parent.parent / "data" / "clean").vocabulary

DISCLOSE: dict[str, Any] = {
    "operation": "disclose",
    "data_categories": ["email"],
    "subject": {"id": "c-1", "consents": ["disclosure"], "relationship": "active"},
    "recipient": {"type": "authority", "country": "FI", "name": "Ulosotto"},
    "legal_basis": {"type": "legal_obligation", "reference": "UK 3:64"},
    "at": "2026-03-02T10:00:00+02:00",
}


def test_a_valid_body() -> None:
    op = parse_operation(DISCLOSE, VOCAB)
    assert op.operation == "disclose" and op.subject_id == "c-1"
    assert op.inline_facts == {"consents": ["disclosure"], "relationship": "active"}
    assert op.at == datetime(2026, 3, 2, 10, 0, tzinfo=timezone(timedelta(hours=2)))
    assert op.to_dict(subject_id="pseudo")["subject"]["id"] == "pseudo"
    assert op.to_dict()["subject"]["id"] == "c-1"


def test_defaults_and_store_cookie_without_subject() -> None:
    op = parse_operation({"operation": "store_cookie", "purpose": "site_statistics", "cookie": {"kind": "strictly_necessary"}}, VOCAB)
    assert op.subject_id is None and op.inline_facts is None and op.data["data_categories"] == []
    assert parse_operation({"operation": "delete", "subject": {"id": "c"}}, VOCAB).inline_facts is None


def test_request_times() -> None:
    body = {"operation": "subject_request", "subject": {"id": "c"},
            "request": {"type": "access", "received_at": "2026-01-31T12:00:00Z", "written": True}}
    op = parse_operation(body, VOCAB)
    assert op.received_at == datetime(2026, 1, 31, 12, 0, tzinfo=UTC) and op.at is None


def with_(path: str, value: Any, body: dict[str, Any] = DISCLOSE) -> dict[str, Any]:
    """A copy of ``body`` with the dotted ``path`` set (or removed when ``value`` is ...)."""
    out: dict[str, Any] = {k: (dict(v) if isinstance(v, dict) else v) for k, v in body.items()}
    *parents, last = path.split(".")
    target = out
    for p in parents:
        target = target[p]
    if value is ...:
        target.pop(last, None)
    else:
        target[last] = value
    return out


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (with_("operation", ...), "operation"),
        (with_("operation", 7), "operation"),
        (with_("subject", ...), "subject"),
        (with_("recipient", ...), "recipient"),
        (with_("subject.id", ...), "subject"),
        (with_("recipient.country", "fin"), "recipient"),
        (with_("data_categories", "email"), "data_categories"),
        (with_("at", "yesterday"), "at"),
        (with_("surprise", 1), "surprise"),
        (with_("subject.relationship", "paused"), "subject"),
        (with_("subject.erasure_requested", "maybe"), "subject"),
        ({"operation": "process", "subject": {"id": "c"}}, "purpose"),
        ({"operation": "collect", "subject": {"id": "c"}}, "source"),
        ({"operation": "subject_request", "subject": {"id": "c"}}, "request"),
        ({"operation": "subject_request", "subject": {"id": "c"}, "request": {"type": "access", "written": "maybe"}}, "request"),
    ],
)
@pytest.mark.parametrize("prefix", ["", "operations[3]."])
def test_shape_errors_name_the_field(body: dict[str, Any], field: str, prefix: str) -> None:
    with pytest.raises(RequestError) as info:
        parse_operation(body, VOCAB, prefix)
    exc = info.value
    assert not isinstance(exc, UnknownVocabularyId)
    assert exc.code == "bad_request"
    assert prefix + field in exc.details["errors"]
    assert prefix + field in exc.message


@pytest.mark.parametrize("body", [[], "x", None, 3])
def test_body_must_be_an_object(body: Any) -> None:
    with pytest.raises(RequestError, match="must be a JSON object"):
        parse_operation(body, VOCAB)


@pytest.mark.parametrize(
    ("path", "value", "field", "kind"),
    [
        ("operation", "sell", "operation", "operation"),
        ("purpose", "fun", "purpose", "purpose"),
        ("data_categories", ["email", "salary"], "data_categories[1]", "data_category"),
        ("recipient.type", "friend", "recipient.type", "recipient_type"),
        ("legal_basis.type", "whim", "legal_basis.type", "legal_basis_type"),
        ("source", "rumour", "source", "source"),
        ("subject.consents", ["disclosure", "spam"], "subject.consents[1]", "consent_purpose"),
        ("subject.objections", ["everything"], "subject.objections[0]", "objection_scope"),
    ],
)
@pytest.mark.parametrize("prefix", ["", "operations[0]."])
def test_unknown_ids_name_field_value_and_known_ids(path: str, value: Any, field: str, kind: str, prefix: str) -> None:
    with pytest.raises(UnknownVocabularyId) as info:
        parse_operation(with_(path, value), VOCAB, prefix)
    exc = info.value
    bad = value[-1] if isinstance(value, list) else value
    assert (exc.field, exc.value, exc.known) == (prefix + field, bad, VOCAB.ids(kind))
    assert exc.code == "unknown_vocabulary_id" and exc.details["known"] == VOCAB.ids(kind)
    assert f"{prefix}{field}: unknown id {bad!r}; known ids: {', '.join(VOCAB.ids(kind))}" == exc.message


def test_unknown_request_type() -> None:
    body = {"operation": "subject_request", "subject": {"id": "c"}, "request": {"type": "complaint"}}
    with pytest.raises(UnknownVocabularyId) as info:
        parse_operation(body, VOCAB)
    assert info.value.field == "request.type" and info.value.known == ["access", "inquiry"]


def test_unknown_operation_wins_over_shape_errors() -> None:
    """An unknown operation is reported as such even when the schema also fails (e.g. no subject)."""
    with pytest.raises(UnknownVocabularyId) as info:
        parse_operation({"operation": "sell"}, VOCAB, "operations[2].")
    assert info.value.field == "operations[2].operation"
