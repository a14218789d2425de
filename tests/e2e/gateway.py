"""A real HTTP gateway in front of a real server, for the failures a client meets on the way.

Load balancers answer ``503`` (with ``Retry-After``) while a service restarts; a test needs that
answer from a real socket, and then the real service behind it. ``Gateway(upstream)`` listens on a
free loopback port, answers the first ``fail_first`` requests itself with ``fail_status`` (and
``Retry-After: retry_after`` when given), and forwards every other request to ``upstream``
unchanged. ``requests`` lists ``(time, method, path, status)`` of everything it saw.
"""

from __future__ import annotations

import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import requests


class Gateway:
    def __init__(self, upstream: str, *, fail_first: int = 0, fail_status: int = 503,
                 retry_after: str | None = None) -> None:
        self.upstream = upstream.rstrip("/")
        self.fail_first = fail_first
        self.fail_status = fail_status
        self.retry_after = retry_after
        self.requests: list[tuple[float, str, str, int]] = []
        self._lock = threading.Lock()
        gateway = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _handle(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length") or 0))
                with gateway._lock:
                    failing = gateway.fail_first > 0
                    if failing:
                        gateway.fail_first -= 1
                if failing:
                    status, headers, payload = gateway._failure()
                else:
                    status, headers, payload = gateway._forward(self.command, self.path,
                                                                dict(self.headers), body)
                with gateway._lock:
                    gateway.requests.append((time.monotonic(), self.command, self.path, status))
                self.send_response(status)
                for k, v in headers.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            do_GET = do_POST = _handle

            def log_message(self, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def _failure(self) -> tuple[int, dict[str, str], bytes]:
        headers = {"Content-Type": "text/plain"}
        if self.retry_after is not None:
            headers["Retry-After"] = self.retry_after
        return self.fail_status, headers, b"service unavailable (gateway)"

    def _forward(self, method: str, path: str, headers: dict[str, str],
                 body: bytes) -> tuple[int, dict[str, str], bytes]:
        keep = {k: v for k, v in headers.items()
                if k.lower() in ("content-type", "authorization", "x-api-key", "accept-language")}
        resp = requests.request(method, self.upstream + path, headers=keep, data=body, timeout=30)
        return resp.status_code, {"Content-Type": resp.headers.get("Content-Type", "")}, resp.content

    def statuses(self) -> list[int]:
        with self._lock:
            return [s for _, _, _, s in self.requests]

    def __enter__(self) -> Gateway:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
