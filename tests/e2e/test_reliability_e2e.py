"""Reliability of events and webhooks end to end (issue 4): real servers, real receivers, real crashes.

Every test starts the real service as subprocesses on a free loopback port (gunicorn with a separate
``kti-policy deliver``, or ``kti-policy serve`` with its background delivery), with a temporary hooks
folder subscribing a real HTTP receiver in this process (``tests/e2e/receiver.py``: it verifies the
Standard Webhooks signature of every request with the ``standardwebhooks`` package and records
webhook-id and body). SQLite always; PostgreSQL too when ``KTI_TEST_POSTGRES_URL`` is set (a fresh
schema per test, from the ``db_url`` fixture in ``conftest.py``).

1. 8 concurrent clients post 10,000 events with duplicates (across the batch and single endpoints):
   each recorded once (201, then 200 with the same body), facts right, every subscribed one delivered.
2. ``kill -9`` of ``kti-policy serve`` while it is mid-send and clients are mid-post: after a restart
   every recorded delivery arrives (a batch is all or none, every 201 is kept).
3. 503 then 200 is delivered; always failing goes dead, and the retry endpoint delivers it.
4. two ``kti-policy deliver`` processes on one database send every delivery exactly once.
5. signed inbound events over HTTP: wrong secret, stale or future timestamp, changed body, malformed
   or missing headers are 401; a good signature is 201 (and its replay 200).
6. at the end of each: no clear subject id in the database (file bytes on SQLite, every table on
   PostgreSQL), the decision log or any server output.

Each test is bounded (pytest-timeout) and runs in well under two minutes on two cores.
"""

from __future__ import annotations

import json
import os
import random
import re
import secrets
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import requests
import sqlalchemy as sa
from conftest import EventsDb, new_hook_secret
from standardwebhooks.webhooks import Webhook

from e2e.receiver import WebhookReceiver
from e2e.server import DEFAULT_POLICIES, GunicornServer, free_port
from kti_policy.hooks.fanout import Store
from kti_policy.store.pseudonym import Pseudonymizer
from kti_policy.store.tables import deliveries_t, events_t

PSEUDONYM_KEY = "reliability-pseudonym-key-0123456789abcdef"
ADMIN_KEY = "adm-" + secrets.token_hex(12)
INGEST_KEY = "ing-" + secrets.token_hex(12)
QUERY_KEY = "qry-" + secrets.token_hex(12)
API_KEYS = f"{ADMIN_KEY}:admin,{INGEST_KEY}:ingest,{QUERY_KEY}:query"
SECRET_ENV = "KTI_HOOK_SECRET_RELIABILITY"
SUBSCRIBED = (
    "objection.registered",
    "consent.withdrawn",
    "erasure.requested",
    "relationship.ended",
)
KTI = Path(sys.executable).with_name("kti-policy")
BASE_TIME = datetime(2026, 3, 1, 8, 0, tzinfo=UTC)


# -- processes -------------------------------------------------------------------------------------


class Proc:
    """One ``kti-policy`` subprocess in its own session (so ``kill -9`` takes all of it)."""

    def __init__(self, name: str, argv: list[str], env: Mapping[str, str], workdir: Path) -> None:
        self.name = name
        self.argv = argv
        self.env = dict(env)
        self.workdir = workdir
        self.log_path = workdir / f"{name}.log"
        self.popen: subprocess.Popen[bytes] | None = None

    def start(self) -> Proc:
        with open(self.log_path, "ab") as logfile:
            self.popen = subprocess.Popen(
                self.argv,
                cwd=self.workdir,
                env=self.env,
                stdout=logfile,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        return self

    def running(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def kill9(self) -> None:
        if self.running():
            assert self.popen is not None
            os.killpg(self.popen.pid, signal.SIGKILL)
            self.popen.wait(timeout=10)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 20) -> int:
        """Ask it to stop (SIGTERM, or SIGINT for ``serve``); its exit code."""
        assert self.popen is not None
        if self.running():
            self.popen.send_signal(sig)
            try:
                self.popen.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.kill9()
                raise AssertionError(
                    f"{self.name} did not stop on {sig}:\n{self.log_text()}"
                ) from None
        return int(self.popen.returncode)

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""


class Serve(Proc):
    """``kti-policy serve`` (development server with background delivery) on a free port."""

    def __init__(self, name: str, env: Mapping[str, str], workdir: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        super().__init__(name, [str(KTI), "serve", "--port", str(self.port)], env, workdir)

    def start(self, timeout: float = 30) -> Serve:
        super().start()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.running():
                raise AssertionError(f"{self.name} exited:\n{self.log_text()}")
            try:
                if requests.get(self.url + "/healthz", timeout=1).status_code == 200:
                    return self
            except requests.RequestException:
                pass
            time.sleep(0.1)
        raise AssertionError(f"{self.name} did not answer /healthz:\n{self.log_text()}")


class Deliver(Proc):
    """``kti-policy deliver`` (the production delivery process)."""

    def __init__(self, name: str, env: Mapping[str, str], workdir: Path) -> None:
        super().__init__(name, [str(KTI), "deliver"], env, workdir)

    def start(self, timeout: float = 30) -> Deliver:
        super().start()
        deadline = time.monotonic() + timeout
        while "delivering webhooks for" not in self.log_text():
            if not self.running() or time.monotonic() > deadline:
                raise AssertionError(f"{self.name} did not start:\n{self.log_text()}")
            time.sleep(0.1)
        return self


@pytest.fixture
def procs() -> Iterator[list[Any]]:
    """Started processes and servers; whatever is still running is killed after the test."""
    started: list[Any] = []
    yield started
    for p in started:
        if isinstance(p, GunicornServer):
            p.stop()
        else:
            p.kill9()


# -- configuration ---------------------------------------------------------------------------------


def write_hooks(
    folder: Path, url: str, events: Sequence[str] = SUBSCRIBED, sid: str = "crm"
) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "hooks.yaml").write_text(
        "subscriptions:\n"
        f"  - id: {sid}\n    url: {url}\n    events: [{', '.join(events)}]\n"
        f"    secret_env: {SECRET_ENV}\n"
    )
    return folder


def kti_env(workdir: Path, db: EventsDb, hooks: Path, secret: str, **extra: str) -> dict[str, str]:
    """The ``KTI_*`` settings every process of one test shares (policies: a private copy)."""
    policies = workdir / "policies"
    if not policies.exists():
        shutil.copytree(DEFAULT_POLICIES, policies)
    env = {
        "KTI_POLICY_DIR": str(policies),
        "KTI_INSTANCE_DIR": str(workdir / "instance"),
        "KTI_HOOKS_DIR": str(hooks),
        "KTI_DATABASE_URL": db.url,
        "KTI_DECISION_LOG": str(workdir / "decisions.jsonl"),
        "KTI_PSEUDONYM_KEY": PSEUDONYM_KEY,
        "KTI_API_KEYS": API_KEYS,
        "KTI_HOOK_RETRY_JITTER": "0",
        SECRET_ENV: secret,
        "PYTHONUNBUFFERED": "1",
    }
    if db.schema:
        env["KTI_DATABASE_SCHEMA"] = db.schema
    env.update(extra)
    return env


def full_env(kti: Mapping[str, str]) -> dict[str, str]:
    """This environment without any ``KTI_*`` or Prometheus setting of its own, plus ``kti``."""
    base = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("KTI_") and k not in ("PROMETHEUS_MULTIPROC_DIR", "GUNICORN_CMD_ARGS")
    }
    return {**base, **kti}


def open_store(db: EventsDb) -> Store:
    """A store on the test's database for inspecting it (no subscriptions, no migration)."""
    return Store(db.url, Pseudonymizer(PSEUDONYM_KEY), [], schema=db.schema, migrate=False)


# -- events and their expected effects -------------------------------------------------------------


def make_event(
    eid: str, etype: str, subject: str, at: datetime, rnd: random.Random
) -> dict[str, Any]:
    data: dict[str, Any] = {}
    if etype.startswith("consent."):
        data = {"purpose": "disclosure"}
    elif etype.startswith("objection."):
        data = {"scope": rnd.choice(["direct_marketing", "disclosure"])}
    elif etype == "access_request.received":
        data = {"written": rnd.random() < 0.5, "signed": rnd.random() < 0.5}
    return {
        "id": eid,
        "type": etype,
        "subject_id": subject,
        "occurred_at": at.isoformat(),
        "data": data,
    }


TYPES = (
    "consent.granted",
    "consent.withdrawn",
    "objection.registered",
    "objection.withdrawn",
    "erasure.requested",
    "relationship.started",
    "relationship.ended",
    "access_request.received",
)


def make_events(token: str, subjects: int, per_subject: int, seed: int) -> list[dict[str, Any]]:
    """``subjects * per_subject`` events; each subject's happen at distinct times. Event ids never
    contain the subject id; every subject id starts with ``clear_marker(token)``."""
    rnd = random.Random(seed)
    out = []
    n = 0
    for s in range(subjects):
        subject = f"{clear_marker(token)}-{s}"
        for k in range(per_subject):
            at = BASE_TIME + timedelta(days=s % 30, minutes=k * 7 + rnd.randrange(7))
            etype = rnd.choice(TYPES)
            out.append(make_event(f"ev-{token}-{n}", etype, subject, at, rnd))
            n += 1
    return out


def clear_marker(token: str) -> str:
    return f"Asiakas-{token}"


def expected_facts(events: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """CONTRACT section 3, independently: the later occurred_at wins; an erasure request withdraws the
    consents given before it and stays until a relationship starts after it (RULES R2, R5)."""
    consents: set[str] = set()
    objections: set[str] = set()
    relationship = None
    erasure = False
    last_access: datetime | None = None
    for e in sorted(events, key=lambda e: datetime.fromisoformat(e["occurred_at"])):
        t, d = e["type"], e["data"]
        if t == "consent.granted":
            consents.add(d["purpose"])
        elif t == "consent.withdrawn":
            consents.discard(d["purpose"])
        elif t == "objection.registered":
            objections.add(d["scope"])
        elif t == "objection.withdrawn":
            objections.discard(d["scope"])
        elif t == "erasure.requested":
            erasure = True
            consents.clear()
        elif t == "relationship.started":
            relationship = "active"
            erasure = False
        elif t == "relationship.ended":
            relationship = "ended"
        elif t == "access_request.received":
            last_access = datetime.fromisoformat(e["occurred_at"])
    return {
        "consents": sorted(consents),
        "objections": sorted(objections),
        "relationship": relationship,
        "erasure_requested": erasure,
        "last_access_request_at": last_access,
    }


def facts_of(view: Mapping[str, Any]) -> dict[str, Any]:
    last = view["last_access_request_at"]
    return {
        "consents": sorted(view["consents"]),
        "objections": sorted(view["objections"]),
        "relationship": view["relationship"],
        "erasure_requested": view["erasure_requested"],
        "last_access_request_at": datetime.fromisoformat(last.replace("Z", "+00:00"))
        if last
        else None,
    }


# -- HTTP ------------------------------------------------------------------------------------------


def call(method: str, url: str, key: str | None, **kwargs: Any) -> requests.Response:
    """One request on a new connection (no retry: a lost answer must show, not be papered over)."""
    headers = dict(kwargs.pop("headers", None) or {})
    if key:
        headers["Authorization"] = f"Bearer {key}"
    kwargs.setdefault("timeout", 60)
    return requests.request(method, url, headers=headers, **kwargs)


@dataclass
class Post:
    kind: str  # "single" or "batch"
    events: list[dict[str, Any]]


@dataclass
class Outcome:
    created: bool
    record: dict[str, Any]
    via: str


def send(base: str, post: Post, outcomes: dict[str, list[Outcome]], lock: threading.Lock) -> None:
    """Post one event or batch; check the status against the items; collect per-id outcomes."""
    if post.kind == "single":
        r = call("POST", base + "/v1/events", INGEST_KEY, json=post.events[0])
        assert r.status_code in (200, 201), r.text
        items = [(r.status_code == 201, r.json())]
    else:
        r = call("POST", base + "/v1/events/batch", INGEST_KEY, json={"events": post.events})
        assert r.status_code in (200, 201), r.text
        body = r.json()
        got = body["events"]
        assert len(got) == len(post.events)
        n_created = sum(1 for x in got if x["created"])
        assert r.status_code == (201 if n_created else 200)
        assert (body["created"], body["duplicates"]) == (n_created, len(got) - n_created)
        items = [(x["created"], {k: v for k, v in x.items() if k != "created"}) for x in got]
    with lock:
        for ev, (created, record) in zip(post.events, items, strict=True):
            assert record["id"] == ev["id"]
            outcomes.setdefault(ev["id"], []).append(Outcome(created, record, post.kind))


def run_clients(n: int, work: Sequence[Callable[[], None]]) -> list[BaseException]:
    """Run ``work`` items on ``n`` threads (each takes the next item); the errors raised."""
    errors: list[BaseException] = []
    queue = list(reversed(work))
    lock = threading.Lock()

    def client() -> None:
        while True:
            with lock:
                if not queue or errors:
                    return
                item = queue.pop()
            try:
                item()
            except BaseException as exc:  # noqa: BLE001 - reported by the caller
                with lock:
                    errors.append(exc)

    threads = [threading.Thread(target=client) for _ in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    return errors


def wait_outbox_settled(base: str, timeout: float = 30) -> None:
    """Until the service lists no pending delivery (the worker recorded every outcome)."""
    deadline = time.monotonic() + timeout
    while True:
        r = call("GET", base + "/v1/hooks/deliveries?status=pending&limit=5", ADMIN_KEY)
        assert r.status_code == 200, r.text
        if not r.json()["deliveries"]:
            return
        assert time.monotonic() < deadline, r.json()
        time.sleep(0.2)


# -- no clear ids at rest (item 6) -----------------------------------------------------------------


def database_bytes(db: EventsDb) -> dict[str, bytes]:
    """SQLite: the database file and any journal/WAL beside it, as bytes on disk. PostgreSQL: every
    value of every table in the test's schema (bytea as raw bytes)."""
    if db.backend == "sqlite":
        path = Path(sa.engine.make_url(db.url).database or "")
        files = {
            path.name + suffix: Path(str(path) + suffix).read_bytes()
            for suffix in ("", "-wal", "-journal")
            if Path(str(path) + suffix).exists()
        }
        assert files.get(path.name)
        return files
    import psycopg
    from psycopg import sql

    out: dict[str, bytes] = {}
    with psycopg.connect(db.url) as conn:
        tables = [
            r[0]
            for r in conn.execute(
                "SELECT table_name FROM information_schema.tables WHERE table_schema = %s",
                (db.schema,),
            )
        ]
        assert {"events", "deliveries", "delivery_attempts"} <= set(tables)
        for table in tables:
            query = sql.SQL("SELECT * FROM {}.{}").format(
                sql.Identifier(str(db.schema)), sql.Identifier(table)
            )
            values = [
                bytes(v) if isinstance(v, (bytes, memoryview)) else str(v).encode()
                for row in conn.execute(query)
                for v in row
            ]
            out[f"table {table}"] = b"\n".join(values)
    return out


def assert_no_clear_ids(marker: str, db: EventsDb, texts: Mapping[str, str | bytes]) -> None:
    """No clear subject id (they all contain ``marker``) in the database or in ``texts``."""
    needle = marker.encode()
    found = [n for n, t in texts.items() if needle in (t if isinstance(t, bytes) else t.encode())]
    assert not found, f"clear subject ids in: {found}"
    for name, data in database_bytes(db).items():
        hits = [m.start() for m in re.finditer(re.escape(needle), data)]
        assert not hits, (
            f"{len(hits)} clear subject ids in {name} ({db.backend}) at {hits[:10]} of {len(data)} "
            f"bytes, e.g. {data[max(0, hits[0] - 120) : hits[0] + 80]!r}"
        )


# ==================================================================================================
# 1. 10,000 events from 8 concurrent clients, with duplicates across both endpoints
# ==================================================================================================


def plan_posts(events: list[dict[str, Any]], rnd: random.Random) -> tuple[list[Post], list[Post]]:
    """Phase 1: every event once (85% in batches of 20-80, the rest singly), plus ~6% duplicates
    through the *other* endpoint, all shuffled so that duplicates race their originals.
    Phase 2 (after phase 1 answered): 200 more duplicates, half singly, half in batches."""
    order = events[:]
    rnd.shuffle(order)
    posts: list[Post] = []
    kind_of: dict[str, str] = {}
    i = 0
    while i < len(order):
        if rnd.random() < 0.15:
            posts.append(Post("single", [order[i]]))
            kind_of[order[i]["id"]] = "single"
            i += 1
        else:
            size = rnd.randint(20, 80)
            chunk = order[i : i + size]
            posts.append(Post("batch", chunk))
            kind_of.update({e["id"]: "batch" for e in chunk})
            i += size
    dups = rnd.sample(events, 600)
    to_batch = [e for e in dups if kind_of[e["id"]] == "single"]
    posts += [Post("single", [e]) for e in dups if kind_of[e["id"]] == "batch"]
    posts += [Post("batch", to_batch[j : j + 15]) for j in range(0, len(to_batch), 15)]
    # a batch holding the same id twice records it once
    posts.append(Post("batch", [dups[0], dups[0], dups[1]]))
    rnd.shuffle(posts)
    later = rnd.sample(events, 200)
    phase2 = [Post("single", [e]) for e in later[:100]]
    phase2 += [Post("batch", later[j : j + 25]) for j in range(100, 200, 25)]
    return posts, phase2


@pytest.mark.timeout(150)
def test_concurrent_ingest_with_duplicates_records_once_and_delivers_all(
    db_url: EventsDb, tmp_path: Path, procs: list[Any]
) -> None:
    token = secrets.token_hex(4)
    marker = clear_marker(token)
    secret = new_hook_secret()
    rnd = random.Random(4)
    events = make_events(token, subjects=1000, per_subject=10, seed=1)
    assert len(events) == 10_000
    by_id = {e["id"]: e for e in events}
    with WebhookReceiver(secret) as rx:
        hooks = write_hooks(tmp_path / "hooks", rx.url())
        env = kti_env(tmp_path, db_url, hooks, secret)
        srv = GunicornServer(tmp_path / "gunicorn", env, workers=2, threads=4)
        procs.append(srv)
        srv.start()
        deliver = Deliver("deliver", full_env(env), tmp_path)
        procs.append(deliver)
        deliver.start()

        # -- ingest
        phase1, phase2 = plan_posts(events, rnd)
        outcomes: dict[str, list[Outcome]] = {}
        lock = threading.Lock()
        started = time.monotonic()
        errors = run_clients(8, [lambda p=p: send(srv.url, p, outcomes, lock) for p in phase1])
        assert not errors, errors[:3]
        ingest_seconds = time.monotonic() - started
        errors = run_clients(8, [lambda p=p: send(srv.url, p, outcomes, lock) for p in phase2])
        assert not errors, errors[:3]

        # every event recorded exactly once; every answer for an id shows the same record
        assert set(outcomes) == set(by_id)
        twice = 0
        for eid, outs in outcomes.items():
            created = [o for o in outs if o.created]
            assert len(created) == 1, (eid, outs)
            record = created[0].record
            twice += len(outs) > 1
            for o in outs:
                assert o.record == record, (eid, o, record)
            sent = by_id[eid]
            assert record["type"] == sent["type"] and record["data"] == sent["data"]
            assert datetime.fromisoformat(record["occurred_at"].replace("Z", "+00:00")) == (
                datetime.fromisoformat(sent["occurred_at"])
            )
            assert record["subject_key"].startswith("hs_")
        assert twice >= 700  # ~600 racing duplicates + 200 late ones (some overlap)
        late = [o for p in phase2 for e in p.events for o in outcomes[e["id"]][-1:]]
        assert not any(o.created for o in late)

        # -- facts through GET /v1/subjects/<id>
        by_subject: dict[str, list[dict[str, Any]]] = {}
        for e in events:
            by_subject.setdefault(e["subject_id"], []).append(e)
        keys: dict[str, str] = {}

        def check_subject(subject: str) -> None:
            r = call("GET", f"{srv.url}/v1/subjects/{subject}", QUERY_KEY)
            assert r.status_code == 200, r.text
            view = r.json()
            assert facts_of(view) == expected_facts(by_subject[subject]), subject
            history = [h["id"] for h in view["history"]]
            assert sorted(history) == sorted(e["id"] for e in by_subject[subject])
            keys[subject] = view["subject_key"]

        errors = run_clients(8, [lambda s=s: check_subject(s) for s in by_subject])
        assert not errors, errors[:3]
        assert call("GET", f"{srv.url}/v1/subjects/{marker}-nobody", QUERY_KEY).status_code == 404

        # -- decisions use the recorded facts, and the log shows them under the pseudonym only
        sample = sorted(by_subject)[:200]
        ops = [
            {"operation": "disclose", "recipient": {"country": "FI", "type": "third_party"}, "subject": {"id": s}}
            for s in sample
        ]
        r = call("POST", srv.url + "/v1/decisions/batch", QUERY_KEY, json={"operations": ops})
        assert r.status_code == 200, r.text
        decision_ids = {d["decision_id"] for d in r.json()["decisions"]}

        # -- deliveries: every recorded event of a subscribed type, at least once, signed
        expected = {e["id"] for e in events if e["type"] in SUBSCRIBED}
        missing = rx.wait_for_acked(expected, timeout=90)
        assert not missing, f"{len(missing)} of {len(expected)} deliveries never arrived"
        assert not rx.bad, rx.bad[:3]
        assert rx.acked_ids() == expected  # nothing for unsubscribed types or duplicates
        for wid, body in rx.acked.items():
            payload = json.loads(body)
            sent = by_id[wid]
            assert payload["type"] == sent["type"]
            assert payload["data"]["subject_id"] == sent["subject_id"]
            assert {k: payload["data"][k] for k in sent["data"]} == sent["data"]
        received = rx.snapshot()
        wait_outbox_settled(srv.url)
        print(
            f"\n[{db_url.backend}] ingest {len(phase1)} posts in {ingest_seconds:.1f}s; "
            f"{len(expected)} deliveries, {len(received)} requests, "
            f"{len({s.webhook_id for s in received})} distinct webhook-ids"
        )
        assert deliver.stop() == 0
        srv.stop()

    decision_log = Path(env["KTI_DECISION_LOG"])
    log_lines = [json.loads(x) for x in decision_log.read_text().splitlines()]
    logged = {x["decision_id"]: x for x in log_lines}
    assert decision_ids <= set(logged)
    by_key = {keys[s]: s for s in sample}
    for did in decision_ids:
        line = logged[did]
        subject = by_key[line["request"]["subject"]["id"]]
        assert facts_of(line["facts"]) == expected_facts(by_subject[subject])
    assert_no_clear_ids(
        marker,
        db_url,
        {
            "decision log": decision_log.read_bytes(),
            "gunicorn output": srv.log_text(),
            "deliver output": deliver.log_text(),
        },
    )


# ==================================================================================================
# 2. kill -9 while sending and while clients post: nothing recorded is lost
# ==================================================================================================


@pytest.mark.timeout(120)
def test_kill_9_mid_send_and_mid_post_loses_no_delivery(
    db_url: EventsDb, tmp_path: Path, procs: list[Any]
) -> None:
    token = secrets.token_hex(4)
    marker = clear_marker(token)
    secret = new_hook_secret()
    rnd = random.Random(2)
    events = make_events(token, subjects=200, per_subject=6, seed=2)
    with WebhookReceiver(secret) as rx:
        rx.hold()  # a receiver that takes the request and does not answer yet: sends stay in flight
        hooks = write_hooks(tmp_path / "hooks", rx.url())
        # a long timeout keeps the held attempts in flight until the kill
        env = full_env(
            kti_env(
                tmp_path,
                db_url,
                hooks,
                secret,
                KTI_HOOK_RETRY_SCHEDULE="1,1,1,1,1",
                KTI_HOOK_TIMEOUT="60",
            )
        )
        first = Serve("serve-1", env, tmp_path)
        procs.append(first)
        first.start()

        # 4 clients post batches of 10 and single events until the service dies under them
        posts = [Post("batch", events[i : i + 10]) for i in range(0, 600, 10)]
        posts += [Post("single", [e]) for e in events[600:]]
        rnd.shuffle(posts)
        accepted: set[str] = set()
        lost: list[Post] = []  # sent, but the answer never came
        failures: list[BaseException] = []
        lock = threading.Lock()
        killed = threading.Event()

        def client(mine: list[Post]) -> None:
            for post in mine:
                if killed.is_set():
                    return
                try:
                    outcomes: dict[str, list[Outcome]] = {}
                    send(first.url, post, outcomes, lock)
                except requests.RequestException:
                    with lock:
                        lost.append(post)
                    return
                except BaseException as exc:  # noqa: BLE001 - reported below
                    failures.append(exc)
                    return
                with lock:
                    accepted.update(outcomes)

        threads = [threading.Thread(target=client, args=(posts[k::4],)) for k in range(4)]
        for t in threads:
            t.start()
        deadline = time.monotonic() + 60
        while (len(accepted) < 500 or not rx.snapshot()) and time.monotonic() < deadline:
            time.sleep(0.01)
        assert rx.snapshot(), "the worker never started sending"
        in_flight = {s.webhook_id: s.body for s in rx.snapshot()}
        first.kill9()
        killed.set()
        for t in threads:
            t.join(timeout=60)
        assert not failures, failures[:3]
        with lock:
            accepted_now = set(accepted)
        assert len(accepted_now) >= 500

        # what the killed service left: every accepted event, each batch whole or absent, and one
        # pending delivery per recorded event of a subscribed type; the in-flight ones are leased
        store = open_store(db_url)
        try:
            with store.engine.connect() as conn:
                recorded = {
                    r.event_id: r.type
                    for r in conn.execute(sa.select(events_t.c.event_id, events_t.c.type))
                }
                rows = list(conn.execute(sa.select(deliveries_t)))
        finally:
            store.close()
        assert accepted_now <= set(recorded)
        for post in lost:
            got = [e["id"] in recorded for e in post.events]
            assert all(got) or not any(got), "a batch was half recorded"
        must_deliver = {eid for eid, etype in recorded.items() if etype in SUBSCRIBED}
        assert sorted(r.event_id for r in rows) == sorted(must_deliver)  # exactly one row each
        assert {r.status for r in rows} == {"pending"}
        now = datetime.now(UTC)
        leased = {
            r.event_id
            for r in rows
            if r.claimed_until and r.claimed_until.replace(tzinfo=UTC) > now
        }
        assert set(in_flight) <= leased

        # the receiver comes back; the service restarts
        restarted_at = time.monotonic()
        rx.release()
        second = Serve("serve-2", env, tmp_path)
        procs.append(second)
        second.start()

        def delivered_after_restart() -> dict[str, list[bytes]]:
            out: dict[str, list[bytes]] = {}
            for s in rx.snapshot():
                if s.at >= restarted_at and s.status is not None and 200 <= s.status < 300:
                    out.setdefault(s.webhook_id, []).append(s.body)
            return out

        # everything not leased by the dead process goes out at once
        assert rx.wait_until(lambda _: set(delivered_after_restart()) >= must_deliver - leased, 60)
        # the dead process's leases are honoured until they expire (lease_seconds, about 3 minutes
        # here): nobody sends those rows meanwhile. Waiting that out would only cost time, so the
        # test moves the clock of those leases forward instead, as if they had expired.
        assert not set(delivered_after_restart()) & leased
        store = open_store(db_url)
        try:
            with store._write() as conn:
                conn.execute(
                    deliveries_t.update()
                    .where(deliveries_t.c.status == "pending", deliveries_t.c.event_id.in_(leased))
                    .values(claimed_until=datetime.now(UTC) - timedelta(seconds=1))
                )
        finally:
            store.close()
        assert rx.wait_until(lambda _: set(delivered_after_restart()) >= must_deliver, 60), (
            must_deliver - set(delivered_after_restart())
        )
        delivered = delivered_after_restart()
        assert set(delivered) == must_deliver
        assert not rx.bad
        # the ones that were in flight when the service died went again with the same id and body
        for wid, body in in_flight.items():
            assert body in delivered[wid]
        wait_outbox_settled(second.url)
        print(
            f"\n[{db_url.backend}] killed with {len(accepted_now)} accepted, {len(lost)} posts unanswered, "
            f"{len(in_flight)} in flight, {len(leased)} leased; {len(must_deliver)} delivered after restart"
        )
        assert second.stop(signal.SIGINT) == 0

    assert_no_clear_ids(
        marker,
        db_url,
        {"first serve output": first.log_text(), "second serve output": second.log_text()},
    )


# ==================================================================================================
# 3. retries: 503 then 200 is delivered; always failing is dead, then the retry endpoint sends it
# ==================================================================================================


@pytest.mark.timeout(120)
def test_retries_then_dead_then_manual_retry(
    db_url: EventsDb, tmp_path: Path, procs: list[Any]
) -> None:
    token = secrets.token_hex(4)
    marker = clear_marker(token)
    secret = new_hook_secret()
    broken = threading.Event()
    broken.set()

    def respond(wid: str, nth: int, payload: dict[str, Any]) -> int:
        if wid.startswith("flaky"):
            return 503 if nth < 2 else 200
        if wid.startswith("down"):
            return 500 if broken.is_set() else 200
        return 200

    with WebhookReceiver(secret) as rx:
        rx.respond = respond  # the error answers echo the subject id (rx.error_body)
        hooks = write_hooks(tmp_path / "hooks", rx.url())
        env = full_env(kti_env(tmp_path, db_url, hooks, secret, KTI_HOOK_RETRY_SCHEDULE="1,1,1"))
        svc = Serve("serve", env, tmp_path)
        procs.append(svc)
        svc.start()
        rnd = random.Random(3)
        evs = [
            make_event(
                f"flaky-{token}-{i}", "objection.registered", f"{marker}-{i}", BASE_TIME, rnd
            )
            for i in range(3)
        ] + [
            make_event(f"down-{token}-{i}", "erasure.requested", f"{marker}-d{i}", BASE_TIME, rnd)
            for i in range(2)
        ]
        r = call("POST", svc.url + "/v1/events/batch", INGEST_KEY, json={"events": evs})
        assert r.status_code == 201, r.text
        flaky = {e["id"] for e in evs[:3]}
        down = {e["id"] for e in evs[3:]}

        assert not rx.wait_for_acked(flaky, timeout=30)

        def deliveries(status: str | None = None) -> dict[str, dict[str, Any]]:
            q = f"?status={status}" if status else ""
            r = call("GET", svc.url + "/v1/hooks/deliveries" + q, ADMIN_KEY)
            assert r.status_code == 200, r.text
            return {d["event_id"]: d for d in r.json()["deliveries"]}

        # each flaky one: 503, 503, 200, freshly signed every time, same id and body
        deadline = time.monotonic() + 20
        while not all(deliveries().get(e, {}).get("status") == "delivered" for e in flaky):
            assert time.monotonic() < deadline, deliveries()
            time.sleep(0.1)
        listed = deliveries()
        for eid in flaky:
            d = listed[eid]
            assert d["attempt_count"] == 3
            assert [a["status_code"] for a in d["attempts"]] == [503, 503, 200]
            assert [a["outcome"] for a in d["attempts"]] == ["failed", "failed", "delivered"]
            got = [s for s in rx.snapshot() if s.webhook_id == eid]
            assert len(got) == 3 and len({s.body for s in got}) == 1
            assert all(s.verified for s in got)
            stamps = [int(s.headers["webhook-timestamp"]) for s in got]
            assert stamps == sorted(stamps) and stamps[0] < stamps[-1]

        # always failing: 4 attempts ("1,1,1" = three delays), then dead
        deadline = time.monotonic() + 30
        while set(deliveries("dead")) != down:
            assert time.monotonic() < deadline, deliveries()
            time.sleep(0.2)
        dead = deliveries("dead")
        for eid in down:
            d = dead[eid]
            assert d["attempt_count"] == 4 and d["last_status_code"] == 500
            assert [a["outcome"] for a in d["attempts"]] == ["failed"] * 3 + ["dead"]
            # the receiver's answer is kept for diagnosis, without the subject id it echoed
            assert d["last_error"].startswith("HTTP 500") and "locked" in d["last_error"]
            assert marker not in json.dumps(d)
        assert len([s for s in rx.snapshot() if s.webhook_id in down]) == 8
        time.sleep(1.5)  # dead stays dead: no further attempts
        assert len([s for s in rx.snapshot() if s.webhook_id in down]) == 8

        # only a dead delivery can be retried; an unknown one is 404
        some_delivered = listed[sorted(flaky)[0]]["id"]
        r = call("POST", f"{svc.url}/v1/hooks/deliveries/{some_delivered}/retry", ADMIN_KEY)
        assert r.status_code == 400 and r.json()["error"] == "bad_request"
        assert (
            call("POST", f"{svc.url}/v1/hooks/deliveries/99999999/retry", ADMIN_KEY).status_code
            == 404
        )
        assert (
            call(
                "POST", f"{svc.url}/v1/hooks/deliveries/{some_delivered}/retry", QUERY_KEY
            ).status_code
            == 403
        )

        # the receiver is fixed; the retry endpoint sends each dead one again
        broken.clear()
        for eid in down:
            r = call("POST", f"{svc.url}/v1/hooks/deliveries/{dead[eid]['id']}/retry", ADMIN_KEY)
            assert r.status_code == 200, r.text
            assert r.json()["status"] in ("pending", "delivered")
        assert not rx.wait_for_acked(down, timeout=20)
        deadline = time.monotonic() + 10
        while not all(deliveries().get(e, {}).get("status") == "delivered" for e in down):
            assert time.monotonic() < deadline, deliveries()
            time.sleep(0.1)
        for eid in down:
            d = deliveries()[eid]
            assert d["attempt_count"] == 5 and d["attempts"][-1]["status_code"] == 200
        assert not rx.bad
        assert svc.stop(signal.SIGINT) == 0

    assert_no_clear_ids(marker, db_url, {"serve output": svc.log_text()})


# ==================================================================================================
# 4. two delivery processes on one database: each delivery sent once
# ==================================================================================================


@pytest.mark.timeout(120)
def test_two_deliver_processes_send_each_delivery_once(
    db_url: EventsDb, tmp_path: Path, procs: list[Any]
) -> None:
    token = secrets.token_hex(4)
    marker = clear_marker(token)
    secret = new_hook_secret()
    n = 1500
    with WebhookReceiver(secret) as rx:
        # the same subscription (id and secret) in two hooks folders, whose URLs differ only in a
        # query string: the receiver can tell which process sent what
        hooks_a = write_hooks(tmp_path / "hooks-a", rx.url("/hook?worker=a"))
        hooks_b = write_hooks(tmp_path / "hooks-b", rx.url("/hook?worker=b"))
        env_a = kti_env(tmp_path, db_url, hooks_a, secret)
        env_b = kti_env(tmp_path, db_url, hooks_b, secret)
        rnd = random.Random(5)
        events = [
            make_event(
                f"ev-{token}-{i}",
                "objection.registered",
                f"{marker}-{i % 300}",
                BASE_TIME + timedelta(seconds=i),
                rnd,
            )
            for i in range(n)
        ]
        store = Store.from_config(env_a, environ=env_a)
        try:
            for i in range(0, n, 500):
                assert all(r.created for r in store.record_events(events[i : i + 500]))
        finally:
            store.close()

        # both processes start while the receiver holds its answers, so both claim rows before
        # either finishes: they really run side by side
        rx.hold()
        a = Deliver("deliver-a", full_env(env_a), tmp_path)
        b = Deliver("deliver-b", full_env(env_b), tmp_path)
        procs += [a, b]
        a.start()
        b.start()
        both = rx.wait_until(
            lambda seen: {s.path for s in seen} >= {"/hook?worker=a", "/hook?worker=b"}, 30
        )
        rx.release()
        assert both, "both processes should have sends in flight"
        missing = rx.wait_for_acked({e["id"] for e in events}, timeout=90)
        assert not missing, f"{len(missing)} never delivered"
        time.sleep(1.5)  # anything sent twice would arrive now
        assert a.stop() == 0 and b.stop() == 0

    seen = rx.snapshot()
    ids = Counter(s.webhook_id for s in seen)
    assert not rx.bad
    assert [i for i, c in ids.items() if c > 1] == []
    assert len(ids) == n
    per_worker = Counter(s.path for s in seen)
    assert per_worker["/hook?worker=a"] > 0 and per_worker["/hook?worker=b"] > 0
    store = open_store(db_url)
    try:
        with store.engine.connect() as conn:
            stats = conn.execute(
                sa.select(
                    deliveries_t.c.status, sa.func.count(), sa.func.max(deliveries_t.c.attempts)
                ).group_by(deliveries_t.c.status)
            ).all()
    finally:
        store.close()
    assert [tuple(r) for r in stats] == [("delivered", n, 1)]
    print(
        f"\n[{db_url.backend}] worker a sent {per_worker['/hook?worker=a']}, b {per_worker['/hook?worker=b']}"
    )
    assert_no_clear_ids(marker, db_url, {"deliver a": a.log_text(), "deliver b": b.log_text()})


# ==================================================================================================
# 5. signed inbound events over real HTTP
# ==================================================================================================


def test_sigterm_ends_the_attempts_under_way_and_gives_back_the_rest(
    db_url: EventsDb, tmp_path: Path, procs: list[Any]
) -> None:
    """``kti-policy deliver`` holds more claimed deliveries than it sends at once. On SIGTERM it
    ends the two attempts under way, starts no other, and gives the held ones back: the next
    worker can claim them at once instead of waiting out their leases."""
    token = secrets.token_hex(4)
    secret = new_hook_secret()
    rnd = random.Random(7)
    with WebhookReceiver(secret) as rx:
        hooks = write_hooks(tmp_path / "hooks", rx.url("/hook"))
        env = kti_env(tmp_path, db_url, hooks, secret, KTI_HOOK_CONCURRENCY="2")
        events = [
            make_event(f"ev-{token}-{i}", "objection.registered", f"subj-{token}-{i}",
                       BASE_TIME + timedelta(seconds=i), rnd)
            for i in range(10)
        ]
        store = Store.from_config(env, environ=env)
        try:
            assert all(r.created for r in store.record_events(events))
        finally:
            store.close()
        rx.hold()
        deliver = Deliver("deliver", full_env(env), tmp_path)
        procs.append(deliver)
        deliver.start()
        try:
            assert rx.wait_until(lambda seen: len(seen) == 2, 30), deliver.log_text()
            assert deliver.popen is not None
            deliver.popen.send_signal(signal.SIGTERM)
            deadline = time.monotonic() + 20
            while "finishing the attempts under way" not in deliver.log_text():
                assert time.monotonic() < deadline, deliver.log_text()
                time.sleep(0.05)
        finally:
            rx.release()
        assert deliver.stop() == 0
        sent = {s.webhook_id for s in rx.snapshot()}
    assert len(sent) == 2 and sent <= set(rx.acked)
    store = open_store(db_url)
    try:
        back = store.claim_due(100, 60)
        assert len(back) == 8 and not sent & {c.event_id for c in back}
    finally:
        store.close()


def signed(secret: str, body: bytes, msg_id: str, at: datetime | None = None) -> dict[str, str]:
    at = at or datetime.now(UTC)
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(int(at.timestamp())),
        "webhook-signature": Webhook(secret).sign(msg_id, at, body.decode()),
        "content-type": "application/json",
    }


@pytest.mark.timeout(120)
def test_inbound_signatures_over_http(tmp_path: Path, procs: list[Any]) -> None:
    db = EventsDb("sqlite", f"sqlite:///{tmp_path / 'inbound.sqlite3'}")
    token = secrets.token_hex(4)
    marker = clear_marker(token)
    current, previous = new_hook_secret(), new_hook_secret()
    env = kti_env(
        tmp_path,
        db,
        tmp_path / "no-hooks",
        new_hook_secret(),
        KTI_INBOUND_WEBHOOK_SECRET=f"{current} {previous}",  # rotation: both accepted
    )
    srv = GunicornServer(tmp_path / "gunicorn", env, workers=2, threads=4)
    procs.append(srv)
    srv.start()
    rnd = random.Random(6)

    def event(i: int) -> dict[str, Any]:
        return make_event(f"in-{token}-{i}", "consent.granted", f"{marker}-{i}", BASE_TIME, rnd)

    def body_of(obj: Any) -> bytes:
        return json.dumps(obj, separators=(",", ":")).encode()

    def post(
        path: str, body: bytes, headers: dict[str, str], key: str | None = None
    ) -> requests.Response:
        return call("POST", srv.url + path, key, data=body, headers=headers)

    def rejected(r: requests.Response) -> None:
        assert r.status_code == 401, (r.status_code, r.text)
        err = r.json()
        assert err["error"] == "unauthorized" and isinstance(err["message"], str)
        assert "Traceback" not in r.text

    now = datetime.now(UTC)
    b = [body_of(event(i)) for i in range(12)]
    rejected(post("/v1/events", b[0], signed(new_hook_secret(), b[0], "m0")))  # wrong secret
    rejected(post("/v1/events", b[1], signed(current, b[1], "m1", now - timedelta(seconds=301))))
    rejected(post("/v1/events", b[2], signed(current, b[2], "m2", now + timedelta(seconds=301))))
    changed = b[3].replace(b'"disclosure"', b'"disclosure" ')  # the same JSON, other bytes
    rejected(post("/v1/events", changed, signed(current, b[3], "m3")))
    other = json.dumps(event(3)).encode()  # re-serialised by someone on the way
    rejected(post("/v1/events", other, signed(current, b[3], "m3")))
    rejected(post("/v1/events", b[4], {**signed(current, b[4], "m4"), "webhook-id": "m4x"}))
    rejected(
        post(
            "/v1/events",
            b[5],
            {**signed(current, b[5], "m5"), "webhook-signature": "v1,%%%not-base64"},
        )
    )
    rejected(
        post("/v1/events", b[5], {**signed(current, b[5], "m5"), "webhook-signature": "garbage"})
    )
    rejected(
        post("/v1/events", b[6], {**signed(current, b[6], "m6"), "webhook-timestamp": "yesterday"})
    )
    rejected(post("/v1/events", b[7], {"content-type": "application/json"}))  # unsigned
    rejected(post("/v1/events", b[7], {"content-type": "application/json"}, key=INGEST_KEY))
    batch = body_of({"events": [event(8)]})
    rejected(post("/v1/events/batch", batch, signed(current, batch + b" ", "m8")))

    ok = post("/v1/events", b[9], signed(current, b[9], "m9"))
    assert ok.status_code == 201, ok.text
    replay = post("/v1/events", b[9], signed(current, b[9], "m9"))  # the sender's retry
    assert replay.status_code == 200 and replay.json() == ok.json()
    assert post("/v1/events", b[10], signed(previous, b[10], "m10")).status_code == 201
    r = post("/v1/events/batch", batch, signed(current, batch, "m8"))
    assert r.status_code == 201 and r.json()["created"] == 1

    def subject_status(i: int) -> int:
        return call("GET", f"{srv.url}/v1/subjects/{marker}-{i}", QUERY_KEY).status_code

    assert [subject_status(i) for i in range(11)] == [404] * 8 + [200, 200, 200]
    srv.stop()
    assert_no_clear_ids(marker, db, {"gunicorn output": srv.log_text()})


# ==================================================================================================
# 6. the development server's output
# ==================================================================================================


@pytest.mark.timeout(60)
def test_serve_output_shows_no_clear_subject_id(tmp_path: Path, procs: list[Any]) -> None:
    db = EventsDb("sqlite", f"sqlite:///{tmp_path / 'serve.sqlite3'}")
    marker = clear_marker(secrets.token_hex(4))
    svc = Serve(
        "serve", full_env(kti_env(tmp_path, db, tmp_path / "no-hooks", new_hook_secret())), tmp_path
    )
    procs.append(svc)
    svc.start()
    ev = make_event("ev-serve-1", "consent.granted", f"{marker}-1", BASE_TIME, random.Random(1))
    assert call("POST", svc.url + "/v1/events", INGEST_KEY, json=ev).status_code == 201
    assert call("GET", f"{svc.url}/v1/subjects/{marker}-1", QUERY_KEY).status_code == 200
    assert svc.stop(signal.SIGINT) == 0
    assert marker not in svc.log_text()


# ==================================================================================================
# Regression tests for the bugs the end-to-end tests found (fast, in process)
# ==================================================================================================


def test_outbox_bodies_are_sealed_at_rest(make_store: Any, receiver: Any) -> None:
    """Test 1 found clear ids in the SQLite file after every delivery had nulled its body: a page
    rebalance leaves copies of cells in the page's unallocated space, which secure_delete does not
    clear. Bodies are therefore stored sealed; the worker still sends the clear JSON."""
    from conftest import new_hook_secret as new_secret

    from kti_policy.hooks.delivery import Worker
    from kti_policy.hooks.subscriptions import Subscription, parse_secret
    from kti_policy.store.bodies import BodySealer

    marker = clear_marker(secrets.token_hex(4))
    secret = new_secret()
    sub = Subscription(
        "crm", receiver.url, frozenset(SUBSCRIBED), "X", secret=parse_secret(secret, "X")
    )
    store = make_store([sub])
    rnd = random.Random(7)
    store.record_events(
        [
            make_event(f"ev-{j}", "erasure.requested", f"{marker}-{j}", BASE_TIME, rnd)
            for j in range(4)
        ]
    )
    assert_no_clear_ids(marker, make_store.db, {})  # pending, yet not in the clear at rest
    with store._write() as conn:  # a body stored before sealing existed is still sent
        conn.execute(
            deliveries_t.update()
            .where(deliveries_t.c.event_id == "ev-0")
            .values(body=b'{"type":"erasure.requested","data":{"subject_id":"legacy"}}')
        )
        sealed_elsewhere = BodySealer(b"another key").seal(b'{"data":{}}')
        conn.execute(
            deliveries_t.update()
            .where(deliveries_t.c.event_id == "ev-1")
            .values(body=sealed_elsewhere)
        )
    Worker(store, schedule=(), jitter=0, timeout=5).run_once()
    bodies = {r.headers["webhook-id"]: json.loads(r.body) for r in receiver.requests}
    assert bodies["ev-0"]["data"]["subject_id"] == "legacy"
    assert "ev-1" not in bodies  # not openable: not sent, dead with a reason
    assert {bodies[e]["data"]["subject_id"] for e in ("ev-2", "ev-3")} == {
        f"{marker}-2",
        f"{marker}-3",
    }
    [d] = [d for d in store.list_deliveries() if d["event_id"] == "ev-1"]
    assert d["status"] == "dead" and "KTI_PSEUDONYM_KEY" in d["last_error"]
    sealer = BodySealer(b"k" * 32)
    for body in (b"", b"x", b"{}" * 1000):
        assert sealer.open(sealer.seal(body)) == body
    tampered = bytearray(sealer.seal(b"hello"))
    tampered[-1] ^= 1
    with pytest.raises(ValueError):
        sealer.open(bytes(tampered))


def test_receiver_answer_is_scrubbed_of_the_subject_id() -> None:
    from kti_policy.hooks.delivery import scrub_subject_id

    body = json.dumps({"type": "x", "data": {"subject_id": "Matti-\u00e4-42"}}).encode()
    assert (
        scrub_subject_id('no such customer "Matti-\u00e4-42"', body)
        == 'no such customer "<subject_id>"'
    )
    assert scrub_subject_id('{"id":"Matti-\\u00e4-42"}', body) == '{"id":"<subject_id>"}'
    assert (
        scrub_subject_id("unknown customer Matti-", body, truncated=True) == "unknown customer ..."
    )
    assert scrub_subject_id("busy", body) == "busy"
    assert scrub_subject_id("busy", b"not json") == "busy"
