"""OpenAPI 3 of every endpoint, generated (apispec) from the app's routes and marshmallow schemas.

Paths come from the Flask URL map, so a route cannot be missing from the document. Each view may
describe itself in its docstring after a ``---`` line (apispec's YAML convention), naming schemas by
their component name (``Decision``, ``Operation``, ...); views that do not get a summary from their
first docstring line. Security, the error responses and path parameters are added from what the
service knows: the role a view requires (``require_role``), whether it takes a JSON body, and the
rule's converters.
"""

from __future__ import annotations

import copy
import logging
import re
import sys
from typing import Any

from apispec import APISpec
from apispec.ext.marshmallow import MarshmallowPlugin
from apispec.yaml_utils import load_operations_from_docstring
from flask import Flask

from kti_policy import __version__

from . import schemas as s

log = logging.getLogger(__name__)

_METHODS = ("get", "post", "put", "patch", "delete")
_CONVERTER_TYPES = {"int": {"type": "integer"}, "float": {"type": "number"}}
_RULE_ARG = re.compile(r"<(?:(?P<conv>[a-zA-Z_][a-zA-Z0-9_]*)(?:\([^)]*\))?:)?(?P<name>[a-zA-Z_][a-zA-Z0-9_]*)>")

_ERRORS = {
    "400": "bad input: `details.errors` names each bad field (and `details.index` in a batch); "
    "an unknown vocabulary id names `field`, `value` and `known`",
    "401": "no valid API key",
    "403": "the API key lacks the role",
    "404": "no such resource",
    "405": "method not allowed",
    "413": "body too large",
    "415": "body is not JSON",
    "422": "invalid policies: every error with file, line and col; the old set keeps serving",
    "500": "internal error (no details leak)",
}


def component_schemas() -> dict[str, Any]:
    return {
        "Operation": s.operation_schema(),
        "BatchRequest": s.BatchRequestSchema,
        "Decision": s.DecisionSchema,
        "BatchResponse": s.BatchResponseSchema,
        "Error": s.ErrorSchema,
        "PolicyError": s.PolicyErrorSchema,
        "PolicySet": s.PolicySetSchema,
        "ReloadResult": s.ReloadResultSchema,
        "Health": s.HealthSchema,
        "Ready": s.ReadySchema,
        "Event": s.EventSchema,
        "EventBatchRequest": s.EventBatchRequestSchema,
        "EventRecord": s.EventRecordSchema,
        "EventBatchResult": s.EventBatchResultSchema,
        "SubjectView": s.SubjectViewSchema,
        "Delivery": s.DeliverySchema,
        "DeliveryList": s.DeliveryListSchema,
    }


def blueprint_schemas(app: Flask) -> dict[str, Any]:
    """Schemas a blueprint's module publishes as ``OPENAPI_SCHEMAS`` (name -> marshmallow schema),
    so that a new API module documents its own shapes without a line here."""
    out: dict[str, Any] = {}
    for blueprint in app.blueprints.values():
        module = sys.modules.get(blueprint.import_name)
        out.update(getattr(module, "OPENAPI_SCHEMAS", None) or {})
    return out


def _resolve_names(node: Any, names: dict[str, Any]) -> Any:
    """Replace ``schema: <component name>`` strings by the schema classes apispec resolves."""
    if isinstance(node, dict):
        out = {}
        for k, v in node.items():
            if k == "schema" and isinstance(v, str) and v in names:
                out[k] = names[v]
            else:
                out[k] = _resolve_names(v, names)
        return out
    if isinstance(node, list):
        return [_resolve_names(v, names) for v in node]
    return node


def _error_response() -> dict[str, Any]:
    return {"content": {"application/json": {"schema": "Error"}}}


def build_spec(app: Flask) -> dict[str, Any]:
    """The OpenAPI document of ``app`` as a dict."""
    spec = APISpec(
        title="kti-policy decision service",
        version=__version__,
        openapi_version="3.0.3",
        plugins=[MarshmallowPlugin()],
        info={
            "description": "Policy decisions for KTI Laskutus Oy's personal-data register. "
            "Every error is JSON {error, message, details}."
        },
    )
    names = {**component_schemas(), **blueprint_schemas(app)}
    for name, schema in names.items():
        spec.components.schema(name, schema=schema)
    spec.components.security_scheme("bearerAuth", {"type": "http", "scheme": "bearer"})
    spec.components.security_scheme("apiKey", {"type": "apiKey", "in": "header", "name": "X-API-Key"})

    by_path: dict[str, dict[str, Any]] = {}
    params_by_path: dict[str, list[dict[str, Any]]] = {}
    for rule in sorted(app.url_map.iter_rules(), key=lambda r: r.rule):
        if rule.endpoint == "static":
            continue
        view = app.view_functions.get(rule.endpoint)
        if view is None:
            continue
        path = _RULE_ARG.sub(lambda m: "{" + m.group("name") + "}", rule.rule)
        params_by_path[path] = [
            {
                "in": "path",
                "name": m.group("name"),
                "required": True,
                "schema": _CONVERTER_TYPES.get(m.group("conv") or "", {"type": "string"}),
            }
            for m in _RULE_ARG.finditer(rule.rule)
        ]
        try:
            documented = load_operations_from_docstring(view.__doc__ or "")
        except Exception:
            log.warning("openapi: the docstring YAML of %s does not parse", rule.endpoint)
            documented = {}
        # a view without a docstring still gets words, not "events.post_event"
        fallback = rule.endpoint.rpartition(".")[2].replace("_", " ").capitalize()
        summary = (view.__doc__ or fallback).strip().splitlines()[0].strip()
        role = getattr(view, "required_role", None)
        for method in sorted((rule.methods or set()) - {"HEAD", "OPTIONS"}):
            m = method.lower()
            if m not in _METHODS:
                continue
            op = copy.deepcopy(documented.get(m) or {})
            op.setdefault("summary", summary)
            op.setdefault("operationId", f"{rule.endpoint.replace('.', '_')}_{m}")
            op.setdefault("tags", [rule.endpoint.split(".")[0]])
            responses = op.setdefault("responses", {"200": {"description": "OK"}})
            responses = {str(k): v for k, v in responses.items()}
            op["responses"] = responses
            if role:
                op.setdefault("security", [{"bearerAuth": []}, {"apiKey": []}])
                op["description"] = (op.get("description", "") + f"\n\nRequires the role `{role}`"
                                     " (admin implies every role).").strip()
                for code in ("401", "403"):
                    responses.setdefault(code, {"description": _ERRORS[code], **_error_response()})
            else:
                op.setdefault("security", [])
            if m in ("post", "put", "patch"):
                codes = ("400", "413", "415") if "requestBody" in op else ("400",)
                for code in codes:
                    responses.setdefault(code, {"description": _ERRORS[code], **_error_response()})
            if rule.endpoint.endswith("reload_policies"):
                responses.setdefault("422", {"description": _ERRORS["422"], **_error_response()})
            if params_by_path[path]:
                responses.setdefault("404", {"description": _ERRORS["404"], **_error_response()})
            responses.setdefault("default", {"description": _ERRORS["500"], **_error_response()})
            by_path.setdefault(path, {})[m] = _resolve_names(op, names)

    for path, operations in by_path.items():
        try:
            spec.path(path=path, operations=operations, parameters=params_by_path[path] or None)
        except Exception:
            log.exception("openapi: cannot document %s; listing it without schemas", path)
            spec.path(
                path=path,
                operations={
                    m: {"summary": op.get("summary", ""), "responses": {"default": {"description": "see docs"}}}
                    for m, op in operations.items()
                },
                parameters=params_by_path[path] or None,
            )
    return spec.to_dict()
