"""Durable storage for subject events, facts and the webhook outbox (SQLAlchemy 2, Alembic).

Public API::

    store = Store.from_config(config)            # KTI_DATABASE_URL, KTI_PSEUDONYM_KEY, KTI_HOOKS_DIR,
                                                 # KTI_INSTANCE_DIR; secrets from ``environ``
    store = Store(url, pseudonymizer, subscriptions, schema=None)

    store.record_events(events, vocabulary=None) -> list[RecordResult]   # validated, idempotent on id
    store.facts_for(subject_id) -> SubjectFacts                          # facts cache, else indexed query + fold
    store.facts_for_many(subject_ids) -> {id: SubjectFacts}              # the same, one query for the misses
    store.subject_view(subject_id) -> dict | None                        # facts + history, keyed hash only
    store.list_deliveries(status=None, limit=100) -> list[dict]          # with their attempt log
    store.retry_delivery(delivery_id) -> dict                            # dead -> pending, due now
    store.outbox_stats() -> dict                                         # depth, oldest pending age, dead
    store.ping(); store.close()
    # used by the delivery worker (kti_policy.hooks.delivery):
    store.claim_due(limit, lease_seconds) -> list[Claim]; store.complete_attempt(claim, ...)

Databases: SQLite by default (``./instance/kti.sqlite3``; WAL, ``busy_timeout``, ``secure_delete`` and
foreign keys on every connection; write transactions start with ``BEGIN IMMEDIATE`` so that concurrent
writers queue instead of failing), or PostgreSQL through a ``postgresql://`` URL (psycopg 3). ``schema``
puts every table in that PostgreSQL schema (tests use one fresh schema each). Migrations (Alembic,
shipped inside the package) run on open, under a lock, so several processes may start at once.

What is stored: ``events`` keep the event id, type, the subject's keyed hash (``pseudonym``), the times
and the data (purpose/scope ids, flags), never the clear subject id. Facts are derived on read from a
subject's events with ``facts.fold_events`` (later ``occurred_at`` wins, ties by arrival, an erasure is
never undone), so there is no projection to drift. Folded facts are kept in memory per process
(``factcache``) while the sum of ``facts_version`` is unchanged: triggers on ``events`` (migration
0003) add one to it for every row inserted, updated or deleted, in that transaction, whoever writes. ``deliveries`` is the outbox: one row per
(subscription, event), inserted in the same transaction as the event, holding the exact body bytes to
send, which are the only place the clear subject id exists; the body is set to NULL when the delivery
succeeds (dead deliveries keep it so that they can be retried). ``delivery_attempts`` logs each try.
Bodies are stored sealed (``BodySealer``: encrypted and authenticated with a key derived from the
pseudonym key) and opened in ``claim_due``: setting a body to NULL does not remove every copy from the
files (SQLite leaves copies of cells in the unallocated space of a page it rebalances, which
``secure_delete`` does not clear; WAL frames and PostgreSQL's dead row versions stay for a while), so
the clear id must never reach the files in the first place.

Validation follows CONTRACT section 3: unknown types, unknown or missing data fields and ids the
vocabulary does not know are ``RequestError``/``UnknownVocabularyId`` naming the field (``events[i].``
in batches). The same id with the same content is a no-op (``created=False``, the original record);
with different content it is ``EventConflict`` (409). Event ids are the outgoing ``webhook-id``, so they
are limited to letters, digits, ``_``, ``-`` and ``:`` (no dots), at most 128 characters.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import secrets
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Protocol, Self

import orjson
import sqlalchemy as sa
from sqlalchemy import event as sa_event
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import IntegrityError, OperationalError

from kti_policy.errors import EventConflict, NotFound, RequestError
from kti_policy.facts.fold import FactEvent, SubjectFacts, fold_events

from . import dbtimeouts
from . import metrics_events as metrics
from .bodies import BodySealer, webhook_body
from .factcache import DEFAULT_SIZE as DEFAULT_FACTS_CACHE_SIZE
from .factcache import FactsCache
from .fileperms import private_dir, private_sqlite
from .pseudonym import Pseudonymizer, instance_dir, pseudonymizer_from_config
from .queries import (
    _FACTS_OF_MANY,
    _FACTS_OF_ONE,
    _FACTS_VERSION,
    SharedReader,
    _DriverQuery,
    _FactRow,
    _VersionRow,
    driver_cursor,
)
from .tables import STATUSES, _iso, attempts_t, deliveries_t, events_t, utcnow
from .validation import EVENT_TYPES, NewEvent, validate_event

log = logging.getLogger(__name__)

MIGRATIONS_DIR = Path(__file__).with_name("migrations")
MAX_BATCH = 1000
DEFAULT_DB_TIMEOUT = dbtimeouts.DEFAULT_TIMEOUT  # seconds; KTI_DATABASE_TIMEOUT


# called inside record_events' transaction for each new event (see Store.add_event_hook)
EventHook = Callable[[Connection, "NewEvent", int, datetime], int]










# Subject keys per IN (...) query: well under SQLite's and psycopg's parameter limits.
_IN_CHUNK = 500


def _lock_key(event_id: str) -> int:
    return int.from_bytes(hashlib.sha256(event_id.encode()).digest()[:8], "big", signed=True)


def _canonical(data: Mapping[str, Any]) -> str:
    return json.dumps(data, sort_keys=True, separators=(",", ":"))


@dataclass(frozen=True)
class RecordResult:
    """What ``record_events`` did with one event. ``event`` is the stored record (no clear id)."""

    created: bool
    event: dict[str, Any]
    deliveries: int = 0

    @property
    def event_id(self) -> str:
        return str(self.event["id"])

    def to_dict(self) -> dict[str, Any]:
        return dict(self.event)


@dataclass(frozen=True)
class Claim:
    """A delivery claimed by one worker until ``claimed_until`` (its lease)."""

    id: int
    subscription_id: str
    event_id: str
    body: bytes
    attempts: int  # attempts made before this one
    claim_token: str
    claimed_until: datetime


@dataclass(frozen=True)
class AttemptOutcome:
    """What one delivery attempt did, as the worker reports it to ``complete_attempts``."""

    claim: Claim
    attempted_at: datetime
    duration_ms: float
    status_code: int | None
    error: str | None
    delivered: bool
    next_attempt_at: datetime | None  # None and not delivered: dead

    @property
    def outcome(self) -> str:
        if self.delivered:
            return "delivered"
        return "failed" if self.next_attempt_at is not None else "dead"


def _event_record(row: Any) -> dict[str, Any]:
    return {
        "id": row.event_id,
        "type": row.type,
        "subject_key": row.subject_key,
        "occurred_at": _iso(row.occurred_at),
        "received_at": _iso(row.received_at),
        "sequence": row.seq,
        "data": json.loads(row.data),
    }


def normalize_url(url: str) -> str:
    """``postgresql://`` and ``postgres://`` mean psycopg 3; other URLs pass unchanged."""
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


def default_url(config: Mapping[str, Any]) -> str:
    folder = instance_dir(config)
    return f"sqlite:///{folder / 'kti.sqlite3'}"


class Subscriber(Protocol):
    """What the store needs of a webhook subscription (``kti_policy.hooks.subscriptions``): its id
    and which event types it wants. The store is handed them; it imports nothing from hooks."""

    @property
    def id(self) -> str: ...

    def wants(self, event_type: str) -> bool: ...


class Store:
    """Events, facts and the outbox in one database. Thread-safe; one instance per process."""

    def __init__(
        self,
        url: str,
        pseudonymizer: Pseudonymizer,
        subscriptions: Sequence[Subscriber] = (),
        *,
        schema: str | None = None,
        migrate: bool = True,
        pool_size: int = 10,
        db_timeout: float = DEFAULT_DB_TIMEOUT,
        facts_cache_size: int = DEFAULT_FACTS_CACHE_SIZE,
    ) -> None:
        self.url = normalize_url(url)
        self.pseudonymizer = pseudonymizer
        self.subscriptions: list[Subscriber] = list(subscriptions)
        self.schema = schema
        # the pseudonym key's bytes (the same module family; Pseudonymizer keeps them private)
        self.sealer = BodySealer(pseudonymizer._key)
        self.engine = self._make_engine(self.url, schema, pool_size, db_timeout)
        self.is_sqlite = self.engine.dialect.name == "sqlite"
        self._facts_read = _DriverQuery(_FACTS_OF_ONE, self.engine.dialect, _FactRow)
        self._version_read = _DriverQuery(_FACTS_VERSION, self.engine.dialect, _VersionRow)
        self.facts_cache = FactsCache(facts_cache_size)
        self._shared_reader = SharedReader() if self.is_sqlite else None
        self._outbox_listeners: list[Callable[[], None]] = []
        self._event_hooks: list[EventHook] = []
        if migrate:
            self.migrate()

    @classmethod
    def from_config(
        cls, config: Mapping[str, Any], environ: Mapping[str, str] | None = None
    ) -> Self:
        """Build from ``KTI_DATABASE_URL``, ``KTI_PSEUDONYM_KEY``, ``KTI_HOOKS_DIR`` (CONTRACT 7).

        Webhook secrets are read from ``environ`` (default: ``config``, then ``os.environ`` as it is
        now); a subscription whose secret variable is unset is skipped with a warning.
        """
        import os

        env: Mapping[str, str] = environ if environ is not None else {**os.environ, **config}
        url = str(config.get("KTI_DATABASE_URL") or default_url(config))
        private_dir(instance_dir(config))  # the key file and the SQLite file live here
        return cls(
            url,
            pseudonymizer_from_config(config),
            cls.subscriptions_from_config(config, env),
            schema=config.get("KTI_DATABASE_SCHEMA") or None,
            db_timeout=float(config.get("KTI_DATABASE_TIMEOUT") or DEFAULT_DB_TIMEOUT),
            facts_cache_size=int(config.get("KTI_FACTS_CACHE_SIZE", DEFAULT_FACTS_CACHE_SIZE)),
        )

    @classmethod
    def subscriptions_from_config(
        cls, config: Mapping[str, Any], environ: Mapping[str, str]
    ) -> Sequence[Subscriber]:
        """The subscriptions ``from_config`` fans events out to: none here, the store imports
        nothing from hooks; ``kti_policy.hooks.fanout.Store`` reads them from ``KTI_HOOKS_DIR``."""
        return ()

    # -- connections

    @staticmethod
    def _make_engine(
        url: str, schema: str | None, pool_size: int, db_timeout: float = DEFAULT_DB_TIMEOUT
    ) -> Engine:
        if url.startswith("sqlite"):
            db = sa.engine.make_url(url).database
            if db and db != ":memory:" and not db.startswith("file:"):
                private_sqlite(Path(db))
            # LIFO: the decision path's reads reuse the connection used last, whose page and
            # statement caches are warm
            engine = sa.create_engine(
                url, pool_size=pool_size, max_overflow=2 * pool_size, connect_args={"timeout": 30},
                pool_use_lifo=True,
            )

            @sa_event.listens_for(engine, "connect")
            def _sqlite_connect(dbapi_conn: Any, _record: Any) -> None:
                dbapi_conn.isolation_level = None  # we issue BEGIN ourselves (see _sqlite_begin)
                cur = dbapi_conn.cursor()
                for pragma in (
                    "PRAGMA busy_timeout=30000",
                    "PRAGMA journal_mode=WAL",
                    "PRAGMA secure_delete=ON",
                    "PRAGMA foreign_keys=ON",
                ):
                    cur.execute(pragma)
                cur.close()

            @sa_event.listens_for(engine, "begin")
            def _sqlite_begin(conn: Connection) -> None:
                options = conn.get_execution_options()
                if options.get("kti_single_statement"):
                    return  # one SELECT in autocommit mode is already its own consistent snapshot
                conn.exec_driver_sql("BEGIN IMMEDIATE" if options.get("kti_write") else "BEGIN")

            return engine
        options = ""
        if schema:
            if not re.match(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$", schema):
                raise ValueError(f"bad schema name {schema!r}")
            options = f"-csearch_path={schema}"
        engine = sa.create_engine(
            url,
            pool_size=pool_size,
            max_overflow=2 * pool_size,
            pool_pre_ping=True,
            **dbtimeouts.engine_arguments(db_timeout, options),
        )
        dbtimeouts.install(engine, db_timeout)  # a silent database fails within db_timeout
        return engine

    @contextmanager
    def _write(self) -> Iterator[Connection]:
        """A write transaction (``BEGIN IMMEDIATE`` on SQLite: writers queue on busy_timeout)."""
        with self.engine.connect() as conn:
            conn.execution_options(kti_write=True)
            with conn.begin():
                yield conn

    @contextmanager
    def _read(self, single_statement: bool = False) -> Iterator[Connection]:
        """A read transaction; ``single_statement`` skips SQLite's BEGIN/COMMIT round trips.

        For blocks that run one SELECT (a subject's view, a batch's facts in one chunk): on SQLite
        the explicit BEGIN and COMMIT around it cost more than the query (py-spy,
        bench/http_bench.py), and one statement is its own consistent snapshot anyway.
        """
        with self.engine.connect() as conn:
            if single_statement:
                conn.execution_options(kti_single_statement=True)
            with conn.begin():
                yield conn

    def migrate(self) -> None:
        """Bring the schema to the newest revision (idempotent; safe with concurrent starts)."""
        from alembic import command
        from alembic.config import Config

        cfg = Config()
        cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
        with self._write() as conn, dbtimeouts.no_deadline(conn.connection.dbapi_connection):
            if not self.is_sqlite:
                conn.execute(sa.text("SET LOCAL statement_timeout = 0"))  # may wait for the lock
                conn.execute(sa.text("SELECT pg_advisory_xact_lock(hashtext(current_schema()))"))
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, "head")

    def add_outbox_listener(self, callback: Callable[[], None]) -> None:
        """Call ``callback()`` after a commit that made deliveries due (wakes in-process workers)."""
        self._outbox_listeners.append(callback)

    def add_event_hook(self, hook: EventHook) -> None:
        """Call ``hook(conn, event, seq, now)`` for each newly recorded event, inside the
        transaction that records it (the obligations register opens cases there); it returns the
        number of outbox rows it added. A raising hook rolls the whole batch back."""
        self._event_hooks.append(hook)

    def _notify_outbox(self) -> None:
        for callback in self._outbox_listeners:
            callback()

    def ping(self) -> bool:
        """True when the database answers (raises otherwise)."""
        with self.engine.connect() as conn:
            conn.execute(sa.text("SELECT 1"))
        return True

    def close(self) -> None:
        if self._shared_reader is not None:
            self._shared_reader.close()
        self.engine.dispose()

    # -- events

    def record_events(
        self,
        events: Sequence[Any],
        vocabulary: Mapping[str, Collection[str]] | None = None,
        *,
        batch: bool | None = None,
    ) -> list[RecordResult]:
        """Validate and record events, all or none, with their outbox rows, in one transaction.

        ``vocabulary`` maps ``consent_purpose``/``objection_scope`` to the known ids (default: the
        contract's). ``batch`` (default: more than one event) prefixes error fields with
        ``events[i].``. Raises ``RequestError``/``UnknownVocabularyId``/``EventConflict``.
        """
        if not isinstance(events, (list, tuple)):
            raise RequestError("events: must be a list", {"field": "events"})
        if len(events) > MAX_BATCH:
            raise RequestError(f"events: at most {MAX_BATCH} events per batch", {"field": "events"})
        is_batch = len(events) > 1 if batch is None else batch
        prepared = [
            validate_event(
                raw,
                vocabulary,
                prefix=f"events[{i}]." if is_batch else "",
                index=i if is_batch else None,
            )
            for i, raw in enumerate(events)
        ]
        for attempt in range(3):
            try:
                results = self._insert_events(prepared, is_batch)
                break
            except (IntegrityError, OperationalError) as exc:
                # The insert skips conflicts and ids are locked in one order, so these are rare
                # races; a retry sees the other transaction's rows and answers "duplicate".
                retryable = isinstance(exc, IntegrityError) or getattr(
                    exc.orig, "sqlstate", None
                ) in ("40P01", "40001")
                if attempt == 2 or not retryable:
                    raise
        if any(r.deliveries for r in results):
            self._notify_outbox()
        for r in results:
            metrics.EVENTS_RECORDED.labels(
                type=r.event["type"], result="created" if r.created else "duplicate"
            ).inc()
        return results

    def _insert_stmt(self, values: dict[str, Any]) -> Any:
        from sqlalchemy.dialects import postgresql, sqlite

        dialect_insert: Any = sqlite.insert if self.is_sqlite else postgresql.insert
        return (
            dialect_insert(events_t)
            .values(**values)
            .on_conflict_do_nothing(index_elements=["event_id"])
            .returning(events_t.c.seq)
        )

    def _insert_events(self, prepared: list[NewEvent], is_batch: bool) -> list[RecordResult]:
        results: list[RecordResult] = []
        with self._write() as conn:
            if not self.is_sqlite and len(prepared) > 1:
                # Two batches sharing ids in different orders would deadlock on the unique index:
                # take a lock per id in one global order first (SQLite serialises writers anyway).
                keys = sorted({_lock_key(ev.event_id) for ev in prepared})
                conn.execute(
                    sa.text(
                        "SELECT count(pg_advisory_xact_lock(k)) "
                        "FROM unnest(CAST(:keys AS bigint[])) AS k"
                    ),
                    {"keys": keys},
                )
            for i, ev in enumerate(prepared):
                now = utcnow()
                subject_key = self.pseudonymizer.subject_key(ev.subject_id)
                data_text = _canonical(ev.data)
                seq = conn.execute(
                    self._insert_stmt(
                        {
                            "event_id": ev.event_id,
                            "type": ev.type,
                            "subject_key": subject_key,
                            "occurred_at": ev.occurred_at,
                            "received_at": now,
                            "data": data_text,
                        }
                    )
                ).scalar()
                if seq is None:
                    row = conn.execute(
                        sa.select(events_t).where(events_t.c.event_id == ev.event_id)
                    ).one()
                    same = (
                        row.type == ev.type
                        and row.subject_key == subject_key
                        and row.occurred_at == ev.occurred_at
                        and row.data == data_text
                    )
                    if not same:
                        field_name = f"events[{i}].id" if is_batch else "id"
                        details: dict[str, Any] = {"field": field_name, "id": ev.event_id}
                        if is_batch:
                            details["index"] = i
                        raise EventConflict(
                            f"{field_name}: event {ev.event_id!r} was already recorded with "
                            "different content; event ids are for idempotency and must not be reused",
                            details,
                        )
                    results.append(RecordResult(False, _event_record(row)))
                    continue
                subs = [s for s in self.subscriptions if s.wants(ev.type)]
                if subs:
                    body = webhook_body(ev, seq, now)
                    conn.execute(
                        deliveries_t.insert(),
                        [
                            {
                                "subscription_id": s.id,
                                "event_seq": seq,
                                "event_id": ev.event_id,
                                "event_type": ev.type,
                                "status": "pending",
                                "body": self.sealer.seal(body),
                                "attempts": 0,
                                "next_attempt_at": now,
                                "created_at": now,
                            }
                            for s in subs
                        ],
                    )
                added = sum(hook(conn, ev, seq, now) for hook in self._event_hooks)
                record = {
                    "id": ev.event_id,
                    "type": ev.type,
                    "subject_key": subject_key,
                    "occurred_at": _iso(ev.occurred_at),
                    "received_at": _iso(now),
                    "sequence": seq,
                    "data": json.loads(data_text),
                }
                results.append(RecordResult(True, record, len(subs) + added))
        return results

    def _subject_rows(self, subject_id: str) -> list[Any]:
        key = self.pseudonymizer.subject_key(subject_id)
        with self._read(single_statement=True) as conn:
            return list(
                conn.execute(
                    sa.select(events_t)
                    .where(events_t.c.subject_key == key)
                    .order_by(events_t.c.occurred_at, events_t.c.seq)
                )
            )

    @staticmethod
    def _fold(rows: list[Any], at: datetime | None = None) -> SubjectFacts:
        return fold_events(
            (FactEvent(type=r.type, occurred_at=r.occurred_at, data=orjson.loads(r.data), seq=r.seq) for r in rows),
            at,
        )

    def facts_for(self, subject_id: str) -> SubjectFacts:
        """The recorded facts of a subject (empty facts when nothing is recorded)."""
        return self.facts_for_many([subject_id])[subject_id]

    def facts_for_many(
        self, subject_ids: Iterable[str], pseudonyms: Mapping[str, str] | None = None
    ) -> dict[str, SubjectFacts]:
        """The recorded facts of each subject now (empty facts for one with no events).

        The hottest read of the service (once per decision request). The facts cache answers for
        subjects read since the last event was recorded anywhere (``factcache``: one small sum
        read per request); the others are read with one indexed query (``subject_key IN (...)``
        per chunk, never one query per subject) and folded. Reads run SQLAlchemy's compiled
        statements on a driver connection (on SQLite the one ``SharedReader`` keeps, not the pool's):
        the Connection layer cost three times the query on SQLite (bench/app_profile.py).
        ``pseudonyms``: subject keys the caller already computed with this store's
        ``pseudonymizer`` (the API logs them too).
        """
        key_of = self._keys_of(subject_ids, pseudonyms)
        cache = self.facts_cache
        rows: dict[str, list[Any]] = {}
        reader = self._shared_reader
        with reader.cursor(self.engine) if reader is not None else driver_cursor(self.engine) as cursor:
            version = self._facts_version(cursor) if cache.enabled else None  # before the events
            known = cache.lookup(version, list(key_of.values()))
            missing = [key for key in key_of.values() if key not in known]
            if len(missing) == 1:  # a single decision's miss: on the same connection
                rows[missing[0]] = self._facts_read.run(cursor, {"key": missing[0]})
        if len(missing) > 1:
            rows = self._rows_by_key(missing)
        if missing:
            read = {key: self._fold(rows[key]) for key in missing}
            cache.store(version, read)
            known.update(read)
        if cache.enabled:
            metrics.count_facts_cache(hits=len(key_of) - len(missing), misses=len(missing))
        return {sid: known[key] for sid, key in key_of.items()}

    def _facts_version(self, cursor: Any) -> int | None:
        """The sum of ``facts_version.n``; None when the rows are missing (then nothing is cached)."""
        rows = self._version_read.run(cursor, {})
        return int(rows[0].n) if rows and rows[0].n is not None else None

    def facts_at(self, wanted: Iterable[tuple[str, datetime]]) -> dict[tuple[str, datetime], SubjectFacts]:
        """Facts of subjects as they stood at given instants (as-of decisions): the same indexed
        read as :meth:`facts_for_many`, each subject's events folded up to each instant asked."""
        pairs = list(dict.fromkeys(wanted))
        key_of = self._keys_of(sid for sid, _ in pairs)
        rows_by_key = self._rows_by_key(list(key_of.values()))
        return {(sid, at): self._fold(rows_by_key[key_of[sid]], at) for sid, at in pairs}

    def _keys_of(self, subject_ids: Iterable[str], known: Mapping[str, str] | None = None) -> dict[str, str]:
        key_of: dict[str, str] = {}
        for sid in subject_ids:
            if sid not in key_of:
                given = known.get(sid) if known else None
                key_of[sid] = given if given is not None else self.pseudonymizer.subject_key(sid)
        return key_of

    def _rows_by_key(self, keys: list[str]) -> dict[str, list[Any]]:
        rows_by_key: dict[str, list[Any]] = {key: [] for key in keys}
        keys = list(rows_by_key)
        if len(keys) == 1:
            rows_by_key[keys[0]] = self._facts_read.rows(self.engine, {"key": keys[0]})
            return rows_by_key
        with self._read(single_statement=len(keys) <= _IN_CHUNK) as conn:
            for start in range(0, len(keys), _IN_CHUNK):
                for row in conn.execute(_FACTS_OF_MANY, {"keys": keys[start : start + _IN_CHUNK]}):
                    rows_by_key[row.subject_key].append(row)
        return rows_by_key

    def subject_view(self, subject_id: str) -> dict[str, Any] | None:
        """Facts and history as ``GET /v1/subjects/<id>`` shows them; None when no events."""
        rows = self._subject_rows(subject_id)
        if not rows:
            return None
        view: dict[str, Any] = {"subject_key": self.pseudonymizer.subject_key(subject_id)}
        view.update(self._fold(rows).to_dict())
        view["history"] = [_event_record(r) for r in rows]
        return view

    # -- outbox

    def list_deliveries(
        self, status: str | None = None, limit: int = 100, subscription_id: str | None = None
    ) -> list[dict[str, Any]]:
        """Newest first, each with its ``attempts`` log; never the body (it holds the clear id)."""
        if status is not None and status not in STATUSES:
            raise RequestError(
                f"status: must be one of {', '.join(STATUSES)}",
                {"field": "status", "value": status},
            )
        limit = max(1, min(int(limit), 1000))
        cols = [c for c in deliveries_t.c if c.name not in ("body", "claim_token")]
        query = sa.select(*cols).order_by(deliveries_t.c.id.desc()).limit(limit)
        if status is not None:
            query = query.where(deliveries_t.c.status == status)
        if subscription_id is not None:
            query = query.where(deliveries_t.c.subscription_id == subscription_id)
        with self._read() as conn:
            rows = list(conn.execute(query))
            ids = [r.id for r in rows]
            log_rows = (
                list(
                    conn.execute(
                        sa.select(attempts_t)
                        .where(attempts_t.c.delivery_id.in_(ids))
                        .order_by(attempts_t.c.id)
                    )
                )
                if ids
                else []
            )
        by_delivery: dict[int, list[dict[str, Any]]] = {}
        for a in log_rows:
            by_delivery.setdefault(a.delivery_id, []).append(
                {
                    "at": _iso(a.attempted_at),
                    "outcome": a.outcome,
                    "status_code": a.status_code,
                    "error": a.error,
                    "duration_ms": round(a.duration_ms, 1),
                }
            )
        return [self._delivery_dict(r, by_delivery.get(r.id, [])) for r in rows]

    @staticmethod
    def _delivery_dict(r: Any, attempts: list[dict[str, Any]]) -> dict[str, Any]:
        return {
            "id": r.id,
            "subscription_id": r.subscription_id,
            "event_id": r.event_id,
            "event_type": r.event_type,
            "status": r.status,
            "attempt_count": r.attempts,
            "next_attempt_at": _iso(r.next_attempt_at) if r.status == "pending" else None,
            "last_status_code": r.last_status_code,
            "last_error": r.last_error,
            "created_at": _iso(r.created_at),
            "delivered_at": _iso(r.delivered_at),
            "attempts": attempts,
        }

    def get_delivery(self, delivery_id: int) -> dict[str, Any]:
        cols = [c for c in deliveries_t.c if c.name not in ("body", "claim_token")]
        with self._read() as conn:
            row = conn.execute(sa.select(*cols).where(deliveries_t.c.id == delivery_id)).first()
            if row is None:
                raise NotFound(f"no delivery {delivery_id}", {"id": delivery_id})
            log_rows = conn.execute(
                sa.select(attempts_t)
                .where(attempts_t.c.delivery_id == delivery_id)
                .order_by(attempts_t.c.id)
            )
            attempts = [
                {
                    "at": _iso(a.attempted_at),
                    "outcome": a.outcome,
                    "status_code": a.status_code,
                    "error": a.error,
                    "duration_ms": round(a.duration_ms, 1),
                }
                for a in log_rows
            ]
        return self._delivery_dict(row, attempts)

    def retry_delivery(self, delivery_id: int) -> dict[str, Any]:
        """Send a dead delivery again now (one more attempt; dead again if it fails)."""
        with self._write() as conn:
            row = conn.execute(
                sa.select(deliveries_t.c.status).where(deliveries_t.c.id == delivery_id)
            ).first()
            if row is None:
                raise NotFound(f"no delivery {delivery_id}", {"id": delivery_id})
            if row.status != "dead":
                raise RequestError(
                    f"delivery {delivery_id} is {row.status}; only a dead delivery can be retried",
                    {"id": delivery_id, "status": row.status},
                )
            conn.execute(
                deliveries_t.update()
                .where(deliveries_t.c.id == delivery_id)
                .values(
                    status="pending", next_attempt_at=utcnow(), claimed_until=None, claim_token=None
                )
            )
        self._notify_outbox()
        return self.get_delivery(delivery_id)

    def outbox_stats(self) -> dict[str, Any]:
        """``depth`` (pending), ``oldest_pending_age_seconds`` (None when empty), ``dead``."""
        with self._read() as conn:
            depth, oldest = conn.execute(
                sa.select(sa.func.count(), sa.func.min(deliveries_t.c.created_at)).where(
                    deliveries_t.c.status == "pending"
                )
            ).one()
            dead = conn.execute(
                sa.select(sa.func.count()).where(deliveries_t.c.status == "dead")
            ).scalar_one()
        if isinstance(oldest, str):  # aggregate results bypass the column type on SQLite
            oldest = datetime.fromisoformat(oldest)
        if oldest is not None and oldest.tzinfo is None:
            oldest = oldest.replace(tzinfo=UTC)
        age = (utcnow() - oldest).total_seconds() if oldest is not None else None
        return {"depth": int(depth), "oldest_pending_age_seconds": age, "dead": int(dead)}

    def claim_due(
        self,
        limit: int,
        lease_seconds: float,
        busy: Mapping[str, int] | None = None,
        per_subscription: int | None = None,
    ) -> list[Claim]:
        """Lease up to ``limit`` due pending deliveries to the caller; commits before returning.

        PostgreSQL skips rows other workers hold (``FOR UPDATE SKIP LOCKED``); SQLite serialises
        claimers with ``BEGIN IMMEDIATE``. A row whose lease expired (its worker died) is due again.

        ``per_subscription``: at most that many of one subscription's deliveries in the caller's
        hands, counting ``busy`` (its deliveries of each subscription still in flight). A receiver
        that hangs then holds a bounded share of a worker's slots, and the other subscribers' due
        deliveries are claimed past its queue (the oldest due first, as without a bound).
        """
        now = utcnow()
        until = now + timedelta(seconds=lease_seconds)
        token = secrets.token_hex(16)
        d = deliveries_t.c
        conditions = [
            d.status == "pending",
            d.next_attempt_at <= now,
            sa.or_(d.claimed_until.is_(None), d.claimed_until < now),
        ]
        if per_subscription is None:
            due = sa.select(d.id).where(*conditions).order_by(d.next_attempt_at, d.id).limit(limit)
            if not self.is_sqlite:
                due = due.with_for_update(skip_locked=True)
            with self._write() as conn:
                rows = list(conn.execute(self._claim(due.scalar_subquery(), until, token)))
        else:
            busy = busy or {}
            full = sorted(sub for sub, n in busy.items() if n >= per_subscription)
            if full:
                conditions.append(d.subscription_id.not_in(full))
            # a few rows per slot: a queue of one subscription at the front is looked past
            candidates = (
                sa.select(d.id, d.subscription_id)
                .where(*conditions)
                .order_by(d.next_attempt_at, d.id)
                .limit(limit * 4)
            )
            if not self.is_sqlite:
                candidates = candidates.with_for_update(skip_locked=True)
            with self._write() as conn:
                room: dict[str, int] = {}
                chosen: list[int] = []
                for row in conn.execute(candidates).all():
                    left = room.setdefault(row.subscription_id, per_subscription - busy.get(row.subscription_id, 0))
                    if left > 0:
                        chosen.append(row.id)
                        room[row.subscription_id] = left - 1
                        if len(chosen) == limit:
                            break
                rows = list(conn.execute(self._claim(chosen, until, token))) if chosen else []
        return [
            Claim(r.id, r.subscription_id, r.event_id, self._open_body(r), r.attempts, token, until)
            for r in sorted(rows, key=lambda r: r.id)
        ]

    @staticmethod
    def _claim(ids: Any, until: datetime, token: str) -> Any:
        """The UPDATE that leases the rows ``ids`` (a list or a subquery) and returns them."""
        d = deliveries_t.c
        return (
            deliveries_t.update()
            .where(d.id.in_(ids))
            .values(claimed_until=until, claim_token=token)
            .returning(d.id, d.subscription_id, d.event_id, d.body, d.attempts)
        )

    def _open_body(self, row: Any) -> bytes:
        """The body to send; empty when there is none or it cannot be opened (the worker then
        records a failed attempt instead of sending)."""
        if not row.body:
            return b""
        try:
            return self.sealer.open(bytes(row.body))
        except ValueError:
            log.error(
                "delivery %s: the stored body cannot be opened (was KTI_PSEUDONYM_KEY changed since "
                "it was recorded?)",
                row.id,
            )
            return b""

    def complete_attempt(
        self,
        claim: Claim,
        *,
        attempted_at: datetime,
        duration_ms: float,
        status_code: int | None,
        error: str | None,
        delivered: bool,
        next_attempt_at: datetime | None,
    ) -> bool:
        """Record one attempt's outcome (see ``complete_attempts``)."""
        outcome = AttemptOutcome(
            claim, attempted_at, duration_ms, status_code, error, delivered, next_attempt_at
        )
        return self.complete_attempts([outcome])[0]

    def release_claims(self, claims: Sequence[Claim]) -> int:
        """Give back leased deliveries that were not attempted (a worker stopping with rows in hand):
        due again at once for any worker, instead of when the lease runs out. A row whose lease was
        lost meanwhile is left to its new owner. Returns how many were given back."""
        if not claims:
            return 0
        d = deliveries_t.c
        released = 0
        with self._write() as conn:
            for token in sorted({c.claim_token for c in claims}):
                ids = [c.id for c in claims if c.claim_token == token]
                released += conn.execute(
                    deliveries_t.update()
                    .where(d.id.in_(ids), d.claim_token == token, d.status == "pending")
                    .values(claimed_until=None, claim_token=None)
                ).rowcount
        return released

    def complete_attempts(self, outcomes: Sequence[AttemptOutcome]) -> list[bool]:
        """Record attempts' outcomes in one transaction. Not delivered and no
        ``next_attempt_at`` means dead; delivered removes the body (and the clear id with it).

        Each result is False when that lease was lost (another worker reclaimed the row after it
        expired): the attempt is still logged, the row is left to its new owner.
        """
        d = deliveries_t.c
        results: list[bool] = []
        with self._write() as conn:
            conn.execute(
                attempts_t.insert(),
                [
                    {
                        "delivery_id": o.claim.id,
                        "attempted_at": o.attempted_at,
                        "status_code": o.status_code,
                        "error": o.error,
                        "duration_ms": o.duration_ms,
                        "outcome": o.outcome,
                    }
                    for o in outcomes
                ],
            )
            for o in outcomes:
                values: dict[str, Any]
                if o.delivered:
                    values = {
                        "status": "delivered",
                        "body": None,
                        "delivered_at": o.attempted_at,
                        "next_attempt_at": None,
                    }
                elif o.next_attempt_at is None:
                    values = {"status": "dead", "next_attempt_at": None}
                else:
                    values = {"status": "pending", "next_attempt_at": o.next_attempt_at}
                values.update(
                    attempts=d.attempts + 1,
                    claimed_until=None,
                    claim_token=None,
                    last_status_code=o.status_code,
                    last_error=None if o.delivered else o.error,
                )
                updated = conn.execute(
                    deliveries_t.update()
                    .where(d.id == o.claim.id, d.claim_token == o.claim.claim_token)
                    .values(**values)
                ).rowcount
                if not updated:
                    log.warning(
                        "delivery %s: lease lost before the outcome was recorded", o.claim.id
                    )
                results.append(bool(updated))
        return results


def status_counts(store: Store) -> dict[str, int]:
    """Deliveries per status (for tests and the bench)."""
    with store._read() as conn:
        rows = conn.execute(
            sa.select(deliveries_t.c.status, sa.func.count()).group_by(deliveries_t.c.status)
        )
        counts = {s: 0 for s in STATUSES}
        counts.update({r[0]: int(r[1]) for r in rows})
    return counts


__all__ = [
    "EVENT_TYPES",
    "AttemptOutcome",
    "Claim",
    "NewEvent",
    "RecordResult",
    "Store",
    "normalize_url",
    "status_counts",
    "validate_event",
]
