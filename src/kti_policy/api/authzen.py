"""The OpenID AuthZEN Authorization API 1.0 over the decision service (CONTRACT section 9).

Gateways and products that speak AuthZEN (Cerbos, OPA plugins, API gateways) ask here instead of
``/v1/decisions``. Each evaluation is turned into a CONTRACT 2 request body and then goes exactly the
way a ``/v1/decisions`` request goes: the same schema and vocabulary checks (a 400 naming the field,
in AuthZEN's terms), the same facts read, decider, decision log, metrics and fail-closed deny.

The mapping is generic on purpose, so that fields added to the decision request need no change here:

- ``resource`` ``{"type": "data_subject", "id", "properties"}``: ``id`` is ``subject.id``;
  ``properties.data_categories`` is ``data_categories``; every other property is put into
  ``subject`` as an inline fact, where the subject schema accepts or refuses it.
- ``action`` ``{"name", "properties"}``: ``name`` is ``operation``; a property may be any top-level
  field of the decision request that belongs neither to the resource nor to the context (today
  ``purpose``, ``source``, ``request``, ``channel``, ``cookie``), read from the request schema itself.
- ``context``: ``recipient``, ``legal_basis``, ``at``; any other key is a 400.
- ``subject`` ``{"type", "id"}``: who is asking (a system or an employee). It is not decided on; it
  goes into the decision log as ``caller``, as given, so the log says who asked. The data subject
  (``resource.id``) is pseudonymised in the log like every decision.

``POST /access/v1/evaluations`` takes the spec's ``evaluations`` list: the top-level ``subject``,
``action``, ``resource`` and ``context`` are defaults that an item's own key replaces whole.
``options.evaluations_semantic`` is ``execute_all`` (default), ``deny_on_first_deny`` or
``permit_on_first_permit``; the short-circuit ones stop after the deciding item, and the items after
it are neither decided nor logged. Every item is checked before any is decided: one bad item makes
the whole request a 400 naming ``evaluations[i]`` (as ``/v1/decisions/batch`` names its index), so a
caller never acts on half an answer. Without an ``evaluations`` key the request is a single
evaluation and the answer has the single shape, as the spec asks.

An ``X-Request-ID`` header is echoed on the answer (the spec's HTTPS binding shows it).
"""

from __future__ import annotations

import functools
import re
import time
from collections.abc import Callable, Mapping
from typing import Any

from flask import Blueprint, Response, current_app, jsonify, request
from marshmallow import EXCLUDE, RAISE, Schema, ValidationError, fields, validate

from kti_policy.decide.decision import Decision
from kti_policy.decide.operation import Operation, parse_operation
from kti_policy.errors import RequestError, UnknownVocabularyId

from .auth import require_role
from .decisions import decide_operations, negotiated_language
from .schemas import ObligationSchema, ReasonSchema, read_json_object

bp = Blueprint("authzen", __name__)

EVALUATION_PATH = "/access/v1/evaluation"
EVALUATIONS_PATH = "/access/v1/evaluations"
RESOURCE_TYPE = "data_subject"
SEMANTICS = ("execute_all", "deny_on_first_deny", "permit_on_first_permit")
#: CONTRACT 2 fields that AuthZEN's ``context`` carries (CONTRACT section 9)
CONTEXT_KEYS = ("recipient", "legal_basis", "at")
#: ``resource.properties`` keys that are top-level CONTRACT 2 fields; the others are inline facts
RESOURCE_TOP_KEYS = ("data_categories",)
_TUPLE = ("subject", "action", "resource", "context")
_STOPS: dict[str, Callable[[Decision], bool]] = {
    "deny_on_first_deny": lambda d: not d.allowed,
    "permit_on_first_permit": lambda d: d.allowed,
}


# -- the AuthZEN shapes (validated with these, and documented from them in /openapi.json) --------


class _Strict(Schema):
    class Meta:
        unknown = RAISE


def _name(**kw: Any) -> fields.String:
    return fields.String(validate=validate.Length(min=1, max=256), **kw)


class AuthzenSubjectSchema(_Strict):
    type = _name(required=True, metadata={"description": "kind of caller, e.g. system or user"})
    id = _name(required=True, metadata={"description": "who asks; logged as `caller`, not decided on"})
    properties = fields.Dict(keys=fields.String(), metadata={"description": "accepted, not used"})


class AuthzenResourceSchema(_Strict):
    type = fields.String(required=True, validate=validate.Equal(RESOURCE_TYPE),
                         metadata={"description": "always `data_subject`"})
    id = _name(metadata={"description": "the data subject: the caller's customer id (subject.id)"})
    properties = fields.Dict(
        keys=fields.String(),
        metadata={"description": "`data_categories` and inline facts of the data subject "
                                 "(consents, objections, relationship, ...), as in CONTRACT 2"},
    )


class AuthzenActionSchema(_Strict):
    name = _name(required=True, metadata={"description": "the operation id, e.g. disclose"})
    properties = fields.Dict(
        keys=fields.String(),
        metadata={"description": "purpose, source, request, channel, cookie, as in CONTRACT 2"},
    )


def _tuple_fields(required: bool) -> dict[str, fields.Field]:
    return {
        "subject": fields.Nested(AuthzenSubjectSchema, required=required),
        "resource": fields.Nested(AuthzenResourceSchema, required=required),
        "action": fields.Nested(AuthzenActionSchema, required=required),
        "context": fields.Dict(
            keys=fields.String(),
            metadata={"description": "recipient, legal_basis, at, as in CONTRACT 2"},
        ),
    }


AuthzenEvaluationRequestSchema = _Strict.from_dict(
    _tuple_fields(required=True), name="AuthzenEvaluationRequestSchema"
)
AuthzenEvaluationItemSchema = _Strict.from_dict(
    _tuple_fields(required=False), name="AuthzenEvaluationItemSchema"
)


class AuthzenOptionsSchema(Schema):
    class Meta:
        unknown = EXCLUDE  # the spec makes options an open set of caller-supplied metadata

    evaluations_semantic = fields.String(validate=validate.OneOf(SEMANTICS),
                                         load_default="execute_all")


class AuthzenEvaluationsRequestSchema(_Strict):
    subject = fields.Nested(AuthzenSubjectSchema, metadata={"description": "default for each item"})
    resource = fields.Nested(AuthzenResourceSchema, metadata={"description": "default for each item"})
    action = fields.Nested(AuthzenActionSchema, metadata={"description": "default for each item"})
    context = fields.Dict(keys=fields.String(), metadata={"description": "default for each item"})
    evaluations = fields.List(fields.Dict(), metadata={
        "description": "AuthzenEvaluationItem objects (subject, resource, action, context; each "
                       "replaces the default of the same key)"})
    options = fields.Nested(AuthzenOptionsSchema)


class AuthzenDecisionContextSchema(Schema):
    decision_id = fields.String(required=True)
    reasons = fields.List(fields.Nested(ReasonSchema), required=True)
    obligations = fields.List(fields.Nested(ObligationSchema), required=True)
    policy_version = fields.String(required=True)


class AuthzenEvaluationResponseSchema(Schema):
    decision = fields.Boolean(required=True, metadata={"description": "true only for allow"})
    context = fields.Nested(AuthzenDecisionContextSchema, required=True)


class AuthzenEvaluationsResponseSchema(Schema):
    evaluations = fields.List(fields.Nested(AuthzenEvaluationResponseSchema), metadata={
        "description": "in request order; shorter than the request after a short-circuit"})
    decision = fields.Boolean(metadata={"description": "only without `evaluations` in the request"})
    context = fields.Nested(AuthzenDecisionContextSchema,
                            metadata={"description": "only without `evaluations` in the request"})


class AuthzenConfigurationSchema(Schema):
    policy_decision_point = fields.String(required=True)
    access_evaluation_endpoint = fields.String(required=True)
    access_evaluations_endpoint = fields.String(required=True)


#: read by ``kti_policy.api.openapi`` for the components of /openapi.json
OPENAPI_SCHEMAS: dict[str, Any] = {
    "AuthzenEvaluationRequest": AuthzenEvaluationRequestSchema,
    "AuthzenEvaluationItem": AuthzenEvaluationItemSchema,
    "AuthzenEvaluationsRequest": AuthzenEvaluationsRequestSchema,
    "AuthzenEvaluationResponse": AuthzenEvaluationResponseSchema,
    "AuthzenEvaluationsResponse": AuthzenEvaluationsResponseSchema,
    "AuthzenConfiguration": AuthzenConfigurationSchema,
}

_EVALUATION = AuthzenEvaluationRequestSchema()
_EVALUATIONS = AuthzenEvaluationsRequestSchema()


# -- mapping onto CONTRACT 2 --------------------------------------------------------------------


@functools.cache
def action_keys() -> frozenset[str]:
    """The decision request's top-level fields that ``action.properties`` may carry."""
    from kti_policy.decide.operation import OperationSchema

    taken = {"operation", "subject", *RESOURCE_TOP_KEYS, *CONTEXT_KEYS}
    return frozenset(OperationSchema().fields) - taken


_PATH_HEAD = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*)(.*)$", re.S)


def authzen_field(contract_path: str) -> str:
    """Where a CONTRACT 2 field sits in an AuthZEN request (``subject.consents[0]`` ->
    ``resource.properties.consents[0]``), so that an error names what the caller sent."""
    m = _PATH_HEAD.match(contract_path)
    if m is None:
        return contract_path
    name, tail = m.groups()
    if name == "operation":
        return "action.name" + tail
    if name == "subject":
        if tail == "" or tail == ".id" or tail.startswith(".id."):
            return "resource" + tail
        return "resource.properties" + tail
    if name in RESOURCE_TOP_KEYS:
        return f"resource.properties.{name}{tail}"
    if name in CONTEXT_KEYS:
        return f"context.{name}{tail}"
    if name == "_schema":
        return contract_path
    return f"action.properties.{name}{tail}"


def _flatten(errors: Any, prefix: str = "") -> dict[str, Any]:
    """marshmallow's nested messages as ``{"a.b[0]": [...]}``."""
    if not isinstance(errors, Mapping):
        return {prefix or "_schema": errors}
    out: dict[str, Any] = {}
    for key, value in errors.items():
        path = f"{prefix}[{key}]" if isinstance(key, int) else (f"{prefix}.{key}" if prefix else str(key))
        out.update(_flatten(value, path))
    return out


def _bad(errors: Mapping[str, Any], where: str, index: int | None) -> RequestError:
    named = {where + k: v for k, v in errors.items()}
    text = "; ".join(
        f"{k}: {' '.join(map(str, v)) if isinstance(v, list) else v}" for k, v in named.items()
    )
    details: dict[str, Any] = {"errors": named}
    if index is not None:
        details["index"] = index
    return RequestError(f"invalid AuthZEN request: {text}", details)


def _load(schema: Schema, body: Any, where: str, index: int | None) -> dict[str, Any]:
    try:
        return dict(schema.load(body))
    except ValidationError as exc:
        raise _bad(_flatten(exc.normalized_messages()), where, index) from None


def contract_body(evaluation: Mapping[str, Any], where: str = "", index: int | None = None) -> dict[str, Any]:
    """The CONTRACT 2 request body of one validated AuthZEN evaluation (see the module docstring)."""
    resource = evaluation["resource"]
    action = evaluation["action"]
    body: dict[str, Any] = {"operation": action["name"]}
    subject: dict[str, Any] = {}
    if "id" in resource:
        subject["id"] = resource["id"]
    problems: dict[str, list[str]] = {}
    for key, value in (resource.get("properties") or {}).items():
        if key == "id":
            problems["resource.properties.id"] = ["give the data subject's id as resource.id"]
        elif key in RESOURCE_TOP_KEYS:
            body[key] = value
        else:
            subject[key] = value
    if subject:
        body["subject"] = subject
    allowed_in_action = action_keys()
    for key, value in (action.get("properties") or {}).items():
        if key in allowed_in_action:
            body[key] = value
        else:
            problems[f"action.properties.{key}"] = [_misplaced(key, allowed_in_action)]
    for key, value in (evaluation.get("context") or {}).items():
        if key in CONTEXT_KEYS:
            body[key] = value
        else:
            problems[f"context.{key}"] = [_misplaced(key, frozenset(CONTEXT_KEYS))]
    if problems:
        raise _bad(problems, where, index)
    return body


def _misplaced(key: str, allowed: frozenset[str]) -> str:
    if key in CONTEXT_KEYS:
        return f"{key} belongs in context"
    if key in action_keys():
        return f"{key} belongs in action.properties"
    if key in RESOURCE_TOP_KEYS:
        return f"{key} belongs in resource.properties"
    return f"unknown key; known here: {', '.join(sorted(allowed))}"


def to_operation(
    evaluation: Mapping[str, Any], vocabulary: Any, where: str = "", index: int | None = None
) -> Operation:
    """Map and validate one evaluation with the decision request's own schema and vocabulary."""
    body = contract_body(evaluation, where, index)
    try:
        return parse_operation(body, vocabulary)
    except UnknownVocabularyId as exc:
        err = UnknownVocabularyId(where + authzen_field(exc.field), exc.value, exc.known)
        if index is not None:
            err.details["index"] = index
        raise err from None
    except RequestError as exc:
        errors = _flatten(exc.details.get("errors") or {"_schema": [exc.message]})
        raise _bad({authzen_field(k): v for k, v in errors.items()}, where, index) from None


def _caller(evaluation: Mapping[str, Any]) -> dict[str, Any]:
    subject = evaluation["subject"]
    return {"caller": {"type": subject["type"], "id": subject["id"]}}


def _answer(decision: Decision, lang: str) -> dict[str, Any]:
    full = decision.to_dict(lang)
    return {
        "decision": decision.allowed,
        "context": {
            "decision_id": full["decision_id"],
            "reasons": full["reasons"],
            "obligations": full["obligations"],
            "policy_version": full["policy_version"],
        },
    }


def _state() -> Any:
    return current_app.extensions["kti"]


def _evaluate(evaluations: list[dict[str, Any]], semantic: str, kind: str) -> list[Decision]:
    started = time.perf_counter()
    vocabulary = _state().loaded().policy_set.vocabulary
    many = kind == "batch"
    ops = [
        to_operation(e, vocabulary, f"evaluations[{i}]." if many else "", i if many else None)
        for i, e in enumerate(evaluations)
    ]
    decisions = decide_operations(
        ops, _STOPS.get(semantic), [_caller(e) for e in evaluations]
    )
    _state().observe_decision_latency(kind, time.perf_counter() - started)
    return decisions


# -- endpoints ----------------------------------------------------------------------------------


@bp.after_request
def _echo_request_id(resp: Response) -> Response:
    request_id = request.headers.get("X-Request-ID")
    if request_id and len(request_id) <= 200:
        resp.headers["X-Request-ID"] = request_id
    return resp


@bp.post(EVALUATION_PATH)
@require_role("query")
def evaluation() -> Any:
    """AuthZEN access evaluation: one decision.
    ---
    post:
      summary: AuthZEN access evaluation (one decision)
      description: >-
        OpenID AuthZEN Authorization API 1.0. The resource is the data subject; the action is the
        operation; see CONTRACT section 9 for the mapping. `decision` is true only for allow;
        `context` has the decision_id, reasons, obligations and policy_version.
      parameters:
        - {in: header, name: Accept-Language, schema: {type: string, example: fi}}
        - {in: header, name: X-Request-ID, schema: {type: string}}
      requestBody:
        required: true
        content:
          application/json:
            schema: AuthzenEvaluationRequest
      responses:
        200:
          description: the decision
          content:
            application/json:
              schema: AuthzenEvaluationResponse
    """
    body = read_json_object()
    lang = negotiated_language()
    one = _load(_EVALUATION, body, "", None)
    return jsonify(_answer(_evaluate([one], "execute_all", "single")[0], lang))


@bp.post(EVALUATIONS_PATH)
@require_role("query")
def evaluations() -> Any:
    """AuthZEN access evaluations: several decisions, with the spec's defaults and semantics.
    ---
    post:
      summary: AuthZEN access evaluations (several decisions)
      description: >-
        The top-level subject, resource, action and context are defaults for each item of
        `evaluations`. `options.evaluations_semantic`: execute_all (default), deny_on_first_deny or
        permit_on_first_permit (the answer stops after the deciding item). One bad item makes the
        whole request a 400 naming `evaluations[i]`. Without `evaluations` the request is one
        evaluation and the answer has the single shape.
      parameters:
        - {in: header, name: Accept-Language, schema: {type: string, example: fi}}
        - {in: header, name: X-Request-ID, schema: {type: string}}
      requestBody:
        required: true
        content:
          application/json:
            schema: AuthzenEvaluationsRequest
      responses:
        200:
          description: the decisions in request order (or one decision, without `evaluations`)
          content:
            application/json:
              schema: AuthzenEvaluationsResponse
    """
    body = read_json_object()
    lang = negotiated_language()
    envelope = _load(_EVALUATIONS, body, "", None)
    semantic = (envelope.get("options") or {}).get("evaluations_semantic", "execute_all")
    defaults = {k: body[k] for k in _TUPLE if k in body}
    if "evaluations" not in body:
        one = _load(_EVALUATION, defaults, "", None)
        return jsonify(_answer(_evaluate([one], semantic, "single")[0], lang))
    items = body["evaluations"]
    max_batch = int(current_app.config.get("KTI_MAX_BATCH", 1000))
    if len(items) > max_batch:
        raise RequestError(
            f"evaluations: at most {max_batch} per request",
            {"errors": {"evaluations": ["too many"]}},
        )
    merged = []
    for i, item in enumerate(items):
        where = f"evaluations[{i}]."
        own = _load(AuthzenEvaluationItemSchema(), item, where, i)
        merged.append(_load(_EVALUATION, {**defaults, **{k: item[k] for k in own}}, where, i))
    decisions = _evaluate(merged, semantic, "batch")
    return jsonify({"evaluations": [_answer(d, lang) for d in decisions]})


@bp.get("/.well-known/authzen-configuration")
def configuration() -> Any:
    """AuthZEN policy decision point metadata (no key needed, like /openapi.json).
    ---
    get:
      summary: AuthZEN policy decision point metadata
      description: >-
        URLs are built from `KTI_PUBLIC_URL` when it is set (behind a proxy), else from the
        request's own host.
      security: []
      responses:
        200:
          description: the metadata
          content:
            application/json:
              schema: AuthzenConfiguration
    """
    base = str(current_app.config.get("KTI_PUBLIC_URL") or request.url_root).rstrip("/")
    return jsonify(
        {
            "policy_decision_point": base,
            "access_evaluation_endpoint": base + EVALUATION_PATH,
            "access_evaluations_endpoint": base + EVALUATIONS_PATH,
        }
    )
