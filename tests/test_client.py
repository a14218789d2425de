"""``kti_policy.client`` against a real gunicorn (no mocks): results, typed errors, fail-closed, retries.

The failure cases use real sockets too: a server that was stopped (connection refused), a socket
that accepts and never answers (timeout), and ``e2e.gateway.Gateway``, a real HTTP gateway that
answers 503 before it forwards to the real service.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
from e2e.gateway import Gateway
from e2e.server import GunicornServer

from kti_policy.client import (
    AsyncClient,
    BadRequest,
    Client,
    Conflict,
    Decision,
    Denied,
    Forbidden,
    Obligation,
    Reason,
    Unauthorized,
    Unavailable,
)

KEYS = "q-key:query,i-key:ingest,qi-key:query+ingest"
AUTHORITY = {"type": "authority", "country": "FI"}
LEGAL = {"type": "legal_obligation", "reference": "Ulosottokaari 3:64"}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GunicornServer]:
    with GunicornServer(tmp_path_factory.mktemp("client"), {"KTI_API_KEYS": KEYS}, workers=1) as srv:
        yield srv


@pytest.fixture
def kti(server: GunicornServer) -> Iterator[Client]:
    with Client(server.url, api_key="qi-key", timeout=5) as client:
        yield client


def new_id() -> str:
    return f"c-{uuid.uuid4().hex[:12]}"


def test_allow_is_a_typed_decision(kti: Client) -> None:
    d = kti.decide(operation="disclose", data_categories=["email"], subject=new_id(),
                   recipient=AUTHORITY, legal_basis=LEGAL)
    assert isinstance(d, Decision) and d.allowed and d.decision == "allow"
    assert d.rules == ["disclosure.authority"]
    assert isinstance(d.reasons[0], Reason) and d.reasons[0].effect == "permit"
    assert d.decision_id and d.decision_id.startswith("dec_") and d.policy_version
    assert d.evaluated_at is not None and not d.unavailable


def test_deny_with_reasons_and_obligations_in_finnish(server: GunicornServer) -> None:
    with Client(server.url, api_key="q-key", language="fi") as kti:
        d = kti.decide({"operation": "disclose", "recipient": {"type": "third_party", "country": "FI"}},
                       subject=new_id())
        assert not d.allowed and d.rules == ["disclosure.other"]
        assert d.reasons[0].effect == "forbid" and d.reasons[0].message
        assert d.reasons[0].message != kti_en_message(server, d)  # the fi text, not the en one
        r = kti.decide(operation="subject_request", subject=new_id(),
                       request={"type": "access", "received_at": "2027-01-31T10:00:00+02:00"})
        due = [o for o in r.obligations if o.type == "respond_by"]
        assert due and isinstance(due[0], Obligation) and isinstance(due[0].due, date)


def kti_en_message(server: GunicornServer, d: Decision) -> str:
    with Client(server.url, api_key="q-key", language="en") as en:
        return en.decide(operation="disclose", recipient={"type": "third_party", "country": "FI"},
                         subject="x").reasons[0].message


def test_events_change_decisions_and_subject_reads_them(kti: Client) -> None:
    sid = new_id()
    assert kti.subject(sid) is None
    assert kti.decide(operation="process", purpose="direct_marketing", subject=sid).allowed
    when = datetime.now(UTC) - timedelta(minutes=1)
    first = kti.record_event("objection.registered", sid, {"scope": "direct_marketing"},
                             id=f"evt-{sid}", occurred_at=when)
    again = kti.record_event("objection.registered", sid, {"scope": "direct_marketing"},
                             id=f"evt-{sid}", occurred_at=when)
    assert first.created and not again.created and again.id == first.id
    view = kti.subject(sid)
    assert view is not None and view.objections == ("direct_marketing",)
    assert sid not in view.subject_key and len(view.history) == 1
    with pytest.raises(Conflict):  # the same id with other content
        kti.record_event("objection.registered", sid, {"scope": "disclosure"}, id=f"evt-{sid}",
                         occurred_at=when)
    d = kti.decide(operation="process", purpose="direct_marketing", subject=sid)
    assert not d.allowed and d.rules == ["processing.objected_marketing"]


def test_decide_many_in_order(kti: Client) -> None:
    got = kti.decide_many([
        {"operation": "disclose", "recipient": AUTHORITY, "legal_basis": LEGAL, "subject": "a"},
        {"operation": "disclose", "recipient": {"type": "third_party", "country": "FI"}, "subject": "b"},
    ])
    assert [d.allowed for d in got] == [True, False]


def test_a_400_is_a_typed_error_naming_the_field(kti: Client) -> None:
    with pytest.raises(BadRequest) as unknown:
        kti.decide(operation="disclose", recipient={"type": "nope", "country": "FI"}, subject="c-1")
    assert unknown.value.status == 400 and unknown.value.code == "unknown_vocabulary_id"
    assert unknown.value.field == "recipient.type" and "authority" in unknown.value.details["known"]
    with pytest.raises(BadRequest) as shape:
        kti.decide(operation="disclose", recipient=AUTHORITY, subject="c-1", data_categories="email")
    assert shape.value.field == "data_categories"
    with pytest.raises(BadRequest) as event:
        kti.record_event("objection.registered", "c-1", {"scope": "nope"})
    assert event.value.field and "scope" in event.value.field


def test_auth_errors_are_raised_not_retried(server: GunicornServer) -> None:
    with Gateway(server.url) as gw:
        with Client(gw.url, api_key="wrong", retries=3) as kti, pytest.raises(Unauthorized):
            kti.decide(operation="delete", subject="c-1")
        with Client(gw.url, api_key="i-key", retries=3) as kti, pytest.raises(Forbidden):
            kti.decide(operation="delete", subject="c-1")
        with Client(gw.url, api_key="q-key", retries=3) as kti, pytest.raises(BadRequest):
            kti.decide(operation="nope", subject="c-1")
        assert gw.statuses() == [401, 403, 400]  # one attempt each


def test_503_is_retried_honouring_retry_after(server: GunicornServer) -> None:
    with Gateway(server.url, fail_first=2, retry_after="1") as gw:
        with Client(gw.url, api_key="q-key", retries=2, backoff=0.01) as kti:
            started = time.monotonic()
            d = kti.decide(operation="delete", subject=new_id())
            elapsed = time.monotonic() - started
    assert d.allowed and not d.unavailable
    assert gw.statuses() == [503, 503, 200]
    assert elapsed >= 2.0  # waited the asked second twice, not the 10 ms backoff
    times = [t for t, *_ in gw.requests]
    assert times[1] - times[0] >= 0.95 and times[2] - times[1] >= 0.95


def test_503_beyond_the_retries_fails_closed(server: GunicornServer,
                                            caplog: pytest.LogCaptureFixture) -> None:
    sid = new_id()
    with Gateway(server.url, fail_first=10, retry_after="30") as gw:
        with Client(gw.url, api_key="q-key", retries=3, max_wait=5) as kti:
            started = time.monotonic()
            with caplog.at_level(logging.WARNING, logger="kti_policy.client"):
                d = kti.decide(operation="process", purpose="direct_marketing", subject=sid)
            assert time.monotonic() - started < 2  # a Retry-After of 30 s is not waited for
        with Client(gw.url, api_key="q-key", retries=1, backoff=0.01, on_error="raise") as kti:
            with pytest.raises(Unavailable) as raised:
                kti.decide(operation="delete", subject=sid)
    assert raised.value.status == 503
    assert not d.allowed and d.unavailable and d.rules == ["unavailable"] and d.decision_id is None
    assert gw.statuses() == [503, 503]  # Client 1: one (the wait was refused); client 2: one
    assert "unavailable" in caplog.text and "direct_marketing" in caplog.text
    assert sid not in caplog.text  # the log never names the subject


def test_stopped_server_gives_unavailable_within_the_timeout(tmp_path: Path) -> None:
    srv = GunicornServer(tmp_path / "srv", workers=1).start()
    with Client(srv.url, timeout=1.0, retries=2, backoff=0.05) as kti:
        assert kti.decide(operation="delete", subject="c-1").allowed
        srv.stop()
        started = time.monotonic()
        d = kti.decide(operation="delete", subject="c-1")
        elapsed = time.monotonic() - started
        many = kti.decide_many([{"operation": "delete", "subject": "a"},
                                {"operation": "delete", "subject": "b"}])
    assert not d.allowed and d.unavailable and d.reasons[0].effect == "forbid"
    assert elapsed < 1.0  # refused connections: three quick attempts, no timeout to wait for
    assert [m.unavailable for m in many] == [True, True]
    with Client(srv.url, retries=0, on_error="raise") as kti, pytest.raises(Unavailable):
        kti.decide(operation="delete", subject="c-1")


def test_a_silent_server_is_cut_off_at_the_timeout() -> None:
    # accepts connections (the kernel's backlog) but never answers
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        url = f"http://127.0.0.1:{silent.getsockname()[1]}"
        with Client(url, timeout=0.3, retries=1, backoff=0.01) as kti:
            started = time.monotonic()
            d = kti.decide(operation="delete", subject="c-1")
            elapsed = time.monotonic() - started
    assert d.unavailable and not d.allowed
    assert 0.55 <= elapsed < 1.5  # two attempts of 0.3 s each, and no more


def test_requires_runs_only_what_is_allowed(kti: Client) -> None:
    sid = new_id()
    kti.record_event("objection.registered", sid, {"scope": "direct_marketing"})
    sent: list[str] = []

    class Customer:
        def __init__(self, id: str) -> None:
            self.id = id

    @kti.requires(operation="process", purpose="direct_marketing", subject=lambda c: c.id)
    def send_offer(customer: Customer) -> str:
        sent.append(customer.id)
        return "sent"

    assert send_offer(Customer("someone-else")) == "sent"
    with pytest.raises(Denied) as denied:
        send_offer(Customer(sid))
    assert sent == ["someone-else"]
    assert denied.value.decision.rules == ["processing.objected_marketing"]

    with kti.requires(operation="delete", subject=sid) as decision:
        assert decision.allowed
    ran = False
    with pytest.raises(Denied):
        with kti.requires(operation="process", purpose="direct_marketing", subject=sid):
            ran = True
    assert not ran
    with pytest.raises(TypeError):
        with kti.requires(operation="delete", subject=lambda: "x"):
            pass


def test_async_client(server: GunicornServer, tmp_path: Path) -> None:
    async def run() -> None:
        sid = new_id()
        async with AsyncClient(server.url, api_key="qi-key") as kti:
            allowed, denied = await asyncio.gather(
                kti.decide(operation="disclose", recipient=AUTHORITY, legal_basis=LEGAL,
                           subject=sid),
                kti.decide(operation="disclose", recipient={"type": "third_party", "country": "FI"}, subject=sid),
            )
            assert allowed.allowed and not denied.allowed
            event = await kti.record_event("consent.granted", sid, {"purpose": "disclosure"})
            assert event.created
            view = await kti.subject(sid)
            assert view is not None and view.consents == ("disclosure",)
            assert (await kti.decide_many([{"operation": "disclose", "subject": sid,
                                            "recipient": {"type": "third_party", "country": "FI"}}]))[0].allowed

            @kti.requires(operation="process", purpose="site_statistics", subject=sid, data_categories=["health"])
            async def research() -> str:
                return "ran"

            with pytest.raises(Denied):
                await research()
            async with kti.requires(operation="delete", subject=sid) as d:
                assert d.allowed
            with pytest.raises(BadRequest):
                await kti.decide(operation="nope", subject=sid)
        async with AsyncClient("http://127.0.0.1:9", retries=1, backoff=0.01) as down:
            assert (await down.decide(operation="delete", subject=sid)).unavailable

    asyncio.run(run())


def test_the_client_does_not_import_flask() -> None:
    import subprocess
    import sys

    code = "import sys, kti_policy.client; print('flask' in sys.modules, 'durable' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]
