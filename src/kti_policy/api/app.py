"""The Flask app factory: ``create_app(config)`` and the service state the blueprints share.

``gunicorn 'kti_policy.app:create_app()'`` calls it with no argument in every worker: the ``KTI_*``
environment is read then (never at import time). Tests pass a mapping.

``current_app.extensions["kti"]`` is a ``KtiState``: ``.store`` (facts, events, outbox),
``.policy_set()`` and ``.decider()`` (the current set, after looking at the cross-worker reload
marker), ``.loaded()`` (both as one consistent pair), ``.holder`` (reload), ``.api_keys``,
``.decision_log`` and ``.metrics``.
"""

from __future__ import annotations

import io
import ipaddress
import logging
import re
import time
from collections.abc import Mapping, Sequence
from typing import Any

from flask import Flask, Response, g, request

from kti_policy.config import ApiKeys, load_config, public_view

from .decision_log import DecisionLog
from .errors import error_response, register_error_handlers
from .jsonresp import FastJSONProvider
from .metrics import Metrics, get_metrics
from .policy_holder import Loaded, PolicyHolder, marker_path_for
from .redact import REDACTED

log = logging.getLogger(__name__)


class KtiState:
    """What the request handlers share in one process."""

    def __init__(
        self,
        config: Mapping[str, Any],
        store: Any,
        holder: PolicyHolder,
        api_keys: ApiKeys,
        decision_log: DecisionLog,
        metrics: Metrics,
        app: Flask,
    ) -> None:
        self.config = config
        self.store = store
        self.holder = holder
        self.api_keys = api_keys
        self.decision_log = decision_log
        self.metrics = metrics
        self._app = app
        self._openapi: dict[str, Any] | None = None
        pseudonymizer = getattr(store, "pseudonymizer", None)
        if pseudonymizer is None:
            from kti_policy.store.pseudonym import pseudonymizer_from_config

            pseudonymizer = pseudonymizer_from_config(config)
        self.pseudonymizer = pseudonymizer

    def loaded(self) -> Loaded:
        return self.holder.current()

    def policy_set(self) -> Any:
        return self.holder.current().policy_set

    def decider(self) -> Any:
        return self.holder.current().decider

    def subject_key(self, subject_id: str | None) -> str | None:
        return None if subject_id is None else self.pseudonymizer.subject_key(subject_id)

    def record_decisions(
        self,
        decisions: Sequence[Any],
        extra: Sequence[Mapping[str, Any]] | None = None,
        pseudonyms: Mapping[str, str] | None = None,
    ) -> None:
        """Count the decisions and write their log lines (one write for the lot).

        ``extra[i]`` is added to the log line of ``decisions[i]`` (AuthZEN logs its ``caller``);
        ``pseudonyms``: subject keys already computed for the facts read.
        """
        counts: dict[tuple[str, str], int] = {}
        for d in decisions:
            label = (d.decision, d.operation.operation)
            counts[label] = counts.get(label, 0) + 1
        for (decision, operation), n in counts.items():  # one increment per label pair
            self.metrics.decisions.labels(decision=decision, operation=operation).inc(n)
        if self.decision_log.enabled:
            keys: dict[str | None, str | None] = {}
            keys.update(pseudonyms or {})
            records = []
            for i, d in enumerate(decisions):
                sid = d.operation.subject_id
                if sid not in keys:
                    keys[sid] = self.subject_key(sid)
                record = d.log_record(keys[sid], facts_json=True)
                records.append({**record, **extra[i]} if extra else record)
            try:
                self.decision_log.write_many(records)
            except OSError:
                # the answer is already decided; losing the log line is logged loudly, not hidden
                log.exception("writing the decision log failed")

    def observe_decision_latency(self, kind: str, seconds: float) -> None:
        self.metrics.decision_seconds.labels(kind=kind).observe(seconds)

    def openapi(self) -> dict[str, Any]:
        if self._openapi is None:
            from .openapi import build_spec

            self._openapi = build_spec(self._app)
        return self._openapi

    def close(self) -> None:
        self.decision_log.close()
        if self.store is not None:
            self.store.close()


def _make_store(config: Mapping[str, Any]) -> Any:
    from kti_policy.hooks.fanout import Store

    return Store.from_config(config)


def create_app(config: Mapping[str, Any] | None = None) -> Flask:
    """Build the service. ``config`` is a mapping of ``KTI_*`` settings; None reads the environment.

    Loads the policy folder (raises ``PolicyErrors`` when it does not load: a server never starts on
    a broken set), opens the store and the decision log. Without ``KTI_API_KEYS`` authentication is
    off and only loopback clients are answered; the server entry points (``serve``,
    ``gunicorn.conf.py``) refuse to bind elsewhere.
    """
    cfg = load_config(config)
    app = Flask("kti_policy", instance_path=None)
    app.json = FastJSONProvider(app)  # unsorted keys, UTF-8, compact: as before, through orjson
    app.config.update(cfg)
    app.config["MAX_CONTENT_LENGTH"] = cfg["KTI_MAX_BODY_BYTES"]

    api_keys = ApiKeys.parse(cfg.get("KTI_API_KEYS"))
    if not api_keys.enabled:
        log.warning(
            "KTI_API_KEYS is not set: authentication is OFF; only loopback clients are answered"
        )
    metrics = get_metrics()

    def on_loaded(old: Loaded | None, new: Loaded, how: str) -> None:
        metrics.set_policy_version(old.version if old else None, new.version)
        if how == "sync":
            metrics.reloads.labels(result="sync").inc()

    holder = PolicyHolder(
        str(cfg["KTI_POLICY_DIR"]),
        marker_path_for(str(cfg["KTI_INSTANCE_DIR"]), str(cfg["KTI_POLICY_DIR"])),
        check_interval=float(cfg["KTI_RELOAD_CHECK_SECONDS"]),
        on_loaded=on_loaded,
    )
    holder.load_initial()
    store = cfg.get("KTI_STORE") or _make_store(cfg)  # KTI_STORE: an injected store (tests)
    decision_log = DecisionLog.open(cfg.get("KTI_DECISION_LOG"))
    state = KtiState(cfg, store, holder, api_keys, decision_log, metrics, app)
    app.extensions["kti"] = state
    log.debug("configuration: %s", public_view(cfg))

    register_error_handlers(app)
    from . import authzen, decisions, ops, policies, ui

    app.register_blueprint(ops.bp)
    app.register_blueprint(decisions.bp)
    app.register_blueprint(authzen.bp)
    app.register_blueprint(policies.bp)
    app.register_blueprint(ui.bp)
    try:
        from . import events
    except ModuleNotFoundError as exc:  # only while the events API is not part of the tree
        if exc.name != "kti_policy.api.events":
            raise
        log.warning("kti_policy.api.events is missing: events and subjects routes are off")
    else:
        app.register_blueprint(events.bp)
        from . import obligations

        obligations.init_app(app, store, cfg)  # the obligations register (CONTRACT section 8)

    _install_request_hooks(app, state)
    app.wsgi_app = RedactedLogTarget(app.wsgi_app)  # type: ignore[method-assign]
    return app


#: ``Host`` values answered while authentication is off (any port): a page on another site that
#: resolves its own name to 127.0.0.1 (DNS rebinding) sends its own name, and gets a 421
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "[::1]"})


def _host_name(host: str) -> str:
    host = host.strip().lower()
    if host.startswith("["):
        return host[: host.find("]") + 1]
    return host.rsplit(":", 1)[0] if ":" in host else host


def log_target() -> str:
    """The request as logs may show it: the route the router matched, with every path argument
    that is not an integer shown as ``<redacted>`` and query values dropped. Built from the match,
    not from the raw path, so ``//v1//subjects/<id>`` (a 308), ``/V1/subjects/<id>`` (a 404) or any
    path no route took never reach a log (``<unmatched>``)."""
    rule = request.url_rule
    if rule is None:
        return "<unmatched>"
    args = request.view_args or {}
    target = rule.rule
    for name, value in args.items():
        shown = str(value) if isinstance(value, int) else REDACTED
        target = re.sub(r"<(?:[^:<>]+:)?" + re.escape(name) + r">", shown, target)
    if request.args:
        target += "?" + "&".join(f"{k}=" for k in request.args)
    return target


class RedactedLogTarget:
    """WSGI middleware: after the app answered, put ``log_target()`` (left in the environ by the
    app) in place of the raw path, so that gunicorn's access log (``%(r)s``, ``%(U)s``, ``%(q)s``
    read the environ) and the development server's request log show the route, never a clear id."""

    def __init__(self, wsgi_app: Any) -> None:
        self.wsgi_app = wsgi_app

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        try:
            return self.wsgi_app(environ, start_response)
        finally:
            target = environ.get("kti.log_target") or "<unmatched>"
            environ["kti.log_target"] = target
            environ["RAW_URI"] = environ["REQUEST_URI"] = environ["PATH_INFO"] = target
            environ["QUERY_STRING"] = ""


def _is_loopback_client(addr: str | None) -> bool:
    if not addr:
        return True  # a unix socket: only local processes can connect
    try:
        return ipaddress.ip_address(addr.split("%")[0]).is_loopback
    except ValueError:
        return False


def _bounded_chunked_body(app: Flask) -> Response | None:
    """A chunked body has no ``Content-Length`` for werkzeug to check, and its limited stream
    stops reading at ``MAX_CONTENT_LENGTH``: the body would be cut there and parsed. Read it here,
    one byte past the limit: over is 413, as with a ``Content-Length``; within, the rest of the
    request sees an ordinary body of known length."""
    environ = request.environ
    if "chunked" not in environ.get("HTTP_TRANSFER_ENCODING", "").lower():
        return None  # first: the cheap test that rules out nearly every request
    if request.content_length is not None or "wsgi.input_terminated" not in environ:
        return None
    limit = int(app.config["MAX_CONTENT_LENGTH"])
    data = environ["wsgi.input"].read(limit + 1)
    if len(data) > limit:
        return error_response(
            413, "payload_too_large", f"the body is larger than {limit} bytes", {"limit": limit}
        )
    environ["wsgi.input"] = io.BytesIO(data)
    environ["CONTENT_LENGTH"] = str(len(data))
    environ.pop("wsgi.input_terminated", None)
    environ.pop("HTTP_TRANSFER_ENCODING", None)  # werkzeug ignores a length beside "chunked"
    for cached in ("stream", "content_length"):  # werkzeug caches what it read from the environ
        request.__dict__.pop(cached, None)
    return None


def _install_request_hooks(app: Flask, state: KtiState) -> None:
    metrics = state.metrics

    @app.before_request
    def _start() -> Response | None:
        g.kti_started = time.perf_counter()
        if not state.api_keys.enabled and not _is_loopback_client(request.remote_addr):
            # belt and braces: the servers refuse to bind publicly without keys
            return error_response(
                403,
                "forbidden",
                "authentication is off (KTI_API_KEYS unset): only loopback clients are served",
            )
        if not state.api_keys.enabled and _host_name(request.host) not in LOOPBACK_HOSTS:
            return error_response(
                421,
                "misdirected_request",
                "authentication is off (KTI_API_KEYS unset): only the Host names 127.0.0.1, "
                "localhost and [::1] are answered",
                {"host": request.host},
            )
        return _bounded_chunked_body(app)

    @app.after_request
    def _finish(resp: Response) -> Response:
        request.environ["kti.log_target"] = log_target()
        resp.headers.setdefault("X-Content-Type-Options", "nosniff")
        resp.headers.setdefault("Cache-Control", "no-store")
        endpoint = request.url_rule.rule if request.url_rule is not None else "<unmatched>"
        started = g.get("kti_started")
        try:
            metrics.http_requests.labels(
                endpoint=endpoint, method=request.method, status=str(resp.status_code)
            ).inc()
            if started is not None:
                metrics.http_seconds.labels(endpoint=endpoint).observe(
                    time.perf_counter() - started
                )
        except Exception:
            log.exception("metrics failed")
        return resp
