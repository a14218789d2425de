"""The policy playground: the page at ``/ui`` and the JSON endpoints behind it.

Compliance staff try operations against the loaded set, read each rule in plain words with the
policy tests that cover it, and check an edited copy of a policy file before anyone reloads it.
An edited set is built with ``load_policy_set(dir, overrides=...)`` and lives only for one request:
the loaded set, the folder on disk and the durable-rules host are never touched (edited sets are
decided by the reference evaluator, ``Decider(use_engine=False)``, because every new ruleset
registered in durable-rules would stay in the process for good).

Endpoints (role ``query``, like decisions; the page and its two assets need no key, they hold no
data):

- ``GET /v1/playground/policies``: the loaded rules in plain words (``Accept-Language``), each with
  the policy test cases that cover it, the vocabulary, and the texts of the files on disk.
- ``GET /v1/playground/coverage``: rule id -> the shipped test cases whose reasons name it.
- ``POST /v1/playground/evaluate``: ``{files, operation, facts}`` -> the edited set's decision next
  to the loaded set's, with which conditions held; 422 with every check error (file, line, col).
- ``POST /v1/playground/test``: ``{files}`` -> the shipped policy tests run against the edited set,
  each case marked with whether it passed against the loaded set.
"""

from __future__ import annotations

import os
import re
import threading
import time
from collections import OrderedDict
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC
from pathlib import Path
from typing import Any

import yaml
from flask import Blueprint, Response, current_app, jsonify, render_template, send_from_directory
from marshmallow import RAISE, Schema, ValidationError, fields, validate, validates_schema
from werkzeug.exceptions import NotFound as HttpNotFound

from kti_policy import __version__
from kti_policy.decide.decision import Decider, Decision, build_context
from kti_policy.decide.operation import MAX_LIST, id_field, id_list, parse_operation, strict_bool
from kti_policy.decide.timerange import BoundedAwareDateTime
from kti_policy.errors import PolicyError, PolicyErrors, Position, RequestError, UnknownVocabularyId
from kti_policy.facts.fold import SubjectFacts
from kti_policy.policy.conditions import describe, explain_rule
from kti_policy.policy.loader import VOCABULARY_FILE, load_policy_set, policy_files, version_of
from kti_policy.policy.model import PolicySet, Rule, Vocabulary
from kti_policy.verify.policytest import CaseResult, TestRun, run_tests, test_files

from .auth import current_keys, require_role
from .decisions import negotiated_language
from .schemas import load_or_400, operation_schema, read_json_object

_PACKAGE = Path(__file__).resolve().parent.parent
STATIC_DIR = _PACKAGE / "static"
ASSETS = ("playground.css", "playground.js", "obligations.js")

bp = Blueprint("ui", __name__, template_folder=str(_PACKAGE / "templates"))

#: limits on what one playground request may ask the server to parse and check
MAX_FILES = 64
MAX_FILE_CHARS = 256 * 1024
MAX_TOTAL_CHARS = 1024 * 1024
#: YAML anchors and aliases are expanded by the loader; a few lines can expand to billions of
#: nodes ("billion laughs"), so a pasted file is refused past these
MAX_YAML_NODES = 100_000
MAX_YAML_DEPTH = 64
#: the work one call may cost (issue 13: 64 pasted files of 16 KB took 16 s of CPU on one query
#: key). Parsing and checking cost about 10 us of CPU per character and running the tests one
#: evaluation per rule and case, so these bound a call to a few seconds; a call over them is a 413
#: ``too_costly`` before any work. The shipped pack is ~50 KB, 27 rules and ~60 cases.
BUDGET_CHARS = 256 * 1024
BUDGET_RULE_CASES = 50_000
#: the slowest a call may be (checked between its steps): past it the edited set's tests are not run
BUDGET_SECONDS = 5.0
#: calls doing that work at once in one process (the others wait up to BUSY_WAIT_SECONDS, then 503)
PLAYGROUND_SLOTS = 2
BUSY_WAIT_SECONDS = 5.0
_slots = threading.BoundedSemaphore(PLAYGROUND_SLOTS)
FILE_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}\.ya?ml$")

_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; form-action 'none'; base-uri 'none'; frame-ancestors 'none'"
)


# --- request schemas -------------------------------------------------------------------------


class _Files(fields.Dict):
    """``{file name: text}`` overriding files of the policy folder ("" drops a file)."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(
            keys=fields.String(
                validate=validate.Regexp(
                    FILE_NAME_RE,
                    error="a file name in the policy folder, like disclosure.yaml (no folders)",
                )
            ),
            values=fields.String(validate=validate.Length(max=MAX_FILE_CHARS)),
            validate=_at_most_files,
            load_default=dict,
            metadata={
                "maxProperties": MAX_FILES,
                "description": f"file name -> YAML text used instead of that file of the loaded "
                f"folder (\"\" leaves the file out); at most {MAX_FILES} files, "
                f"{MAX_FILE_CHARS} characters each, {MAX_TOTAL_CHARS} in all"
            },
            **kwargs,
        )


def _at_most_files(files: Mapping[str, str]) -> None:
    # a function, not validate.Length: OpenAPI would document that as maxLength of an object
    if len(files) > MAX_FILES:
        raise ValidationError(f"at most {MAX_FILES} files")


def _check_total(files: Mapping[str, str]) -> None:
    if sum(len(t) for t in files.values()) > MAX_TOTAL_CHARS:
        raise ValidationError(
            f"at most {MAX_TOTAL_CHARS} characters in all", field_name="files"
        )


class _RawOperation(fields.Nested):
    """A decision request, kept raw: the core checks it against the *edited* vocabulary
    (``parse_operation``), so the envelope only checks that it is an object."""

    def _deserialize(self, value: Any, attr: Any, data: Any, partial: Any = None, **kwargs: Any) -> Any:
        if not isinstance(value, dict):
            raise self.make_error("type", input=value, type=type(value).__name__)
        return value


class PlaygroundFactsSchema(Schema):
    """Recorded facts of the imagined subject, as if folded from events."""

    class Meta:
        unknown = RAISE

    consents = id_list()
    objections = id_list()
    withdrawn_consents = id_list()
    relationship = id_field(allow_none=True)
    erasure_requested = strict_bool()
    kind = id_field(allow_none=True)
    restricted = strict_bool()
    relationship_started_at = fields.AwareDateTime(default_timezone=UTC, allow_none=True)
    relationship_ended_at = fields.AwareDateTime(default_timezone=UTC, allow_none=True)
    erasure_requested_at = fields.AwareDateTime(default_timezone=UTC, allow_none=True)
    access_requests = fields.List(
        BoundedAwareDateTime(default_timezone=UTC),
        validate=validate.Length(max=MAX_LIST),
        metadata={"description": "received_at of earlier access requests (ISO 8601)"},
    )


class PlaygroundTestRequestSchema(Schema):
    class Meta:
        unknown = RAISE

    files = _Files()

    @validates_schema
    def _total(self, data: dict[str, Any], **_: Any) -> None:
        _check_total(data.get("files") or {})


class PlaygroundEvaluateRequestSchema(PlaygroundTestRequestSchema):
    operation = _RawOperation(
        lambda: operation_schema()(),
        required=True,
        metadata={"description": "a decision request, as POST /v1/decisions takes it"},
    )
    facts = fields.Nested(PlaygroundFactsSchema, load_default=dict)


class PlaygroundExplainedSchema(Schema):
    rule = fields.String(required=True)
    effect = fields.String(required=True)
    matched = fields.Boolean(required=True)
    when = fields.Dict(metadata={"description": "{text, held, parts}: which conditions held"})
    unless = fields.Dict()


class PlaygroundSideSchema(Schema):
    policy_version = fields.String(required=True)
    decision = fields.Nested("DecisionSchema", allow_none=True)
    error = fields.Dict(allow_none=True, metadata={"description": "the operation does not fit "
                                                   "this set's vocabulary: {error, message}"})
    explanations = fields.List(fields.Nested(PlaygroundExplainedSchema))


class PlaygroundEvaluateResultSchema(Schema):
    edited = fields.Nested(PlaygroundSideSchema, required=True)
    loaded = fields.Nested(PlaygroundSideSchema, required=True)
    same = fields.Boolean(required=True, metadata={"description": "same decision and rule ids"})
    files = fields.List(fields.String(), metadata={"description": "the files that were replaced"})


class PlaygroundCaseSchema(Schema):
    suite = fields.String(required=True)
    name = fields.String(required=True)
    file = fields.String()
    line = fields.Integer()
    passed = fields.Boolean(required=True)
    failures = fields.List(fields.String())
    decision = fields.String(allow_none=True)
    rules = fields.List(fields.String())
    passed_with_loaded = fields.Boolean(allow_none=True)


class PlaygroundTestResultSchema(Schema):
    policy_version = fields.String(required=True)
    loaded_version = fields.String(required=True)
    summary = fields.String(required=True)
    passed = fields.Integer(required=True)
    failed = fields.Integer(required=True)
    ok = fields.Boolean(required=True)
    errors = fields.List(fields.Nested("PolicyErrorSchema"))
    results = fields.List(fields.Nested(PlaygroundCaseSchema))
    changed = fields.List(fields.String(), metadata={"description": "cases whose outcome differs "
                                                     "from the loaded set's"})
    coverage = fields.Dict(metadata={"description": "rule id -> covering cases"})
    uncovered = fields.List(fields.String())


class PlaygroundCoverageSchema(Schema):
    policy_version = fields.String(required=True)
    cases = fields.Integer(required=True)
    rules = fields.Dict(
        keys=fields.String(),
        values=fields.List(fields.Dict()),
        metadata={"description": "rule id -> [{suite, name, passed}] of the cases whose reasons "
                  "name it (empty: no test covers the rule)"},
    )
    uncovered = fields.List(fields.String())


class PlaygroundPoliciesSchema(Schema):
    policy_version = fields.String(required=True)
    lang = fields.String(required=True)
    folder_matches_loaded = fields.Boolean(allow_none=True)
    vocabulary = fields.Dict()
    policies = fields.List(fields.Dict(), metadata={"description": "rules in plain words, each "
                                                    "with covered_by"})
    files = fields.Dict(keys=fields.String(), values=fields.String(),
                        metadata={"description": "texts of the loaded folder's files on disk"})
    uncovered = fields.List(fields.String())


_EVALUATE = PlaygroundEvaluateRequestSchema()
_TEST = PlaygroundTestRequestSchema()


def _load(schema: Schema, body: dict[str, Any]) -> dict[str, Any]:
    return load_or_400(schema, body, "playground request")


# --- the edited set --------------------------------------------------------------------------


def _state() -> Any:
    return current_app.extensions["kti"]


def _policy_dir() -> Path:
    return Path(_state().holder.policy_dir)


def _short_name(file: str, base: Path) -> str:
    """A position's file relative to the policy folder (``disclosure.yaml``), as staff name it;
    the loader shows paths relative to the server's working folder, which means nothing here."""
    path = Path(file)
    if not path.is_absolute():
        path = Path.cwd() / path
    try:
        return path.resolve().relative_to(base.resolve()).as_posix()
    except ValueError:
        return file


def _relocated(errors: list[PolicyError], base: Path) -> list[PolicyError]:
    """Errors with positions (and paths inside messages) relative to the policy folder: the
    server's own folder layout is no business of the page."""
    prefixes = {str(base) + os.sep, str(base.resolve()) + os.sep}
    try:
        prefixes.add(str(base.resolve().relative_to(Path.cwd())) + os.sep)
    except ValueError:
        pass
    ordered = sorted(prefixes, key=len, reverse=True)

    def strip(message: str) -> str:
        for prefix in ordered:
            message = message.replace(prefix, "")
        return message

    return [
        PolicyError(
            e.code,
            strip(e.message),
            Position(_short_name(e.position.file, base), e.position.line, e.position.col),
            e.severity,
        )
        for e in errors
    ]


def _yaml_bomb_errors(name: str, text: str) -> list[PolicyError]:
    """Refuse YAML whose aliases expand past ``MAX_YAML_NODES`` or that nests too deeply, before
    the loader expands it (counting shared nodes once per use, without expanding them)."""
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except RecursionError:
        return [PolicyError("too_large", "the YAML nests too deeply", Position(name, 1, 1))]
    except yaml.YAMLError:
        return []  # the loader reports syntax errors with their position
    if root is None:
        return []
    sizes: dict[int, int] = {}
    # iterative post-order walk: composing succeeded, but our own recursion might not
    stack: list[tuple[yaml.Node, int, bool]] = [(root, 1, False)]
    while stack:
        node, depth, done = stack.pop()
        if depth > MAX_YAML_DEPTH:
            return [PolicyError("too_large", f"the YAML nests deeper than {MAX_YAML_DEPTH} levels",
                                Position(name, node.start_mark.line + 1, node.start_mark.column + 1))]
        children = _children(node)
        if isinstance(node, yaml.ScalarNode) and not _is_text(node.value):
            # "\ud800" is a valid YAML escape but no text: it would fail later, as a 500
            return [PolicyError("policy_parse_error",
                                "a string is not valid Unicode text (a lone UTF-16 surrogate)",
                                Position(name, node.start_mark.line + 1, node.start_mark.column + 1))]
        if done or not children:
            size = 1 + sum(sizes.get(id(c), 1) for c in children)
            sizes[id(node)] = size
            if size > MAX_YAML_NODES:
                return [PolicyError(
                    "too_large",
                    f"the YAML aliases expand to more than {MAX_YAML_NODES} nodes",
                    Position(name, node.start_mark.line + 1, node.start_mark.column + 1),
                )]
            continue
        if id(node) in sizes:
            continue
        stack.append((node, depth, True))
        stack.extend((c, depth + 1, False) for c in children if id(c) not in sizes)
    return []


def _is_text(value: str) -> bool:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.MappingNode):
        return [n for pair in node.value for n in pair]
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    return []


def _edited_set(files: Mapping[str, str], loaded: Any) -> tuple[PolicySet, Any]:
    """The set the edit would give, and a decider for it; raises ``PolicyErrors`` (file names
    relative to the folder). No files: the ``loaded`` set itself, with the service's decider."""
    if not files:
        return loaded.policy_set, loaded.decider
    base = _policy_dir()
    bombs = [e for name, text in files.items() for e in _yaml_bomb_errors(name, text)]
    if bombs:
        raise PolicyErrors(bombs)
    try:
        edited = load_policy_set(base, overrides=dict(files))
    except PolicyErrors as exc:
        raise PolicyErrors(_relocated(exc.errors, base)) from None
    if edited.version == loaded.version:
        return loaded.policy_set, loaded.decider
    return edited, Decider(edited, cache_size=0, use_engine=False)


class TooCostly(RequestError):
    """A playground call over its budget (HTTP 413)."""

    code = "too_costly"


class PlaygroundBusy(RequestError):
    """Every playground slot of this process is taken (HTTP 503, retry)."""

    code = "playground_busy"


def _check_budget(files: Mapping[str, str]) -> None:
    total = sum(len(t) for t in files.values())
    if total > BUDGET_CHARS:
        raise TooCostly(
            f"files: {total} characters in all; the playground checks at most {BUDGET_CHARS} "
            "per call (edit a copy of fewer files)",
            {"field": "files", "chars": total, "limit": BUDGET_CHARS},
        )


@contextmanager
def _slot() -> Iterator[None]:
    """One of ``PLAYGROUND_SLOTS``: a few expensive edits at once, whoever sends them."""
    if not _slots.acquire(timeout=BUSY_WAIT_SECONDS):
        raise PlaygroundBusy(
            "the playground is busy with other edits; retry in a few seconds",
            {"retry_after": int(BUSY_WAIT_SECONDS)},
        )
    try:
        yield
    finally:
        _slots.release()


def _facts(data: Mapping[str, Any], vocabulary: Vocabulary) -> SubjectFacts:
    """Facts from the request, their ids checked against ``vocabulary`` like a request's."""
    for key, kind in (("consents", "consent_purpose"), ("objections", "objection_scope"),
                      ("withdrawn_consents", "consent_purpose")):
        for i, value in enumerate(data.get(key) or ()):
            if not vocabulary.knows(kind, value):
                raise UnknownVocabularyId(f"facts.{key}[{i}]", value, vocabulary.ids(kind))
    rel = data.get("relationship")
    if rel is not None and not vocabulary.knows("relationship", rel):
        raise UnknownVocabularyId("facts.relationship", rel, vocabulary.ids("relationship"))
    subject_kind = data.get("kind")
    if subject_kind is not None and not vocabulary.knows("subject_kind", subject_kind):
        raise UnknownVocabularyId("facts.kind", subject_kind, vocabulary.ids("subject_kind"))
    return SubjectFacts.from_dict(data)


def _side(policy_set: PolicySet, decider: Any, operation: Mapping[str, Any],
          facts: Mapping[str, Any], lang: str, strict: bool) -> tuple[dict[str, Any], Decision | None]:
    """One set's answer. ``strict``: a request error is raised (400) rather than reported."""
    try:
        op = parse_operation(operation, policy_set.vocabulary, field_prefix="operation.")
        subject_facts = _facts(facts, policy_set.vocabulary)
    except RequestError as exc:
        if strict:
            raise
        return {"policy_version": policy_set.version, "decision": None,
                "error": {"error": exc.code, "message": exc.message}, "explanations": []}, None
    decision = decider.decide(op, subject_facts)
    ctx = build_context(op, decision.facts, decision.evaluated_at)
    rules = decider.rules
    explanations = [explain_rule(rules[rid], ctx, lang) for rid in decision.rule_ids if rid in rules]
    return {"policy_version": policy_set.version, "decision": decision.to_dict(lang),
            "error": None, "explanations": explanations}, decision


# --- policy tests ----------------------------------------------------------------------------

_BASELINE: OrderedDict[tuple[Any, ...], TestRun] = OrderedDict()
_BASELINE_LOCK = threading.Lock()


def _tests_signature(base: Path) -> tuple[Any, ...]:
    out = []
    for path in test_files(base):
        try:
            st = path.stat()
        except OSError:
            continue
        out.append((str(path), st.st_mtime_ns, st.st_size))
    return tuple(out)


def _loaded_run(loaded: Any) -> TestRun:
    """The shipped tests against ``loaded``, cached until the set or a test file changes.

    Views read ``_state().loaded()`` once and pass it on: one policy set for the whole request,
    even when a reload lands in the middle (as ``decisions._decide_all`` does)."""
    base = _policy_dir()
    key = (str(base), loaded.version, _tests_signature(base))
    with _BASELINE_LOCK:
        hit = _BASELINE.get(key)
    if hit is not None:
        return hit
    run = run_tests(base, loaded.policy_set, loaded.decider)
    with _BASELINE_LOCK:
        _BASELINE[key] = run
        while len(_BASELINE) > 8:
            _BASELINE.popitem(last=False)
    return run


def _case_key(r: CaseResult) -> tuple[str, int, str]:
    return (r.case.position.file, r.case.position.line, r.case.name)


def _coverage(run: TestRun, base: Path) -> dict[str, list[dict[str, Any]]]:
    """Rule id -> the cases whose decision names it among its reasons (``policytest``'s
    definition of covered), for every rule of the set (empty list: uncovered)."""
    out: dict[str, list[dict[str, Any]]] = {rid: [] for rid in run.rule_ids}
    for r in run.results:
        if not r.decision:
            continue
        for rid in dict.fromkeys(x["rule"] for x in r.decision["reasons"]):
            if rid in out:
                out[rid].append({"suite": r.case.suite, "name": r.case.name, "passed": r.passed,
                                 "file": _short_name(r.case.position.file, base)})
    return out


def _case_dict(r: CaseResult, base: Path, before: bool | None) -> dict[str, Any]:
    return {
        "suite": r.case.suite,
        "name": r.case.name,
        "file": _short_name(r.case.position.file, base),
        "line": r.case.position.line,
        "passed": r.passed,
        "failures": r.failures,
        "decision": r.decision["decision"] if r.decision else None,
        "rules": [x["rule"] for x in r.decision["reasons"]] if r.decision else [],
        "passed_with_loaded": before,
    }


# --- views -----------------------------------------------------------------------------------


@bp.get("/ui")
def page() -> Any:
    """The policy playground page (HTML).
    ---
    get:
      summary: The policy playground page for compliance staff
      description: >-
        Plain HTML, CSS and JavaScript served by the service (no CDN). The page itself needs no
        key; the data it shows comes from the endpoints below, with the key the user pastes.
      security: []
      responses:
        200:
          description: the page
          content:
            text/html: {schema: {type: string}}
    """
    html = render_template(
        "playground.html",
        auth_on=current_keys().enabled,
        version=__version__,
        assets={name: f"/ui/assets/{name}?v={__version__}" for name in ASSETS},
    )
    resp = Response(html, content_type="text/html; charset=utf-8")
    resp.headers["Content-Security-Policy"] = _CSP
    resp.headers["X-Frame-Options"] = "DENY"
    resp.headers["Referrer-Policy"] = "no-referrer"
    return resp


# the generated notice is a page of its own: no script, its inline stylesheet only
_NOTICE_CSP = "default-src 'none'; style-src 'unsafe-inline'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"


@bp.get("/v1/notice")
def notice_page() -> Any:
    """The privacy notice generated from the loaded policy set (public, like /openapi.json).
    ---
    get:
      summary: The privacy notice (GDPR 13/14) generated from the loaded policies
      description: >-
        The published privacy notice, written from the loaded pack's vocabulary, named lists and
        periods, laws and rules (as `kti-policy notice` writes it), so that the notice and the
        rules enforced cannot drift. It is public information: no key is needed. `lang` fi or en
        (default: Accept-Language, else en); `format` html (default) or md.
      security: []
      parameters:
        - {in: query, name: lang, schema: {type: string, enum: [fi, en]}}
        - {in: query, name: format, schema: {type: string, enum: [html, md], default: html}}
      responses:
        200:
          description: the notice
          content:
            text/html: {schema: {type: string}}
            text/markdown: {schema: {type: string}}
        400:
          description: an unknown lang or format
          content:
            application/json:
              schema: Error
    """
    from flask import request

    from kti_policy.policy.notice import render

    lang = request.args.get("lang") or negotiated_language()
    fmt = request.args.get("format") or "html"
    if lang not in ("fi", "en"):
        raise RequestError(f"lang must be fi or en, not {lang!r}", {"field": "lang"})
    if fmt not in ("html", "md"):
        raise RequestError(f"format must be html or md, not {fmt!r}", {"field": "format"})
    loaded = _state().loaded()
    text = render(loaded.policy_set, lang, fmt)
    if fmt == "md":
        resp = Response(text, content_type="text/markdown; charset=utf-8")
    else:
        resp = Response(text, content_type="text/html; charset=utf-8")
        resp.headers["Content-Security-Policy"] = _NOTICE_CSP
    resp.headers["Content-Language"] = lang
    resp.headers["X-Policy-Version"] = loaded.version
    resp.headers["Vary"] = "Accept-Language"
    return resp


@bp.get("/ui/assets/<name>")
def asset(name: str) -> Any:
    """A stylesheet or script of the playground page.
    ---
    get:
      summary: A static asset of the playground page (playground.css, playground.js)
      security: []
      responses:
        200:
          description: the file
          content:
            text/css: {schema: {type: string}}
            text/javascript: {schema: {type: string}}
    """
    if name not in ASSETS:
        raise HttpNotFound("no such asset")
    return send_from_directory(STATIC_DIR, name, max_age=0)


@bp.get("/v1/playground/policies")
@require_role("query")
def playground_policies() -> Any:
    """The loaded rules in plain words, with the policy tests covering each.
    ---
    get:
      summary: The loaded policies in plain words, with test coverage and file texts
      description: >-
        Texts follow Accept-Language (fi or en). `files` holds the texts of the policy folder on
        disk (to edit a copy); `folder_matches_loaded` is false when the folder changed since the
        last reload.
      parameters:
        - {in: header, name: Accept-Language, schema: {type: string, example: fi}}
      responses:
        200:
          description: policies, coverage, vocabulary and files
          content:
            application/json:
              schema: PlaygroundPoliciesSchema
    """
    lang = negotiated_language()
    loaded = _state().loaded()
    ps: PolicySet = loaded.policy_set
    base = _policy_dir()
    run = _loaded_run(loaded)
    coverage = _coverage(run, base)
    files: dict[str, str] = {}
    for path in [base / VOCABULARY_FILE] + (policy_files(base) if base.is_dir() else []):
        try:
            files[path.name] = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            continue
    # the loaded version is the hash of the texts it loaded from: equal hashes, same texts
    matches = version_of(files) == ps.version
    return jsonify(
        {
            "policy_version": ps.version,
            "lang": lang,
            "folder_matches_loaded": matches,
            "vocabulary": ps.vocabulary.to_dict(),
            "policies": [
                {
                    "id": p.id,
                    "title": p.title.get(lang),
                    "file": _short_name(p.file, base),
                    "source": p.source,
                    "description": p.description.get(lang) if p.description else None,
                    "rules": [_rule_dict(r, lang, coverage.get(r.id, []), base) for r in p.rules],
                }
                for p in ps.policies
            ],
            "files": files,
            "uncovered": run.uncovered,
            "tests": {"cases": len(run.results), "passed": run.passed, "failed": run.failed,
                      "errors": [e.to_dict() for e in _relocated(run.errors, base)]},
        }
    )


def _rule_dict(rule: Rule, lang: str, covered_by: list[dict[str, Any]], base: Path) -> dict[str, Any]:
    return {
        "id": rule.id,
        "effect": rule.effect,
        "source": rule.source,
        "law": list(rule.law),
        "reason": rule.reason.get(lang),
        "description": rule.description.get(lang) if rule.description else None,
        "when": describe(rule.when, lang),
        "unless": describe(rule.unless, lang) if rule.unless is not None else None,
        "obligations": [o.to_dict() for o in rule.obligations],
        "file": _short_name(rule.pos.file, base) if rule.pos else None,
        "line": rule.pos.line if rule.pos else None,
        "covered_by": covered_by,
    }


@bp.get("/v1/playground/coverage")
@require_role("query")
def playground_coverage() -> Any:
    """Which shipped policy test cases cover each loaded rule.
    ---
    get:
      summary: Policy test coverage of the loaded rules
      description: >-
        A rule is covered when it is among the reasons of at least one case of the policy
        folder's tests (as `kti-policy test --coverage` counts it).
      responses:
        200:
          description: rule id -> covering cases
          content:
            application/json:
              schema: PlaygroundCoverageSchema
    """
    loaded = _state().loaded()
    run = _loaded_run(loaded)
    coverage = _coverage(run, _policy_dir())
    return jsonify(
        {
            "policy_version": loaded.version,
            "cases": len(run.results),
            "rules": coverage,
            "uncovered": run.uncovered,
        }
    )


@bp.post("/v1/playground/evaluate")
@require_role("query")
def playground_evaluate() -> Any:
    """Check an edited policy set and decide one operation with it, beside the loaded set.
    ---
    post:
      summary: Check edited policy files and decide an operation with them
      description: >-
        `files` replace files of the loaded folder for this request only (nothing is stored or
        reloaded). Invalid files answer 422 with every error (file, line, col). Otherwise the
        answer holds the edited set's decision and the loaded set's for the same operation and
        facts (the facts are exactly those given: no recorded facts are read, nothing is logged).
        Messages follow Accept-Language.
      parameters:
        - {in: header, name: Accept-Language, schema: {type: string, example: fi}}
      requestBody:
        required: true
        content:
          application/json:
            schema: PlaygroundEvaluateRequestSchema
      responses:
        200:
          description: both decisions
          content:
            application/json:
              schema: PlaygroundEvaluateResultSchema
        422:
          description: the edited files do not check; details.errors has file, line and col
          content:
            application/json:
              schema: Error
    """
    req = _load(_EVALUATE, read_json_object())
    lang = negotiated_language()
    loaded = _state().loaded()
    _check_budget(req["files"])
    with _slot():
        edited_set, edited_decider = _edited_set(req["files"], loaded)
    edited, d_edited = _side(edited_set, edited_decider, req["operation"], req["facts"], lang, True)
    base, d_base = _side(loaded.policy_set, loaded.decider, req["operation"], req["facts"], lang,
                         False)
    same = (
        d_base is not None and d_edited is not None
        and d_base.decision == d_edited.decision and d_base.rule_ids == d_edited.rule_ids
    )
    return jsonify({"edited": edited, "loaded": base, "same": same, "files": sorted(req["files"])})


@bp.post("/v1/playground/test")
@require_role("query")
def playground_test() -> Any:
    """Run the shipped policy tests against an edited policy set.
    ---
    post:
      summary: Run the policy folder's tests against edited policy files
      description: >-
        The test cases are those of the loaded folder's tests/ directory; `files` replace
        policy files for this request only. Invalid files answer 422 with every error. Each case
        says whether it passed against the loaded set too, and `changed` lists those that differ.
      requestBody:
        required: true
        content:
          application/json:
            schema: PlaygroundTestRequestSchema
      responses:
        200:
          description: test results and coverage of the edited set
          content:
            application/json:
              schema: PlaygroundTestResultSchema
        422:
          description: the edited files do not check; details.errors has file, line and col
          content:
            application/json:
              schema: Error
    """
    req = _load(_TEST, read_json_object())
    loaded = _state().loaded()
    _check_budget(req["files"])
    started = time.monotonic()
    base = _policy_dir()
    with _slot():
        edited_set, decider = _edited_set(req["files"], loaded)
        loaded_run = _loaded_run(loaded)
        if edited_set is not loaded.policy_set:
            rules = len(edited_set.rules)
            cost = rules * max(1, len(loaded_run.results))
            if cost > BUDGET_RULE_CASES:
                raise TooCostly(
                    f"files: {rules} rules x {len(loaded_run.results)} test cases is more than "
                    f"the playground runs per call ({BUDGET_RULE_CASES})",
                    {"field": "files", "rules": rules, "limit": BUDGET_RULE_CASES},
                )
            if time.monotonic() - started > BUDGET_SECONDS:
                raise TooCostly(
                    f"files: checking them took over {BUDGET_SECONDS:g} s; the tests were not run",
                    {"field": "files", "seconds": BUDGET_SECONDS},
                )
        run = loaded_run if edited_set is loaded.policy_set else run_tests(
            base, edited_set, decider
        )
    before = {_case_key(r): r.passed for r in loaded_run.results}
    results = [_case_dict(r, base, before.get(_case_key(r))) for r in run.results]
    coverage = _coverage(run, base)
    return jsonify(
        {
            "policy_version": edited_set.version,
            "loaded_version": loaded.version,
            "summary": run.summary(),
            "passed": run.passed,
            "failed": run.failed,
            "ok": run.ok,
            "errors": [e.to_dict() for e in _relocated(run.errors, base)],
            "results": results,
            "changed": [
                f"{c['suite']}: {c['name']}" for c in results
                if c["passed_with_loaded"] is not None and c["passed_with_loaded"] != c["passed"]
            ],
            "coverage": coverage,
            "uncovered": run.uncovered,
        }
    )
