"""Shared pytest fixtures. Each engineer's fixtures live in their own marked section: append yours."""

from __future__ import annotations

# ---------------------------------------------------------------------------------------------------
# BEGIN section: events store, outbox and webhooks (store.py, delivery.py, hooks.py; owner: events)
#
# ``db_url`` runs a test on SQLite (always) and PostgreSQL (when KTI_TEST_POSTGRES_URL is set, e.g.
# postgresql://postgres@127.0.0.1:5432/test; otherwise skipped with a reason). Each PostgreSQL test
# gets its own freshly created schema (others share the database), dropped afterwards.
# ``make_store(subscriptions=...)`` opens Stores on that database (several share it: two workers).
# ``receiver`` is a real HTTP server on 127.0.0.1 whose answers a test scripts.
# ---------------------------------------------------------------------------------------------------
import base64 as _ev_base64
import os as _ev_os
import secrets as _ev_secrets

# --- tests mirror the packages (tests/policy/, tests/decide/, ...; end-to-end in tests/e2e/) --------
# Tests import each other by basename (``from test_policytest import ...``): every test folder that
# is not a package is on sys.path (pytest's default "prepend" import mode adds tests/ itself, so
# ``from conftest import ...`` and ``from e2e.server import ...`` work). Basenames must therefore be
# unique across folders; this refuses a duplicate before anything is collected.
import sys as _lay_sys  # noqa: E402
import threading as _ev_threading
from collections.abc import Callable as _EvCallable
from collections.abc import Iterator as _EvIterator
from dataclasses import dataclass as _ev_dataclass
from dataclasses import field as _ev_field
from http.server import BaseHTTPRequestHandler as _EvHandler
from http.server import ThreadingHTTPServer as _EvServer
from pathlib import Path as _LayPath  # noqa: E402
from typing import Any as _EvAny

import pytest

_LAY_TESTS = _LayPath(__file__).resolve().parent
_lay_seen: dict[str, _LayPath] = {}
for _lay_file in sorted(_LAY_TESTS.rglob("test_*.py")):
    if _lay_file.name in _lay_seen:
        raise RuntimeError(f"two test files named {_lay_file.name}: {_lay_seen[_lay_file.name]}, {_lay_file}")
    _lay_seen[_lay_file.name] = _lay_file
    _lay_dir = str(_lay_file.parent)
    if not (_lay_file.parent / "__init__.py").exists() and _lay_dir not in _lay_sys.path:
        _lay_sys.path.append(_lay_dir)
# --- end tests layout ------------------------------------------------------------------------------

EVENTS_PG_ENV = "KTI_TEST_POSTGRES_URL"


@_ev_dataclass
class EventsDb:
    backend: str
    url: str
    schema: str | None = None


def _pg_admin(url: str, sql: str) -> None:
    import psycopg

    with psycopg.connect(url.replace("postgresql+psycopg://", "postgresql://"), autocommit=True) as c:
        c.execute(sql)


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: _EvAny) -> _EvIterator[EventsDb]:
    if request.param == "sqlite":
        yield EventsDb("sqlite", f"sqlite:///{tmp_path / 'kti-test.sqlite3'}")
        return
    url = _ev_os.environ.get(EVENTS_PG_ENV)
    if not url:
        pytest.skip(f"PostgreSQL tests need {EVENTS_PG_ENV} (e.g. postgresql://postgres@127.0.0.1/test)")
    schema = f"kti_t_{_ev_secrets.token_hex(6)}"
    _pg_admin(url, f"CREATE SCHEMA {schema}")
    try:
        yield EventsDb("postgresql", url, schema)
    finally:
        _pg_admin(url, f"DROP SCHEMA IF EXISTS {schema} CASCADE")


def new_hook_secret() -> str:
    return "whsec_" + _ev_base64.b64encode(_ev_secrets.token_bytes(32)).decode()


def in_a_forked_child(work: _EvCallable[[], bytes]) -> bytes:
    """What ``work()`` returns when run in a forked child of this process (as a gunicorn worker is
    forked from its arbiter): for state that must be renewed after a fork. The child never returns
    into pytest; an exception in it comes back as ``b"raised: ..."``."""
    read_end, write_end = _ev_os.pipe()
    pid = _ev_os.fork()
    if pid == 0:
        try:
            _ev_os.close(read_end)
            try:
                said = work()
            except BaseException as exc:  # noqa: BLE001  (reported to the parent, which asserts)
                said = f"raised: {exc!r}".encode()
            _ev_os.write(write_end, said)
        finally:
            _ev_os._exit(0)
    _ev_os.close(write_end)
    with _ev_os.fdopen(read_end, "rb") as fh:
        said = fh.read()
    _ev_os.waitpid(pid, 0)
    return said


@pytest.fixture
def make_store(db_url: EventsDb) -> _EvIterator[_EvCallable[..., _EvAny]]:
    from kti_policy.store.db import Store
    from kti_policy.store.pseudonym import Pseudonymizer

    opened: list[Store] = []

    def make(subscriptions: _EvAny = (), **kwargs: _EvAny) -> Store:
        store = Store(
            db_url.url,
            Pseudonymizer("test-pseudonym-key-0123456789"),
            subscriptions,
            schema=db_url.schema,
            **kwargs,
        )
        opened.append(store)
        return store

    make.db = db_url  # type: ignore[attr-defined]
    yield make
    for store in opened:
        store.close()


@_ev_dataclass
class ReceivedRequest:
    path: str
    headers: dict[str, str]
    body: bytes


@_ev_dataclass
class Receiver:
    """Answers with the scripted statuses in turn (then ``default``); records every request."""

    url: str
    requests: list[ReceivedRequest] = _ev_field(default_factory=list)
    script: list[int] = _ev_field(default_factory=list)
    default: int = 200
    delay: float = 0.0
    lock: _ev_threading.Lock = _ev_field(default_factory=_ev_threading.Lock)

    def next_status(self) -> int:
        with self.lock:
            return self.script.pop(0) if self.script else self.default


@pytest.fixture
def receiver() -> _EvIterator[Receiver]:
    state: dict[str, Receiver] = {}

    class Handler(_EvHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("content-length") or 0))
            rec = state["r"]
            if rec.delay:
                import time

                time.sleep(rec.delay)
            with rec.lock:
                rec.requests.append(
                    ReceivedRequest(self.path, {k.lower(): v for k, v in self.headers.items()}, body)
                )
            status = rec.next_status()
            payload = b"ok" if status < 300 else b"not now"
            self.send_response(status)
            if status in (301, 302, 307):
                self.send_header("Location", "http://127.0.0.1:9/elsewhere")
            self.send_header("content-length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, *args: _EvAny) -> None:
            pass

    class Server(_EvServer):
        request_queue_size = 64  # the default 5 drops connections from 8 concurrent senders

    server = Server(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    state["r"] = Receiver(f"http://127.0.0.1:{server.server_address[1]}/hook")
    thread = _ev_threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield state["r"]
    server.shutdown()
    server.server_close()


# END section: events store, outbox and webhooks
# ---------------------------------------------------------------------------------------------------


# ---------------------------------------------------------------------------------------------------
# BEGIN section: decision service over HTTP (app.py, api/, gunicorn; owner: service)
#
# ``live_server``: one real gunicorn (2 workers) per test module, default config, no API keys
# (loopback only). ``start_server(env=..., workers=..., policy_dir=...)``: start more, with env
# overrides (e.g. ``{"KTI_API_KEYS": "k:admin"}``); all are stopped after the test.
# ``app_client(config_overrides)``: a Flask test client on a temporary instance folder.
# ---------------------------------------------------------------------------------------------------
from pathlib import Path as _SvcPath  # noqa: E402

from e2e.server import DEFAULT_POLICIES as SVC_DEFAULT_POLICIES  # noqa: E402
from e2e.server import GunicornServer  # noqa: E402


@pytest.fixture
def start_server(tmp_path: _SvcPath) -> _EvIterator[_EvCallable[..., GunicornServer]]:
    started: list[GunicornServer] = []

    def start(env: dict[str, str] | None = None, **kwargs: _EvAny) -> GunicornServer:
        srv = GunicornServer(tmp_path / f"server{len(started)}", env, **kwargs)
        started.append(srv)
        return srv.start()

    yield start
    for srv in started:
        srv.stop()


@pytest.fixture(scope="module")
def live_server(tmp_path_factory: pytest.TempPathFactory) -> _EvIterator[GunicornServer]:
    with GunicornServer(tmp_path_factory.mktemp("live")) as srv:
        yield srv


@pytest.fixture
def app_config(tmp_path: _SvcPath) -> dict[str, _EvAny]:
    return {
        "KTI_POLICY_DIR": str(SVC_DEFAULT_POLICIES),
        "KTI_INSTANCE_DIR": str(tmp_path / "instance"),
        "KTI_HOOKS_DIR": str(tmp_path / "hooks"),
        "KTI_DATABASE_URL": f"sqlite:///{tmp_path / 'kti.sqlite3'}",
        "KTI_DECISION_LOG": str(tmp_path / "decisions.jsonl"),
        "KTI_PSEUDONYM_KEY": "test-pseudonym-key-0123456789",
    }


@pytest.fixture
def app_client(app_config: dict[str, _EvAny]) -> _EvAny:
    from kti_policy.api.app import create_app

    app = create_app(app_config)
    yield app.test_client()
    app.extensions["kti"].close()


# END section: decision service over HTTP
# ---------------------------------------------------------------------------------------------------
