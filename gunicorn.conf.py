"""gunicorn settings for the decision service (the production entry point).

    gunicorn -c gunicorn.conf.py 'kti_policy.app:create_app()'

Every setting can be overridden on the command line (``--bind``, ``--workers``) or through
``GUNICORN_CMD_ARGS``. Defaults: ``KTI_BIND`` (127.0.0.1:8080), ``WEB_CONCURRENCY`` workers (2),
``KTI_WORKER_CLASS`` ``gevent`` with ``KTI_WORKER_CONNECTIONS`` (1000) connections per worker.

- Why gevent: with thread workers (gthread) each connection that dribbles its headers or body
  holds a thread, so 8 slow clients without a key stopped the service (issue 13). A gevent worker
  holds a greenlet per connection, so a slow client costs a little memory, not a thread; the app
  is unchanged (psycopg 3.1.14+ and SQLAlchemy's pool cooperate with gevent's monkey patching,
  SQLite calls are short and block only briefly). ``KTI_WORKER_CLASS=gthread`` brings the old
  worker back (it is what ``bench/http_bench.py`` measured). A public bind still needs a buffering
  proxy with header/body timeouts in front (``deploy/nginx.conf``): a greenlet per connection is
  bounded by ``worker_connections``.

- Without ``KTI_API_KEYS`` the server refuses to start on a non-loopback address (``on_starting``).
- Prometheus multiprocess mode: ``PROMETHEUS_MULTIPROC_DIR`` is set here (a fresh temporary folder
  unless given) before any worker imports prometheus-client; it is emptied at start, and a dead
  worker's live gauges are dropped in ``child_exit``.
- Workers load the app themselves (no preload): each opens its own database connections and
  decision-log descriptor after the fork.
"""

from __future__ import annotations

import glob
import os
import tempfile

bind = [os.environ.get("KTI_BIND", "127.0.0.1:8080")]
workers = int(os.environ.get("WEB_CONCURRENCY", "2"))
worker_class = os.environ.get("KTI_WORKER_CLASS", "gevent")
worker_connections = int(os.environ.get("KTI_WORKER_CONNECTIONS", "1000"))
threads = int(os.environ.get("KTI_THREADS", "4"))  # gthread only
keepalive = 5
timeout = 30
graceful_timeout = 20
preload_app = False
max_requests = int(os.environ.get("KTI_MAX_REQUESTS", "0"))
max_requests_jitter = max_requests // 10
accesslog = os.environ.get("KTI_ACCESS_LOG") or None
errorlog = "-"
loglevel = os.environ.get("KTI_LOG_LEVEL", "info").lower()
limit_request_line = 8190
limit_request_fields = 100
forwarded_allow_ips = os.environ.get("FORWARDED_ALLOW_IPS", "127.0.0.1,::1")
proc_name = "kti-policy"
# gunicorn 23+ opens a control socket at a fixed per-user path; several services on one host (and
# the tests) would fight over it, and nothing here uses it.
control_socket_disable = True

if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="kti-prometheus-")
os.makedirs(os.environ["PROMETHEUS_MULTIPROC_DIR"], exist_ok=True)


def on_starting(server):  # type: ignore[no-untyped-def]
    """Refuse a public bind without API keys; start metrics from empty."""
    from kti_policy.config import check_auth_for_binds
    from kti_policy.errors import ConfigError

    env = {**os.environ, **(server.cfg.env or {})}
    try:
        warnings = check_auth_for_binds(list(server.cfg.bind), env.get("KTI_API_KEYS"))
    except ConfigError as exc:
        server.log.error("refusing to start: %s", exc)
        raise SystemExit(2) from None
    for warning in warnings:
        server.log.warning(warning)
    for path in glob.glob(os.path.join(os.environ["PROMETHEUS_MULTIPROC_DIR"], "*.db")):
        os.unlink(path)


def post_fork(server, worker):  # type: ignore[no-untyped-def]
    """Access log lines of GET /v1/subjects/<id> would hold the clear id: rewrite them."""
    from kti_policy.api.redact import install

    install("gunicorn.access", "gunicorn.error")


def pre_request(worker, req):  # type: ignore[no-untyped-def]
    """gunicorn's default logs the raw path at debug level before the app has routed it; a raw
    path may hold a clear subject id in any spelling, so only the method is logged here (the
    access log shows the route the app matched)."""
    worker.log.debug("%s request", req.method)


def child_exit(server, worker):  # type: ignore[no-untyped-def]
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)


def worker_exit(server, worker):  # type: ignore[no-untyped-def]
    app = getattr(getattr(worker, "wsgi", None), "extensions", {}).get("kti")
    if app is not None:
        app.close()
