"""``GET /v1/policies`` and ``POST /v1/policies/reload`` (CONTRACT section 5)."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, current_app, jsonify

from kti_policy.errors import PolicyErrors

from .auth import require_role

bp = Blueprint("policies", __name__)


@bp.get("/v1/policies")
@require_role("query")
def list_policies() -> Any:
    """The loaded policies, their rules, the vocabulary and the policy_version.
    ---
    get:
      summary: The loaded policy set
      responses:
        200:
          description: policies with rule ids, the vocabulary and policy_version
          content:
            application/json:
              schema: PolicySet
    """
    policy_set = current_app.extensions["kti"].policy_set()
    body = policy_set.to_dict()
    body.setdefault("policy_version", policy_set.version)
    body.setdefault("vocabulary", policy_set.vocabulary.to_dict())
    return jsonify(body)


@bp.post("/v1/policies/reload")
@require_role("admin")
def reload_policies() -> Any:
    """Load and check the whole policy folder, then swap; on any error keep the old set (422).
    ---
    post:
      summary: Reload the policy folder
      description: >-
        Checks every file first. On success every worker serves the new policy_version within
        about a second. On any error the old set keeps serving and the answer is 422 with every
        error (file, line, col).
      responses:
        200:
          description: the new set is serving
          content:
            application/json:
              schema: ReloadResult
    """
    state = current_app.extensions["kti"]
    try:
        old, new = state.holder.reload()
    except PolicyErrors:
        state.metrics.reloads.labels(result="invalid").inc()
        raise
    state.metrics.reloads.labels(result="ok").inc()
    return jsonify(
        {
            "policy_version": new.version,
            "previous_version": old.version if old else None,
            "changed": old is None or old.version != new.version,
            "policies": [p.id for p in new.policy_set.policies],
        }
    )
