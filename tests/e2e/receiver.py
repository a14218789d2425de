"""A real webhook receiver for end-to-end tests: a threaded HTTP server on 127.0.0.1.

It verifies every request's Standard Webhooks signature with the ``standardwebhooks`` package (the
same checks a subscriber runs: signature over ``id.timestamp.body``, timestamp within 5 minutes) and
records what it got::

    with WebhookReceiver(secret) as rx:              # secret: "whsec_..."
        ... subscribe rx.url("/hook") ...
        rx.wait_for_acked(expected_ids, timeout=60)
        rx.acked        # webhook-id -> body bytes of the first 2xx-answered request
        rx.requests     # every request, in arrival order (Seen: webhook_id, body, path, status...)
        rx.bad          # requests whose signature did not verify (answered 401)

Scripting the answers: ``rx.respond = lambda webhook_id, nth, payload: 503`` (``nth`` counts earlier
requests with that id, from 0); ``rx.hold()`` makes every new request wait before answering until
``rx.release()`` (a slow receiver, for killing a sender mid-send); ``rx.stop()`` closes the port
(connection refused) and ``rx.start()`` opens the same port again. A non-2xx answer's body is
``rx.error_body(payload)`` (by default it echoes the subject id, as chatty receivers do).
"""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from standardwebhooks.webhooks import Webhook

Responder = Callable[[str, int, dict[str, Any]], int]


@dataclass
class Seen:
    """One request as the receiver got it."""

    webhook_id: str
    body: bytes
    path: str
    headers: dict[str, str]
    verified: bool
    status: int | None = None  # what was answered (None: still held, or the sender went away)
    at: float = field(default_factory=time.monotonic)

    @property
    def payload(self) -> dict[str, Any]:
        return json.loads(self.body)  # type: ignore[no-any-return]


def _echo_subject(payload: dict[str, Any]) -> bytes:
    subject = (payload.get("data") or {}).get("subject_id")
    return json.dumps({"error": f"customer {subject} is locked, try later"}).encode()


class WebhookReceiver:
    def __init__(self, secret: str, *, host: str = "127.0.0.1", port: int = 0) -> None:
        self.secret = secret
        self.host = host
        self.port = port
        self.webhook = Webhook(secret)
        self.lock = threading.Lock()
        self.requests: list[Seen] = []
        self.bad: list[Seen] = []
        self.acked: dict[str, bytes] = {}
        self.respond: Responder = lambda _id, _nth, _payload: 200
        self.error_body: Callable[[dict[str, Any]], bytes] = _echo_subject
        self._counts: Counter[str] = Counter()
        self._gate = threading.Event()
        self._gate.set()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle

    def start(self) -> WebhookReceiver:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                receiver._handle(self)

            def log_message(self, *args: Any) -> None:
                pass

        class Server(ThreadingHTTPServer):
            daemon_threads = True
            allow_reuse_address = True
            request_queue_size = 128  # several senders with 8 connections each

        self._server = Server((self.host, self.port), Handler)
        self.port = int(self._server.server_address[1])
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Close the port: senders get 'connection refused' until ``start()``."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> WebhookReceiver:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.release()
        self.stop()

    def url(self, path: str = "/hook") -> str:
        return f"http://{self.host}:{self.port}{path}"

    def hold(self) -> None:
        self._gate.clear()

    def release(self) -> None:
        self._gate.set()

    # -- handling

    def _handle(self, h: BaseHTTPRequestHandler) -> None:
        body = h.rfile.read(int(h.headers.get("content-length") or 0))
        headers = {k.lower(): v for k, v in h.headers.items()}
        wid = headers.get("webhook-id", "")
        try:
            payload = self.webhook.verify(body, headers)
            verified = True
        except Exception:  # noqa: BLE001 - any failure is a bad signature here
            payload, verified = {}, False
        seen = Seen(wid, body, h.path, headers, verified)
        with self.lock:
            self.requests.append(seen)
            nth = self._counts[wid]
            self._counts[wid] += 1
        if not verified:
            with self.lock:
                self.bad.append(seen)
            self._answer(h, seen, 401, b'{"error":"bad signature"}')
            return
        self._gate.wait(timeout=120)
        status = self.respond(wid, nth, payload)
        if 200 <= status < 300:
            with self.lock:
                self.acked.setdefault(wid, body)
            self._answer(h, seen, status, b"")
        else:
            self._answer(h, seen, status, self.error_body(payload))

    @staticmethod
    def _answer(h: BaseHTTPRequestHandler, seen: Seen, status: int, payload: bytes) -> None:
        try:
            h.send_response(status)
            h.send_header("content-type", "application/json")
            h.send_header("content-length", str(len(payload)))
            h.end_headers()
            h.wfile.write(payload)
            seen.status = status
        except OSError:  # the sender is gone (killed mid-send)
            pass

    # -- queries

    def snapshot(self) -> list[Seen]:
        with self.lock:
            return list(self.requests)

    def acked_ids(self) -> set[str]:
        with self.lock:
            return set(self.acked)

    def wait_for_acked(self, ids: Iterable[str], timeout: float) -> set[str]:
        """Wait until every id was answered 2xx; return those still missing (empty: all there)."""
        wanted = set(ids)
        deadline = time.monotonic() + timeout
        while True:
            missing = wanted - self.acked_ids()
            if not missing or time.monotonic() > deadline:
                return missing
            time.sleep(0.05)

    def wait_until(self, predicate: Callable[[list[Seen]], bool], timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate(self.snapshot()):
                return True
            time.sleep(0.02)
        return predicate(self.snapshot())
