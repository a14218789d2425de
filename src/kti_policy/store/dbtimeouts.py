"""Time limits on PostgreSQL, so that a database that accepts connections but answers nothing (a
network partition, a stalled proxy, a hung server) costs a request a few seconds, not a thread
for ever.

Four limits, each for a different way of hanging (``timeout`` seconds, ``KTI_DATABASE_TIMEOUT``):

- connecting: libpq's ``connect_timeout`` (psycopg enforces it on the client side);
- waiting for any answer on an open connection: ``DeadlineConnection.wait`` gives every statement
  (and the pool's pre-ping) a client-side deadline. Only the client can notice a silent server:
  ``statement_timeout`` runs on the server, and TCP keepalives are answered by whatever holds the
  other end of the socket (a proxy, a half-dead host's kernel). On expiry the connection is
  closed (its protocol state is unknown) and ``psycopg.OperationalError`` raised, which the API
  turns into deny ``eval_error`` for decisions and 503 elsewhere;
- a statement the server runs too long: ``statement_timeout`` on the server;
- a dead peer on a quiet connection: TCP keepalives and ``tcp_user_timeout``;
- a pool with every connection stuck: SQLAlchemy's ``pool_timeout``.

Migrations lift the client deadline and ``statement_timeout`` for their own connection
(``no_deadline``): they may wait on another process's migration lock.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
from psycopg import errors as pg_errors

DEFAULT_TIMEOUT = 5.0


class DeadlineConnection(psycopg.Connection):  # type: ignore[type-arg]
    """A psycopg connection whose every wait for the server has a deadline."""

    kti_deadline: float | None = DEFAULT_TIMEOUT

    def wait(self, gen: Any, interval: float = 0.1, timeout: float | None = None) -> Any:  # type: ignore[override]
        limit = timeout if timeout is not None else self.kti_deadline
        try:
            return super().wait(gen, interval=interval, timeout=limit)
        except pg_errors._WaitTimeout:
            self.pgconn.finish()  # mid-protocol: the connection cannot be used again
            raise psycopg.OperationalError(
                f"the database did not answer within {limit:g} s; connection closed"
            ) from None


def engine_arguments(timeout: float, options: str = "") -> dict[str, Any]:
    """``create_engine`` keyword arguments for PostgreSQL with these limits."""
    ms = int(timeout * 1000)
    opts = f"{options} -cstatement_timeout={ms}".strip()
    return {
        "pool_timeout": timeout,
        "connect_args": {
            "connect_timeout": max(1, int(round(timeout))),
            "options": opts,
            "keepalives": 1,
            "keepalives_idle": max(1, int(timeout)),
            "keepalives_interval": max(1, int(timeout) // 3 or 1),
            "keepalives_count": 3,
            "tcp_user_timeout": ms,
        },
    }


def install(engine: Any, timeout: float) -> None:
    """Make ``engine`` open ``DeadlineConnection``s with ``timeout`` as their deadline."""
    from sqlalchemy import event

    @event.listens_for(engine, "do_connect")
    def _connect(dialect: Any, conn_rec: Any, cargs: Any, cparams: Any) -> Any:
        conn = DeadlineConnection.connect(*cargs, **cparams)
        conn.kti_deadline = timeout
        return conn


@contextmanager
def no_deadline(dbapi_conn: Any) -> Iterator[None]:
    """Lift the client deadline on one connection (migrations); a no-op on other drivers."""
    if not isinstance(dbapi_conn, DeadlineConnection):
        yield
        return
    before = dbapi_conn.kti_deadline
    dbapi_conn.kti_deadline = None
    try:
        yield
    finally:
        dbapi_conn.kti_deadline = before
