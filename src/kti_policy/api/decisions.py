"""``POST /v1/decisions`` and ``POST /v1/decisions/batch`` (CONTRACT section 2).

Parse (the core's schema and vocabulary checks: a client error is a 400, never a deny), look up the
subject's recorded facts, decide, log, answer. Anything that fails after the request was accepted
(the facts store, evaluation) answers *deny* with an ``eval_error`` reason: fail closed, never an
allow and never a 500 for a decision.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from flask import Blueprint, current_app, jsonify

from kti_policy.decide.decision import EVAL_ERROR, Decision, Reason, new_decision_id
from kti_policy.decide.operation import Operation, parse_operation
from kti_policy.errors import RequestError
from kti_policy.facts.fold import SubjectFacts
from kti_policy.policy.model import Text

from .auth import require_role
from .policy_holder import Loaded
from .schemas import BatchRequestSchema, current_request, load_or_400, read_json_object

log = logging.getLogger(__name__)

bp = Blueprint("decisions", __name__)

LANGS = ("en", "fi")
_BATCH_SCHEMA = BatchRequestSchema()
_FACTS_UNAVAILABLE = Text(
    fi="Rekisteröidyn tietoja ei voitu hakea; toimenpide on kielletty varmuuden vuoksi.",
    en="The subject's recorded facts could not be read; the operation is denied to be safe.",
)


_NO_FACTS = SubjectFacts()


def negotiated_language() -> str:
    """``fi`` or ``en`` from ``Accept-Language`` (``fi-FI`` counts as ``fi``); default ``en``."""
    req = current_request()
    if not req.environ.get("HTTP_ACCEPT_LANGUAGE"):  # the WSGI name: no Headers object built
        return "en"
    return req.accept_languages.best_match(LANGS, default="en") or "en"


def _state() -> Any:
    return current_app._get_current_object().extensions["kti"]  # type: ignore[attr-defined]  # one look-up


def _facts_key(op: Operation, now: datetime) -> Any:
    """What facts an operation needs: its subject's now, or as they stood at an ``at`` in the past."""
    if op.subject_id is None:
        return None
    return (op.subject_id, op.at) if op.at is not None and op.at < now else op.subject_id


def _facts_by_subject(
    state: Any, keys: list[Any], pseudonyms: dict[str, str]
) -> dict[Any, SubjectFacts] | None:
    """Recorded facts of every subject the request names, read at once; None when the store failed.

    ``keys`` (``_facts_key`` of each operation) are subject ids (facts now: one indexed read) or
    (subject id, at) for as-of decisions (CONTRACT 2: events with ``occurred_at`` <= ``at`` only).
    Fills ``pseudonyms`` with the subjects' keys, computed once for the read and the log."""
    current = [k for k in keys if isinstance(k, str)]
    past = [k for k in keys if isinstance(k, tuple)]
    if not current and not past:
        return {}
    out: dict[Any, SubjectFacts] = {}
    try:
        for sid in current:
            if sid not in pseudonyms:
                pseudonyms[sid] = state.subject_key(sid)
        if current:
            out.update(state.store.facts_for_many(current, pseudonyms=pseudonyms))
        if past:
            out.update(state.store.facts_at(past))
    except Exception:
        log.exception("reading subject facts failed; answering deny")
        return None
    return out


def _fail_closed(op: Operation, version: str, fault: str, now: datetime) -> Decision:
    return Decision(
        new_decision_id(),
        False,
        (Reason(EVAL_ERROR, "forbid", _FACTS_UNAVAILABLE, ""),),
        (),
        version,
        now,
        op,
        _NO_FACTS,
        error=fault,
    )


def decide_operations(
    ops: list[Operation],
    stop: Callable[[Decision], bool] | None = None,
    log_extra: list[dict[str, Any]] | None = None,
    loaded: Loaded | None = None,
) -> list[Decision]:
    """Decide ``ops`` in order with one policy set, one facts read and one instant (the facts
    are read as of it and every decision is evaluated at it); count and log each.

    ``stop`` ends the run after the first decision it is true for (AuthZEN's short-circuit
    semantics): the operations after it are neither decided nor logged. ``log_extra[i]`` is added
    to the decision-log line of ``ops[i]``. ``loaded``: the policy set the operations were parsed
    with (default: the current one).
    """
    state = _state()
    loaded = loaded or state.loaded()  # one policy set for the whole request, even across a reload
    decider = loaded.decider
    now = datetime.now(UTC)
    keys = [_facts_key(op, now) for op in ops]
    pseudonyms: dict[str, str] = {}
    known = _facts_by_subject(state, keys, pseudonyms)
    out: list[Decision] = []
    for op, key in zip(ops, keys, strict=True):
        facts = _NO_FACTS if key is None else (known or {}).get(key)
        if facts is None:
            out.append(_fail_closed(op, loaded.version, "facts_unavailable", now))
            continue
        try:
            decision = decider.decide(op, facts, now)
        except Exception as exc:  # decide() fails closed itself; this is the belt to its braces
            log.exception("decide raised; answering deny")
            decision = _fail_closed(op, loaded.version, f"{type(exc).__name__}", now)
        out.append(decision)
        if stop is not None and stop(decision):
            break
    state.record_decisions(out, log_extra, pseudonyms)
    return out


def _parse_one(body: Any, vocabulary: Any, index: int | None = None) -> Operation:
    if index is None:
        return parse_operation(body, vocabulary)
    prefix = f"operations[{index}]."
    try:
        return parse_operation(body, vocabulary, field_prefix=prefix)
    except RequestError as err:
        err.details = {"index": index, **err.details}
        if f"operations[{index}]" not in err.message:
            err.message = f"operations[{index}]: {err.message}"
            err.args = (err.message,)
        raise


@bp.post("/v1/decisions")
@require_role("query")
def decide_one() -> Any:
    """Decide one operation.
    ---
    post:
      summary: Decide one operation
      description: Messages follow Accept-Language (fi or en, default en).
      parameters:
        - {in: header, name: Accept-Language, schema: {type: string, example: fi}}
      requestBody:
        required: true
        content:
          application/json:
            schema: Operation
      responses:
        200:
          description: the decision
          content:
            application/json:
              schema: Decision
    """
    started = time.perf_counter()
    state = _state()
    body = read_json_object()
    lang = negotiated_language()
    loaded = state.loaded()
    op = _parse_one(body, loaded.policy_set.vocabulary)
    decision = decide_operations([op], loaded=loaded)[0]
    state.observe_decision_latency("single", time.perf_counter() - started)
    return jsonify(decision.to_dict(lang))


@bp.post("/v1/decisions/batch")
@require_role("query")
def decide_batch() -> Any:
    """Decide up to 1000 operations; one bad item makes the whole batch a 400 naming its index.
    ---
    post:
      summary: Decide several operations at once
      description: >-
        Answers in the same order. One bad item makes the whole batch a 400 whose details name
        its index; nothing is decided or logged then.
      parameters:
        - {in: header, name: Accept-Language, schema: {type: string, example: fi}}
      requestBody:
        required: true
        content:
          application/json:
            schema: BatchRequest
      responses:
        200:
          description: the decisions, in request order
          content:
            application/json:
              schema: BatchResponse
    """
    started = time.perf_counter()
    body = read_json_object()
    lang = negotiated_language()
    envelope = load_or_400(_BATCH_SCHEMA, body, "batch")
    max_batch = int(current_app.config.get("KTI_MAX_BATCH", 1000))
    items = envelope["operations"]
    if len(items) > max_batch:
        raise RequestError(
            f"operations: at most {max_batch} per batch", {"errors": {"operations": ["too many"]}}
        )
    state = _state()
    loaded = state.loaded()
    ops = [_parse_one(item, loaded.policy_set.vocabulary, i) for i, item in enumerate(items)]
    decisions = decide_operations(ops, loaded=loaded)
    state.observe_decision_latency("batch", time.perf_counter() - started)
    return jsonify({"decisions": [d.to_dict(lang) for d in decisions]})
