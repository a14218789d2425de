"""A total deadline for one outgoing HTTP exchange (webhook deliveries).

``requests``' ``timeout`` bounds each socket read, not the exchange: a receiver that drips one
byte a second holds an attempt for as long as it likes (20 s with a 2 s timeout in issue 13). The
session from ``deadline_session()`` remembers which connections the current thread is using, and
``Deadline`` shuts their sockets down when the time is up, so the blocked read returns at once
and the attempt fails as a timeout.
"""

from __future__ import annotations

import socket
import threading
from types import TracebackType
from typing import Any

import requests
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

_local = threading.local()


def _register(conn: Any) -> None:
    active = getattr(_local, "active", None)
    if active is not None:
        active.append(conn)


class _TrackedHTTPConnection(HTTPConnection):
    def request(self, *args: Any, **kwargs: Any) -> None:  # type: ignore[override]
        _register(self)
        super().request(*args, **kwargs)


class _TrackedHTTPSConnection(HTTPSConnection):
    def request(self, *args: Any, **kwargs: Any) -> None:  # type: ignore[override]
        _register(self)
        super().request(*args, **kwargs)


class _TrackedHTTPPool(HTTPConnectionPool):
    ConnectionCls = _TrackedHTTPConnection


class _TrackedHTTPSPool(HTTPSConnectionPool):
    ConnectionCls = _TrackedHTTPSConnection


class _TrackingAdapter(HTTPAdapter):
    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = {"http": _TrackedHTTPPool, "https": _TrackedHTTPSPool}


def deadline_session() -> requests.Session:
    """A ``requests.Session`` whose connections a ``Deadline`` can cut."""
    session = requests.Session()
    adapter = _TrackingAdapter()
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    return session


class Deadline:
    """``with Deadline(seconds) as d:`` around one exchange on a ``deadline_session``; when it
    expires, the sockets used inside are shut down and ``d.expired`` is True."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.expired = False
        self._conns: list[Any] = []
        self._timer = threading.Timer(seconds, self._expire)
        self._timer.daemon = True

    def _expire(self) -> None:
        self.expired = True
        for conn in list(self._conns):
            sock = getattr(conn, "sock", None)
            if sock is not None:
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def __enter__(self) -> Deadline:
        _local.active = self._conns
        self._timer.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._timer.cancel()
        _local.active = None
        if self.expired:  # a cut connection must not go back to the pool for the next attempt
            for conn in self._conns:
                conn.close()
