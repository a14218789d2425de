"""The plain path of the decision request schema (``operation._PlainSchema``) answers exactly what
marshmallow's ``OperationSchema`` load and dump answer, or steps aside: drawn bodies, valid and
not, are read both ways and compared (values, types and key order)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from marshmallow import ValidationError, validate

from kti_policy.decide import operation
from kti_policy.decide.operation import OperationSchema, load_operation
from kti_policy.errors import UnknownVocabularyId
from kti_policy.policy.loader import load_policy_set

SCHEMA = OperationSchema()
PLAIN = operation._PLAIN

IDS = st.sampled_from(["disclose", "process", "collect", "subject_request", "store_cookie", "email",
                       "authority", "access", "inquiry", "scc", "consumer", "strictly_necessary", ""])
TIMES = st.sampled_from(["2026-03-02T10:00:00+02:00", "2026-03-02T10:00:00", "2026-03-02", "0001-01-01T00:00:00+05:00",
                         "9999-12-31T23:00:00-05:00", "not a time", "2026-02-30T10:00:00Z", "2026-03-02T10:00:00.123456Z"])
ODD = st.one_of(st.none(), st.booleans(), st.integers(-2, 3), st.floats(allow_nan=False), st.just(""),
                st.just("x" * 300), st.builds(list), st.builds(dict), st.just("FI\n"), st.just(1.0))


def _value(kind: str) -> st.SearchStrategy[Any]:
    return {"id": IDS, "bool": st.booleans(), "time": TIMES, "int": st.integers(-1, 20_000),
            "list": st.lists(IDS, max_size=3), "country": st.sampled_from(["FI", "US", "fi", "FIN", "FI\n"]),
            "text": st.text(max_size=5)}[kind]


def _obj(spec: dict[str, str], required: tuple[str, ...] = ()) -> st.SearchStrategy[dict[str, Any]]:
    optional = [k for k in spec if k not in required]
    keys = st.sets(st.sampled_from(optional), max_size=len(optional))
    return keys.flatmap(lambda ks: st.fixed_dictionaries({k: _value(spec[k]) for k in (*required, *sorted(ks))}))


SUBJECT = _obj({"id": "id", "consents": "list", "objections": "list", "relationship": "id", "erasure_requested": "bool",
                "kind": "id", "relationship_started_at": "time", "erasure_requested_at": "time", "restricted": "bool"},
               ("id",))
NESTED = {
    "subject": SUBJECT,
    "recipient": _obj({"type": "id", "name": "text", "country": "country", "dpa": "bool", "safeguards": "id"},
                      ("type", "country")),
    "legal_basis": _obj({"type": "id", "reference": "text"}, ("type",)),
    "request": _obj({"type": "id", "received_at": "time", "written": "bool", "copy": "int", "extended": "bool",
                     "excessive": "bool"}, ("type",)),
    "cookie": _obj({"kind": "id", "name": "text", "lifetime_days": "int"}, ("kind",)),
}
TOP = {"operation": "id", "purpose": "id", "data_categories": "list", "source": "id", "channel": "id", "at": "time"}
OPERATIONS = st.sampled_from(["disclose", "process", "collect", "subject_request", "store_cookie", "delete"])


@st.composite
def bodies(draw: st.DrawFn) -> dict[str, Any]:
    """Mostly valid bodies (as the schema sees them), some with one part broken."""
    body: dict[str, Any] = draw(_obj(TOP, ("operation",)))
    body["operation"] = draw(OPERATIONS)
    needs = {"process": ["purpose"], "disclose": ["recipient"], "subject_request": ["request"], "collect": ["source"],
             "store_cookie": ["cookie"]}.get(body["operation"], [])
    for key in sorted(NESTED):
        if key in needs or key == "subject" or draw(st.booleans()):
            body[key] = draw(NESTED[key])
    for key in needs:
        body.setdefault(key, draw(_value("id")))
    for _ in range(draw(st.sampled_from([0, 0, 1, 2]))):  # break something
        where = body
        nested = draw(st.sampled_from([None, *NESTED]))
        if nested is not None and isinstance(body.get(nested), dict):
            where = body[nested]
        key = draw(st.sampled_from([*where, "unknown", "copy_number"]))
        if draw(st.booleans()):
            where.pop(key, None)
        else:
            where[key] = draw(ODD)
    return body


def _marshmallow(body: Any) -> Any:
    try:
        return repr(SCHEMA.load(body))
    except ValidationError as exc:
        return exc.normalized_messages()


@settings(max_examples=3000, deadline=None, suppress_health_check=list(HealthCheck))
@given(bodies())
def test_plain_load_and_dump_are_marshmallows(body: dict[str, Any]) -> None:
    assert PLAIN is not None  # the decision request schema is plain enough to mirror
    expected = _marshmallow(body)
    try:
        loaded = PLAIN.load(body)
    except operation._NotPlain:
        loaded = None
    if loaded is not None:  # the plain path only answers for a body marshmallow takes, and alike
        assert repr(loaded) == expected
        assert repr(PLAIN.dump(loaded)) == repr(SCHEMA.dump(loaded))
    try:
        assert repr(load_operation(body)) == expected
    except ValidationError as exc:
        assert exc.normalized_messages() == expected


def test_a_plain_body_takes_the_plain_path() -> None:
    body = {"operation": "disclose", "data_categories": ["email"], "subject": {"id": "c-1", "consents": ["disclosure"]},
            "recipient": {"type": "authority", "country": "FI"}, "request": {"type": "access", "copy": 2},
            "at": "2026-03-02T10:00:00+02:00"}
    assert PLAIN is not None
    loaded = PLAIN.load(body)
    assert repr(loaded) == repr(SCHEMA.load(body)) and loaded["request"] == {"type": "access", "copy_number": 2}
    assert repr(PLAIN.dump(loaded)) == repr(SCHEMA.dump(loaded))


@pytest.mark.parametrize("check", [validate.Length(min=1, max=3), validate.Length(max=2), validate.Length(min=2),
                                   validate.Length(equal=2), validate.Regexp(r"^[A-Z]{2}$"), validate.OneOf(["a", "b"])])
@pytest.mark.parametrize("value", ["", "a", "ab", "abc", "abcd", "FI", "FIN"])
def test_a_validator_as_a_predicate_passes_where_marshmallow_passes(check: Any, value: str) -> None:
    try:
        check(value)
        expected = True
    except ValidationError:
        expected = False
    assert operation._passes((check,))(value) is expected
    assert operation._passes((check, validate.Length(max=2)))(value) is (expected and len(value) <= 2)


@settings(max_examples=500, deadline=None, suppress_health_check=list(HealthCheck))
@given(bodies(), st.randoms(use_true_random=False), st.booleans())
def test_plain_dump_of_data_in_any_order_is_marshmallows(body: dict[str, Any], rnd: Any, extra: bool) -> None:
    """The dump walks the keys present when they come in the schema's order (as a load leaves
    them) and the fields otherwise: both answer what marshmallow's dump answers."""
    assert PLAIN is not None
    try:
        loaded = PLAIN.load(body)
    except operation._NotPlain:
        return

    def shuffled(data: dict[str, Any]) -> dict[str, Any]:
        items = [(k, shuffled(v) if isinstance(v, dict) else v) for k, v in data.items()]
        rnd.shuffle(items)
        return dict(items, **({"not_a_field": 1} if extra else {}))

    for data in (loaded, shuffled(loaded)):
        assert repr(PLAIN.dump(data)) == repr(SCHEMA.dump(data))


def test_plain_dump_writes_a_value_of_another_type_as_marshmallow_does() -> None:
    assert PLAIN is not None
    data = {"operation": 7, "data_categories": ["email", 3, None], "subject": {"id": 12, "erasure_requested": 1}}
    assert repr(PLAIN.dump(data)) == repr(SCHEMA.dump(data))


VOCAB = load_policy_set(Path(__file__).parent.parent / "data" / "clean").vocabulary


def _first_unknown(check: Any, data: dict[str, Any]) -> Any:
    try:
        check(data, VOCAB, "operations[3].")
    except UnknownVocabularyId as exc:
        return (exc.message, exc.details)
    return None


@settings(max_examples=1000, deadline=None, suppress_health_check=list(HealthCheck))
@given(bodies(), st.sampled_from([None, "subject", "recipient", "request"]), st.sampled_from([None, 5, ["x", None]]))
def test_vocabulary_checks_answer_as_the_field_by_field_walk(body: dict[str, Any], where: Any, odd: Any) -> None:
    """``_all_known`` only lets through what the walk lets through: the same first error, or none."""
    try:
        data = load_operation(body)
    except ValidationError:
        return
    if where is not None and odd is not None and isinstance(data.get(where), dict):
        data[where] = {**data[where], "consents" if where == "subject" else "type": odd}
    walked = _first_unknown(operation._raise_first_unknown, data)
    assert _first_unknown(operation._check_vocabulary, data) == walked
    if operation._all_known(data, VOCAB.kinds):
        assert walked is None


def test_a_known_request_takes_the_inline_vocabulary_check() -> None:
    data = load_operation({"operation": "disclose", "data_categories": ["email"], "subject": {"id": "c-1"},
                           "recipient": {"type": "authority", "country": "FI"}})
    assert operation._all_known(data, VOCAB.kinds)
    assert not operation._all_known({**data, "data_categories": ["email", "nope"]}, VOCAB.kinds)
