"""Durable storage for subject events, facts and the webhook outbox (SQLAlchemy 2, Alembic).

Public API::

    store = Store.from_config(config)            # KTI_DATABASE_URL, KTI_PSEUDONYM_KEY, KTI_HOOKS_DIR,
                                                 # KTI_INSTANCE_DIR; secrets from ``environ``
    store = Store(url, pseudonymizer, subscriptions, schema=None)

    store.record_events(events, vocabulary=None) -> list[RecordResult]   # validated, idempotent on id
    store.facts_for(subject_id) -> SubjectFacts                          # one indexed query + fold_events
    store.subject_view(subject_id) -> dict | None                        # facts + history, keyed hash only
    store.list_deliveries(status=None, limit=100) -> list[dict]          # with their attempt log
    store.retry_delivery(delivery_id) -> dict                            # dead -> pending, due now
    store.outbox_stats() -> dict                                         # depth, oldest pending age, dead
    store.ping(); store.close()
    # used by the delivery worker (kti_policy.delivery):
    store.claim_due(limit, lease_seconds) -> list[Claim]; store.complete_attempt(claim, ...)

Databases: SQLite by default (``./instance/kti.sqlite3``; WAL, ``busy_timeout``, ``secure_delete`` and
foreign keys on every connection; write transactions start with ``BEGIN IMMEDIATE`` so that concurrent
writers queue instead of failing), or PostgreSQL through a ``postgresql://`` URL (psycopg 3). ``schema``
puts every table in that PostgreSQL schema (tests use one fresh schema each). Migrations (Alembic,
shipped inside the package) run on open, under a lock, so several processes may start at once.

What is stored: ``events`` keep the event id, type, the subject's keyed hash (``pseudonym``), the times
and the data (purpose/scope ids, flags), never the clear subject id. Facts are derived on read from a
subject's events with ``facts.fold_events`` (later ``occurred_at`` wins, ties by arrival, an erasure is
never undone), so there is no projection to drift. ``deliveries`` is the outbox: one row per
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
import hmac
import json
import logging
import re
import secrets
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

import sqlalchemy as sa
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from sqlalchemy import event as sa_event
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import IntegrityError, OperationalError

from . import dbtimeouts
from .errors import EventConflict, NotFound, RequestError, UnknownVocabularyId
from .facts import EVENT_TYPES as FACT_EVENT_TYPES
from .facts import OPTIONAL_DATA, FactEvent, SubjectFacts, fold_events
from .fileperms import private_dir, private_sqlite
from .pseudonym import Pseudonymizer, instance_dir, pseudonymizer_from_config
from .timerange import RANGE_MESSAGE, in_range

if TYPE_CHECKING:
    from .hooks import Subscription

log = logging.getLogger(__name__)

MIGRATIONS_DIR = Path(__file__).with_name("migrations")
MAX_BATCH = 1000
EVENT_ID_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_:\-]{0,127}$")
MAX_SUBJECT_ID_LEN = 256
DEFAULT_DB_TIMEOUT = dbtimeouts.DEFAULT_TIMEOUT  # seconds; KTI_DATABASE_TIMEOUT

# Inbound event types: those that carry facts, and the obligations register's deletion.confirmed
# (a system reports a deletion done; no fact; ``str`` is free text, not a vocabulary kind).
EVENT_TYPES: dict[str, dict[str, Any]] = {**FACT_EVENT_TYPES, "deletion.confirmed": {"system": str}}

# called inside record_events' transaction for each new event (see Store.add_event_hook)
EventHook = Callable[[Connection, "NewEvent", int, datetime], int]

# optional data fields and their default
_OPTIONAL_DATA = OPTIONAL_DATA

# Used when the caller passes no vocabulary: the ids CONTRACT section 1 requires.
DEFAULT_VOCABULARY: dict[str, frozenset[str]] = {
    "consent_purpose": frozenset({"disclosure", "direct_marketing", "partner_marketing"}),
    "objection_scope": frozenset({"direct_marketing", "marketing", "disclosure"}),
    "subject_kind": frozenset({"consumer", "business_contact"}),
}

STATUSES = ("pending", "delivered", "dead")


class UtcDateTime(sa.types.TypeDecorator[datetime]):
    """Aware datetimes in Python, naive UTC in the database (same on SQLite and PostgreSQL)."""

    impl = sa.DateTime
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the store")
        return value.astimezone(UTC).replace(tzinfo=None)

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        return None if value is None else value.replace(tzinfo=UTC)


_PK = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
# Subject keys per IN (...) query: well under SQLite's and psycopg's parameter limits.
_IN_CHUNK = 500
metadata = sa.MetaData()
events_t = sa.Table(
    "events",
    metadata,
    sa.Column("seq", _PK, primary_key=True, autoincrement=True),
    sa.Column("event_id", sa.String(128), nullable=False, unique=True),
    sa.Column("type", sa.String(64), nullable=False),
    sa.Column("subject_key", sa.String(80), nullable=False),
    sa.Column("occurred_at", UtcDateTime(), nullable=False),
    sa.Column("received_at", UtcDateTime(), nullable=False),
    sa.Column("data", sa.Text(), nullable=False),
)
deliveries_t = sa.Table(
    "deliveries",
    metadata,
    sa.Column("id", _PK, primary_key=True, autoincrement=True),
    sa.Column("subscription_id", sa.String(64), nullable=False),
    sa.Column("event_seq", _PK, sa.ForeignKey("events.seq"), nullable=True),
    sa.Column("event_id", sa.String(128), nullable=False),
    sa.Column("event_type", sa.String(64), nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("body", sa.LargeBinary(), nullable=True),
    sa.Column("attempts", sa.Integer(), nullable=False, server_default="0"),
    sa.Column("next_attempt_at", UtcDateTime(), nullable=True),
    sa.Column("claimed_until", UtcDateTime(), nullable=True),
    sa.Column("claim_token", sa.String(40), nullable=True),
    sa.Column("last_status_code", sa.Integer(), nullable=True),
    sa.Column("last_error", sa.Text(), nullable=True),
    sa.Column("created_at", UtcDateTime(), nullable=False),
    sa.Column("delivered_at", UtcDateTime(), nullable=True),
)
attempts_t = sa.Table(
    "delivery_attempts",
    metadata,
    sa.Column("id", _PK, primary_key=True, autoincrement=True),
    sa.Column(
        "delivery_id", _PK, sa.ForeignKey("deliveries.id", ondelete="CASCADE"), nullable=False
    ),
    sa.Column("attempted_at", UtcDateTime(), nullable=False),
    sa.Column("status_code", sa.Integer(), nullable=True),
    sa.Column("error", sa.Text(), nullable=True),
    sa.Column("duration_ms", sa.Float(), nullable=False),
    sa.Column("outcome", sa.String(16), nullable=False),
)


def utcnow() -> datetime:
    return datetime.now(UTC)


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.astimezone(UTC).isoformat().replace("+00:00", "Z")


# -- validation ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class NewEvent:
    """A validated incoming event (the clear ``subject_id`` lives only here and in outbox bodies)."""

    event_id: str
    type: str
    subject_id: str
    occurred_at: datetime  # aware, UTC
    data: dict[str, Any]


def _bad(field_name: str, message: str, index: int | None) -> RequestError:
    details: dict[str, Any] = {"field": field_name}
    if index is not None:
        details["index"] = index
    return RequestError(f"{field_name}: {message}", details)


# How far ahead of this server's clock an event's occurred_at may be (the sender's clock may run fast).
MAX_FUTURE_SKEW = timedelta(minutes=5)


def parse_time(value: Any, field_name: str, index: int | None = None) -> datetime:
    """ISO 8601 text to an aware UTC datetime; a time without an offset is taken as UTC."""
    if not isinstance(value, str) or not value.strip():
        raise _bad(field_name, "must be an ISO 8601 date-time string", index)
    try:
        parsed = datetime.fromisoformat(value.strip().replace("z", "Z"))
    except ValueError:
        raise _bad(field_name, f"{value!r} is not an ISO 8601 date-time", index) from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    if not in_range(parsed):
        raise _bad(field_name, f"{value!r} {RANGE_MESSAGE}", index)
    return parsed.astimezone(UTC)


def validate_event(
    raw: Any,
    vocabulary: Mapping[str, Collection[str]] | None = None,
    *,
    prefix: str = "",
    index: int | None = None,
    now: datetime | None = None,
) -> NewEvent:
    """Check one event against CONTRACT section 3; raise ``RequestError`` naming the field.

    ``occurred_at`` may not lie more than ``MAX_FUTURE_SKEW`` ahead of ``now``: the later
    ``occurred_at`` wins when facts are folded, so a consent dated in 2030 by a typo would
    outlive every withdrawal recorded until then (a disclosure allowed after the subject said no).
    """
    vocab = DEFAULT_VOCABULARY if vocabulary is None else vocabulary
    where = prefix.rstrip(".") or "event"
    if not isinstance(raw, Mapping):
        raise _bad(where, "must be a JSON object", index)
    unknown = sorted(set(raw) - {"id", "type", "subject_id", "occurred_at", "data"})
    if unknown:
        raise _bad(
            f"{prefix}{unknown[0]}",
            "unknown field (known: id, type, subject_id, occurred_at, data)",
            index,
        )
    event_id = raw.get("id")
    if not isinstance(event_id, str) or not EVENT_ID_RE.match(event_id):
        raise _bad(
            f"{prefix}id",
            "required: 1-128 letters, digits, '_', '-' or ':' (no dots; it becomes the webhook-id)",
            index,
        )
    etype = raw.get("type")
    if not isinstance(etype, str) or etype not in EVENT_TYPES:  # a list is unhashable
        raise _bad(
            f"{prefix}type",
            f"unknown event type {etype!r}; known types: {', '.join(EVENT_TYPES)}",
            index,
        )
    subject_id = raw.get("subject_id")
    if (
        not isinstance(subject_id, str)
        or not subject_id.strip()
        or len(subject_id) > MAX_SUBJECT_ID_LEN
    ):
        raise _bad(
            f"{prefix}subject_id",
            f"required: a non-empty string of at most {MAX_SUBJECT_ID_LEN} characters",
            index,
        )
    if "occurred_at" not in raw:
        raise _bad(f"{prefix}occurred_at", "required", index)
    occurred_at = parse_time(raw["occurred_at"], f"{prefix}occurred_at", index)
    latest = (now or datetime.now(UTC)) + MAX_FUTURE_SKEW
    if occurred_at > latest:
        raise _bad(
            f"{prefix}occurred_at",
            f"{raw['occurred_at']!r} is in the future; an event records what has happened "
            f"(clocks may differ by at most {int(MAX_FUTURE_SKEW.total_seconds() // 60)} minutes)",
            index,
        )
    data_in = raw.get("data")
    if data_in is None:
        data_in = {}
    if not isinstance(data_in, Mapping):
        raise _bad(f"{prefix}data", "must be a JSON object", index)
    spec = EVENT_TYPES[etype]
    extra = sorted(set(data_in) - set(spec))
    if extra:
        known = ", ".join(spec) or "none"
        raise _bad(
            f"{prefix}data.{extra[0]}", f"not a field of {etype} (its fields: {known})", index
        )
    data: dict[str, Any] = {}
    for name, kind in spec.items():
        fname = f"{prefix}data.{name}"
        value = data_in.get(name)
        if kind is bool:
            if value is None and name in _OPTIONAL_DATA:
                value = _OPTIONAL_DATA[name]
            if not isinstance(value, bool):
                raise _bad(fname, "must be true or false", index)
        elif kind is str:
            if not isinstance(value, str) or not value.strip() or len(value) > 128:
                raise _bad(fname, "required: a non-empty string of at most 128 characters", index)
        else:
            if value is None and name in _OPTIONAL_DATA and _OPTIONAL_DATA[name] is None:
                continue  # optional and not given: left out
            if not isinstance(value, str) or not value:
                raise _bad(fname, f"required: a {kind} id", index)
            known_ids = vocab.get(kind) or ()
            if value not in known_ids:
                exc = UnknownVocabularyId(fname, value, sorted(known_ids))
                if index is not None:
                    exc.details["index"] = index
                raise exc
        data[name] = value
    return NewEvent(event_id, etype, subject_id, occurred_at, data)


def _lock_key(event_id: str) -> int:
    return int.from_bytes(hashlib.sha256(event_id.encode()).digest()[:8], "big", signed=True)


def _canonical(data: Mapping[str, Any]) -> str:
    return json.dumps(data, sort_keys=True, separators=(",", ":"))


# -- results ------------------------------------------------------------------------------------


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


# The decision path's facts reads, built once: only the columns the fold needs, bound parameters
# (building the statement per call cost more than running it on SQLite).
_FACTS_IN_FOLD_ORDER = sa.select(
    events_t.c.subject_key, events_t.c.type, events_t.c.occurred_at, events_t.c.data, events_t.c.seq
).order_by(events_t.c.occurred_at, events_t.c.seq)
_FACTS_OF_ONE = _FACTS_IN_FOLD_ORDER.where(events_t.c.subject_key == sa.bindparam("key"))
_FACTS_OF_MANY = _FACTS_IN_FOLD_ORDER.where(
    events_t.c.subject_key.in_(sa.bindparam("keys", expanding=True))
)


class _DriverQuery:
    """One compiled SELECT run on a pooled DB-API connection, rows converted by the columns' types.

    SQLAlchemy compiles the SQL and supplies each column's result processor (UtcDateTime on SQLite
    and PostgreSQL alike), so the rows are what ``Connection.execute`` would give, as plain tuples
    in the statement's column order.
    """

    def __init__(self, statement: sa.Select[Any], dialect: Any, row_type: Any) -> None:
        self.compiled = statement.compile(dialect=dialect)
        self.row_type = row_type
        self.sql = str(self.compiled)
        self.processors = [
            col.type.dialect_impl(dialect).result_processor(dialect, None)
            for col in statement.selected_columns
        ]
        names = tuple(col.name for col in statement.selected_columns)
        if names != row_type._fields:
            raise ValueError(f"row type {row_type.__name__} does not match the columns {names}")

    def _args(self, values: Mapping[str, Any]) -> Any:
        params = self.compiled.construct_params(dict(values))
        if self.compiled.positional:
            return tuple(params[name] for name in self.compiled.positiontup or ())
        return params

    def rows(self, engine: Engine, values: Mapping[str, Any]) -> list[Any]:
        conn = engine.raw_connection()
        try:
            cursor = conn.cursor()
            try:
                cursor.execute(self.sql, self._args(values))
                fetched = cursor.fetchall()
            finally:
                cursor.close()
        except BaseException:
            conn.invalidate()  # a broken connection must not go back to the pool
            raise
        finally:
            conn.close()
        procs = self.processors
        return [
            self.row_type(*(p(v) if p else v for p, v in zip(procs, row, strict=True))) for row in fetched
        ]


class _FactRow(NamedTuple):
    subject_key: str
    type: str
    occurred_at: datetime
    data: str
    seq: int


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


def webhook_body(ev: NewEvent, seq: int, now: datetime) -> bytes:
    """The bytes sent to subscribers (signed per attempt, stored once, sent as stored)."""
    payload = {
        "type": ev.type,
        "timestamp": _iso(now),
        "data": {
            "subject_id": ev.subject_id,
            "occurred_at": _iso(ev.occurred_at),
            "sequence": seq,
            **ev.data,
        },
    }
    return json.dumps(payload, separators=(",", ":")).encode("utf-8")


class BodySealer:
    """Encrypts outbox bodies at rest with AES-256-GCM (``cryptography``), under a key derived from
    the pseudonym key, which every process of a deployment already shares. A removed body can
    linger in free pages, WAL frames or dead PostgreSQL row versions; sealed, it holds no clear id.
    ``open`` passes through a body stored before sealing existed (it lacks ``MAGIC``)."""

    MAGIC = b"\x00kti-sealed-2\x00"  # a JSON body never starts with NUL

    def __init__(self, key: bytes) -> None:
        self._aead = AESGCM(hmac.new(key, b"kti-policy outbox bodies v2", hashlib.sha256).digest())

    def seal(self, body: bytes) -> bytes:
        nonce = secrets.token_bytes(12)
        return self.MAGIC + nonce + self._aead.encrypt(nonce, body, self.MAGIC)

    def open(self, stored: bytes) -> bytes:
        """The body; ``ValueError`` when it was sealed under another key or altered."""
        if not stored.startswith(self.MAGIC):
            return stored
        rest = stored[len(self.MAGIC) :]
        try:
            return self._aead.decrypt(rest[:12], rest[12:], self.MAGIC)
        except InvalidTag:
            raise ValueError("the stored webhook body does not authenticate under this key") from None


# -- the store ----------------------------------------------------------------------------------


def normalize_url(url: str) -> str:
    """``postgresql://`` and ``postgres://`` mean psycopg 3; other URLs pass unchanged."""
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


def default_url(config: Mapping[str, Any]) -> str:
    folder = instance_dir(config)
    return f"sqlite:///{folder / 'kti.sqlite3'}"


class Store:
    """Events, facts and the outbox in one database. Thread-safe; one instance per process."""

    def __init__(
        self,
        url: str,
        pseudonymizer: Pseudonymizer,
        subscriptions: Sequence[Subscription] = (),
        *,
        schema: str | None = None,
        migrate: bool = True,
        pool_size: int = 10,
        db_timeout: float = DEFAULT_DB_TIMEOUT,
    ) -> None:
        self.url = normalize_url(url)
        self.pseudonymizer = pseudonymizer
        self.subscriptions: list[Subscription] = list(subscriptions)
        self.schema = schema
        # the pseudonym key's bytes (the same module family; Pseudonymizer keeps them private)
        self.sealer = BodySealer(pseudonymizer._key)
        self.engine = self._make_engine(self.url, schema, pool_size, db_timeout)
        self.is_sqlite = self.engine.dialect.name == "sqlite"
        self._facts_read = _DriverQuery(_FACTS_OF_ONE, self.engine.dialect, _FactRow)
        self._outbox_listeners: list[Callable[[], None]] = []
        self._event_hooks: list[EventHook] = []
        if migrate:
            self.migrate()

    @classmethod
    def from_config(
        cls, config: Mapping[str, Any], environ: Mapping[str, str] | None = None
    ) -> Store:
        """Build from ``KTI_DATABASE_URL``, ``KTI_PSEUDONYM_KEY``, ``KTI_HOOKS_DIR`` (CONTRACT 7).

        Webhook secrets are read from ``environ`` (default: ``config``, then ``os.environ`` as it is
        now); a subscription whose secret variable is unset is skipped with a warning.
        """
        import os

        from .hooks import active_subscriptions, load_subscriptions

        env: Mapping[str, str] = environ if environ is not None else {**os.environ, **config}
        url = str(config.get("KTI_DATABASE_URL") or default_url(config))
        subs = load_subscriptions(Path(str(config.get("KTI_HOOKS_DIR") or "hooks")))
        private_dir(instance_dir(config))  # the key file and the SQLite file live here
        return cls(
            url,
            pseudonymizer_from_config(config),
            active_subscriptions(subs, env),
            schema=config.get("KTI_DATABASE_SCHEMA") or None,
            db_timeout=float(config.get("KTI_DATABASE_TIMEOUT") or DEFAULT_DB_TIMEOUT),
        )

    # -- connections

    @staticmethod
    def _make_engine(
        url: str, schema: str | None, pool_size: int, db_timeout: float = DEFAULT_DB_TIMEOUT
    ) -> Engine:
        if url.startswith("sqlite"):
            db = sa.engine.make_url(url).database
            if db and db != ":memory:" and not db.startswith("file:"):
                private_sqlite(Path(db))
            engine = sa.create_engine(
                url, pool_size=pool_size, max_overflow=2 * pool_size, connect_args={"timeout": 30}
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
        from . import metrics_events as metrics

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
            (FactEvent(type=r.type, occurred_at=r.occurred_at, data=json.loads(r.data), seq=r.seq) for r in rows),
            at,
        )

    def facts_for(self, subject_id: str) -> SubjectFacts:
        """The recorded facts of a subject (empty facts when nothing is recorded).

        The hottest read of the service (one per single decision): it runs SQLAlchemy's compiled
        statement on a pooled driver connection, without the Connection layer, which cost three
        times the query itself (bench/app_profile.py). Results convert with the columns' own types.
        """
        key = self.pseudonymizer.subject_key(subject_id)
        return self._fold(self._facts_read.rows(self.engine, {"key": key}))

    def facts_for_many(self, subject_ids: Iterable[str]) -> dict[str, SubjectFacts]:
        """Facts of several subjects in one query per chunk, not one query each.

        A batch of decisions spent half its time in per-subject queries (py-spy); this reads every
        subject's events with ``subject_key IN (...)`` and folds them per subject. Subjects with no
        events get empty facts, exactly as :meth:`facts_for` gives them. One subject takes the
        single-subject read (a single decision's path).
        """
        key_of = self._keys_of(subject_ids)
        if len(key_of) == 1:
            (only,) = key_of
            return {only: self.facts_for(only)}
        rows_by_key = self._rows_by_key(list(key_of.values()))
        return {sid: self._fold(rows_by_key[key]) for sid, key in key_of.items()}

    def facts_at(self, wanted: Iterable[tuple[str, datetime]]) -> dict[tuple[str, datetime], SubjectFacts]:
        """Facts of subjects as they stood at given instants (as-of decisions): the same indexed
        read as :meth:`facts_for_many`, each subject's events folded up to each instant asked."""
        pairs = list(dict.fromkeys(wanted))
        key_of = self._keys_of(sid for sid, _ in pairs)
        rows_by_key = self._rows_by_key(list(key_of.values()))
        return {(sid, at): self._fold(rows_by_key[key_of[sid]], at) for sid, at in pairs}

    def _keys_of(self, subject_ids: Iterable[str]) -> dict[str, str]:
        key_of: dict[str, str] = {}
        for sid in subject_ids:
            if sid not in key_of:
                key_of[sid] = self.pseudonymizer.subject_key(sid)
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

    def claim_due(self, limit: int, lease_seconds: float) -> list[Claim]:
        """Lease up to ``limit`` due pending deliveries to the caller; commits before returning.

        PostgreSQL skips rows other workers hold (``FOR UPDATE SKIP LOCKED``); SQLite serialises
        claimers with ``BEGIN IMMEDIATE``. A row whose lease expired (its worker died) is due again.
        """
        now = utcnow()
        until = now + timedelta(seconds=lease_seconds)
        token = secrets.token_hex(16)
        d = deliveries_t.c
        due = (
            sa.select(d.id)
            .where(
                d.status == "pending",
                d.next_attempt_at <= now,
                sa.or_(d.claimed_until.is_(None), d.claimed_until < now),
            )
            .order_by(d.next_attempt_at, d.id)
            .limit(limit)
        )
        if not self.is_sqlite:
            due = due.with_for_update(skip_locked=True)
        stmt = (
            deliveries_t.update()
            .where(d.id.in_(due.scalar_subquery()))
            .values(claimed_until=until, claim_token=token)
            .returning(d.id, d.subscription_id, d.event_id, d.body, d.attempts)
        )
        with self._write() as conn:
            rows = list(conn.execute(stmt))
        return [
            Claim(r.id, r.subscription_id, r.event_id, self._open_body(r), r.attempts, token, until)
            for r in sorted(rows, key=lambda r: r.id)
        ]

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
