"""Store: validation, idempotency, facts through the store, the outbox row, no clear id at rest."""

from __future__ import annotations

import random
import threading
import time
from typing import Any

import pytest
import sqlalchemy as sa

from kti_policy.errors import EventConflict, NotFound, RequestError, UnknownVocabularyId
from kti_policy.facts.fold import SubjectFacts
from kti_policy.hooks.subscriptions import Subscription
from kti_policy.store.db import normalize_url, status_counts

SECRET = b"s" * 32
SUB = Subscription(
    "crm",
    "http://127.0.0.1:9/x",
    frozenset({"objection.registered", "erasure.requested"}),
    "X",
    secret=SECRET,
)


def ev(
    i: Any,
    type_: str = "objection.registered",
    subject: str = "cust-4711",
    at: str = "2026-03-01T10:00:00+02:00",
    **data: Any,
) -> dict[str, Any]:
    if not data and type_.startswith("objection"):
        data = {"scope": "direct_marketing"}
    if not data and type_.startswith("consent"):
        data = {"purpose": "disclosure"}
    return {"id": f"ev-{i}", "type": type_, "subject_id": subject, "occurred_at": at, "data": data}


def test_record_is_idempotent_and_conflicts_are_409(make_store: Any) -> None:
    store = make_store([SUB])
    first = store.record_events([ev(1)])[0]
    again = store.record_events([ev(1)])[0]
    assert first.created and not again.created
    assert again.to_dict() == first.to_dict()
    assert first.deliveries == 1 and again.deliveries == 0
    # the same instant written with another offset is the same event
    same = ev(1, at="2026-03-01T08:00:00Z")
    assert not store.record_events([same])[0].created
    with pytest.raises(EventConflict) as exc:
        store.record_events([ev(1, subject="someone-else")])
    assert exc.value.code == "event_conflict" and exc.value.details["field"] == "id"
    assert status_counts(store)["pending"] == 1


def test_batch_is_all_or_nothing_and_names_the_index(make_store: Any) -> None:
    store = make_store([SUB])
    store.record_events([ev(1)])
    with pytest.raises(EventConflict) as exc:
        store.record_events([ev(2), ev(1, subject="x")])
    assert exc.value.details["index"] == 1
    assert store.subject_view("cust-4711")["history"][-1]["id"] == "ev-1"
    assert status_counts(store)["pending"] == 1  # ev-2's outbox row went with the rollback
    with pytest.raises(UnknownVocabularyId) as vexc:
        store.record_events([ev(3), ev(4, "consent.granted", purpose="newsletter")])
    assert vexc.value.field == "events[1].data.purpose" and vexc.value.details["index"] == 1
    # a duplicate inside one batch is recorded once
    results = store.record_events([ev(5), ev(5)])
    assert [r.created for r in results] == [True, False]


@pytest.mark.parametrize(
    ("event", "field"),
    [
        ({"type": "erasure.requested", "subject_id": "a", "occurred_at": "2026-01-01"}, "id"),
        ({**ev(1), "id": "has.dot"}, "id"),
        ({**ev(1), "type": "subject.deleted"}, "type"),
        ({**ev(1), "subject_id": ""}, "subject_id"),
        ({**ev(1), "occurred_at": "yesterday"}, "occurred_at"),
        ({**ev(1), "occurred_at": "2030-01-01T00:00:00Z"}, "occurred_at"),  # the future
        ({**ev(1), "subjectId": "x"}, "subjectId"),
        ({**ev(1), "data": {"scope": "direct_marketing", "email": "a@b"}}, "data.email"),
        ({**ev(1), "data": {}}, "data.scope"),
        (ev(1, "access_request.received", written="yes"), "data.written"),
        ({**ev(1), "data": {"scope": "telemarketing"}}, "data.scope"),
    ],
)
def test_bad_events_are_400_naming_the_field(make_store: Any, event: Any, field: str) -> None:
    store = make_store()
    with pytest.raises(RequestError) as exc:
        store.record_events([event])
    assert exc.value.details["field"] == field
    assert field in exc.value.message


def test_future_events_are_refused_within_a_clock_skew() -> None:
    """A future occurred_at would win every fold until then; a few minutes of skew are allowed."""
    from datetime import UTC, datetime

    from kti_policy.store.validation import validate_event

    now = datetime(2026, 3, 1, 10, 0, tzinfo=UTC)
    assert validate_event(ev(1, at="2026-03-01T10:04:59Z"), now=now).occurred_at.minute == 4
    with pytest.raises(RequestError) as exc:
        validate_event(ev(1, at="2026-03-01T10:05:01Z"), now=now, prefix="events[3].", index=3)
    assert exc.value.details["field"] == "events[3].occurred_at" and exc.value.details["index"] == 3
    assert "in the future" in exc.value.message


def test_vocabulary_is_the_callers(make_store: Any) -> None:
    store = make_store()
    vocab = {"consent_purpose": {"newsletter"}, "objection_scope": {"direct_marketing"}}
    assert store.record_events([ev(1, "consent.granted", purpose="newsletter")], vocab)[0].created
    with pytest.raises(UnknownVocabularyId) as exc:
        store.record_events([ev(2, "consent.granted", purpose="disclosure")], vocab)
    assert exc.value.known == ["newsletter"]


def test_facts_fold_out_of_order_and_erasure_sticks(make_store: Any) -> None:
    store = make_store()
    s = "cust-1"
    store.record_events(
        [
            ev(3, "objection.withdrawn", s, "2026-03-03T10:00:00Z"),
            ev(1, "objection.registered", s, "2026-03-01T10:00:00Z"),
            ev(2, "consent.granted", s, "2026-03-02T10:00:00Z"),
            ev(5, "consent.withdrawn", s, "2026-03-05T10:00:00Z"),
            ev(4, "consent.granted", s, "2026-03-04T10:00:00Z"),
            ev(
                6,
                "erasure.requested",
                s,
                "2026-03-06T10:00:00Z",
            ),
            ev(7, "relationship.started", s, "2026-03-05T12:00:00Z"),  # before the erasure request (R5)
            ev(8, "relationship.ended", s, "2026-03-08T10:00:00Z"),
            ev(
                9,
                "access_request.received",
                s,
                "2026-03-09T12:00:00+02:00",
                written=True,
                signed=True,
            ),
        ]
    )
    # arrives late, happened earlier: must not undo the erasure or the end of the relationship
    store.record_events([ev(10, "relationship.started", s, "2026-01-01T10:00:00Z")])
    facts = store.facts_for(s)
    assert facts.objections == frozenset() and facts.consents == frozenset()
    assert facts.erasure_requested and facts.relationship == "ended"
    view = store.subject_view(s)
    assert view["last_access_request_at"] == "2026-03-09T10:00:00+00:00"
    assert view["history"][0]["id"] == "ev-10"  # ordered by occurred_at
    assert view["subject_key"].startswith("hs_") and "cust-1" not in repr(view)
    assert SubjectFacts.from_dict(view) == facts
    assert store.subject_view("nobody") is None
    assert store.facts_for("nobody") == SubjectFacts()


def test_facts_for_many_agrees_with_facts_for(make_store: Any) -> None:
    """The batch read gives every subject what the one-subject read gives, across IN chunks (the
    one-subject reads on a store without the facts cache: read from the events each time)."""
    store = make_store()
    plain = make_store(facts_cache_size=0)
    rng = random.Random(7)
    kinds = ["objection.registered", "consent.granted", "consent.withdrawn", "relationship.started",
             "relationship.ended", "erasure.requested"]
    events = []
    for i in range(1200):
        subject = f"cust-{rng.randrange(700)}"
        day = rng.randrange(1, 28)
        events.append(ev(i, rng.choice(kinds), subject, f"2026-03-{day:02d}T10:00:00Z"))
    store.record_events(events[:600])
    store.record_events(events[600:])
    asked = [f"cust-{n}" for n in range(720)] + ["cust-3", "cust-3", "nobody"]  # unknowns, repeats
    many = store.facts_for_many(asked)
    assert set(many) == set(asked)
    for subject in set(asked):
        assert many[subject] == plain.facts_for(subject) == store.facts_for(subject), subject
    assert many["nobody"] == SubjectFacts()
    assert any(f.objections for f in many.values()) and any(f.relationship for f in many.values())
    assert store.facts_for_many([]) == {}


def test_ties_by_arrival(make_store: Any) -> None:
    store = make_store()
    at = "2026-03-01T10:00:00Z"
    store.record_events([ev(1, "consent.granted", "c", at), ev(2, "consent.withdrawn", "c", at)])
    assert store.facts_for("c").consents == frozenset()
    store.record_events([ev(3, "consent.granted", "c", at)])
    assert store.facts_for("c").consents == {"disclosure"}


def _all_text(store: Any) -> str:
    chunks = []
    with store.engine.connect() as conn:
        for table in sa.inspect(conn).get_table_names():
            for row in conn.execute(sa.text(f"SELECT * FROM {table}")):
                for value in row:
                    chunks.append(
                        value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)
                    )
    return "\n".join(chunks)


def test_clear_id_only_in_undelivered_bodies(make_store: Any) -> None:
    clear = "Matti.Meikalainen-19750101"
    store = make_store([SUB])
    store.record_events([ev(1, subject=clear), ev(2, "consent.granted", subject=clear)])
    text = _all_text(store)
    assert clear not in text  # the one pending webhook body is sealed at rest
    [claim] = store.claim_due(10, 60)
    assert clear.encode() in claim.body  # and opened for the worker
    from kti_policy.store.tables import deliveries_t

    with store.engine.begin() as conn:
        conn.execute(deliveries_t.update().values(body=None, status="delivered"))
    assert clear not in _all_text(store)


def test_sqlite_file_keeps_no_removed_body(make_store: Any) -> None:
    if make_store.db.backend != "sqlite":
        pytest.skip("file bytes: SQLite only (secure_delete)")
    clear = "Liisa-Virtanen-XYZ-42"
    store = make_store([SUB])
    store.record_events([ev(i, subject=clear) for i in range(20)])
    from kti_policy.store.tables import deliveries_t

    with store.engine.begin() as conn:
        conn.execute(deliveries_t.update().values(body=None, status="delivered"))
    with store.engine.connect() as conn:
        conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
    path = sa.engine.make_url(store.url).database
    with open(path, "rb") as fh:
        assert clear.encode() not in fh.read()


def test_outbox_admin(make_store: Any) -> None:
    store = make_store([SUB])
    store.record_events([ev(1), ev(2, "consent.granted")])  # crm does not want consents
    [d] = store.list_deliveries()
    assert d["status"] == "pending" and d["event_id"] == "ev-1" and "body" not in d
    assert store.outbox_stats()["depth"] == 1
    with pytest.raises(RequestError):
        store.retry_delivery(d["id"])
    with pytest.raises(NotFound):
        store.retry_delivery(999999)
    with pytest.raises(RequestError):
        store.list_deliveries(status="lost")
    assert store.ping()


def test_reopen_migrates_idempotently(make_store: Any) -> None:
    a = make_store()
    a.record_events([ev(1)])
    b = make_store()
    assert not b.record_events([ev(1)])[0].created


def test_concurrent_posts_with_duplicates_record_once(make_store: Any) -> None:
    store = make_store([SUB])
    unique = 1000
    events = [ev(i, subject=f"c{i % 50}") for i in range(unique)]
    posts = events + random.Random(7).sample(events, unique)  # 2,000 posts, every id twice
    random.Random(8).shuffle(posts)
    created: list[int] = []
    errors: list[BaseException] = []
    lock = threading.Lock()

    def client(chunk: list[dict[str, Any]]) -> None:
        try:
            for i in range(0, len(chunk), 5):
                n = sum(r.created for r in store.record_events(chunk[i : i + 5], batch=True))
                with lock:
                    created.append(n)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    started = time.monotonic()
    threads = [threading.Thread(target=client, args=(posts[k::8],)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors, errors[:3]
    assert sum(created) == unique
    assert status_counts(store)["pending"] == unique
    with store.engine.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM events")).scalar() == unique
    assert time.monotonic() - started < 120


def test_postgres_urls_use_psycopg3() -> None:
    assert normalize_url("postgresql://u@h/db") == "postgresql+psycopg://u@h/db"
    assert normalize_url("postgres://u@h/db") == "postgresql+psycopg://u@h/db"
    assert normalize_url("sqlite:///x.db") == "sqlite:///x.db"


def test_from_config_defaults(tmp_path: Any, monkeypatch: Any) -> None:
    from kti_policy.hooks.fanout import Store

    hooks = tmp_path / "hooks"
    hooks.mkdir()
    (hooks / "a.yaml").write_text(
        "subscriptions:\n  - {id: a, url: 'http://127.0.0.1:1/', events: [erasure.requested],"
        " secret_env: KTI_T_SECRET_A}\n  - {id: b, url: 'http://127.0.0.1:1/',"
        " events: [erasure.requested], secret_env: KTI_T_SECRET_UNSET}\n"
    )
    monkeypatch.delenv("KTI_T_SECRET_UNSET", raising=False)
    from conftest import new_hook_secret

    store = Store.from_config(
        {
            "KTI_INSTANCE_DIR": str(tmp_path / "inst"),
            "KTI_HOOKS_DIR": str(hooks),
            "KTI_T_SECRET_A": new_hook_secret(),
        }
    )
    try:
        assert [s.id for s in store.subscriptions] == ["a"]
        assert (tmp_path / "inst" / "kti.sqlite3").exists()
        assert (tmp_path / "inst" / "pseudonym.key").exists()
    finally:
        store.close()


def test_facts_reads_are_one_statement_and_writes_still_begin(make_store: Any) -> None:
    """The decision path's facts reads are a single SELECT (no BEGIN/COMMIT round trips on SQLite);
    writes still open their transaction with BEGIN IMMEDIATE."""
    store = make_store()
    statements: list[str] = []

    @sa.event.listens_for(store.engine, "before_cursor_execute")
    def _seen(_conn: Any, _cur: Any, statement: str, *_a: Any) -> None:
        statements.append(statement.split()[0].upper())

    store.record_events([ev(1, subject="a"), ev(2, "consent.granted", subject="b")])
    if make_store.db.backend == "sqlite":
        assert statements[0] == "BEGIN"  # BEGIN IMMEDIATE
    statements.clear()
    assert store.facts_for("a").objections == {"direct_marketing"}
    assert statements == []  # the single read runs on the driver connection: no BEGIN, no COMMIT
    statements.clear()
    many = store.facts_for_many(["a", "b", "c"])
    assert statements == ["SELECT"]
    assert many["b"].consents == {"disclosure"} and many["c"] == SubjectFacts()


def test_driver_read_gives_what_sqlalchemy_gives(make_store: Any) -> None:
    """facts_for (driver connection) folds the same rows, times and types as subject_view (SQLAlchemy)."""
    store = make_store()
    store.record_events(
        [
            ev(1, "relationship.started", "x", "2026-01-01T10:00:00+02:00"),
            ev(2, "access_request.received", "x", "2026-02-03T23:30:00-05:00", written=True, signed=True),
            ev(3, "access_request.received", "x", "2025-12-01T08:00:00Z", written=True, signed=False),
            ev(4, "consent.granted", "x", "2026-01-05T10:00:00Z"),
        ]
    )
    facts = store.facts_for("x")
    assert facts == SubjectFacts.from_dict(store.subject_view("x"))
    assert all(at.tzinfo is not None and at.utcoffset().total_seconds() == 0 for at in facts.access_requests)
    assert max(facts.access_requests).isoformat() == "2026-02-04T04:30:00+00:00"


def test_driver_read_failure_is_raised_and_the_pool_recovers(make_store: Any, monkeypatch: Any) -> None:
    store = make_store()
    store.record_events([ev(1, subject="y")])
    monkeypatch.setattr(store._facts_read, "sql", "SELECT * FROM no_such_table")
    with pytest.raises(Exception, match="no_such_table"):
        store.facts_for("y")
    monkeypatch.undo()
    assert store.facts_for("y").objections == {"direct_marketing"}



def test_claim_bounded_per_subscription_looks_past_a_queue(make_store: Any) -> None:
    """``per_subscription`` bounds one subscription's deliveries in the claimer's hands (``busy``
    counts those it holds); the due rows of other subscriptions behind its queue are claimed."""
    from dataclasses import replace

    other = replace(SUB, id="erp", events=frozenset({"erasure.requested"}))
    store = make_store([SUB, other])
    store.record_events([ev(i, subject=f"c-{i}") for i in range(8)])  # crm's 8 at the queue's front
    store.record_events([ev(10 + i, "erasure.requested", subject=f"e-{i}") for i in range(3)])  # both
    held = store.claim_due(2, 60, busy={"crm": 2}, per_subscription=2)  # crm full: past its 8 rows
    assert [c.subscription_id for c in held] == ["erp", "erp"]
    more = store.claim_due(4, 60, busy={"crm": 1, "erp": 2}, per_subscription=3)
    assert sorted(c.subscription_id for c in more) == ["crm", "crm", "erp"]
    assert not {c.id for c in more} & {c.id for c in held}  # leased rows are not claimed twice
    assert store.claim_due(4, 60, busy={"crm": 3, "erp": 3}, per_subscription=3) == []
    unbounded = store.claim_due(20, 60)
    assert sorted(c.subscription_id for c in unbounded) == ["crm"] * 9  # 11 crm rows, 2 claimed


def test_release_claims_gives_back_only_what_is_still_held(make_store: Any) -> None:
    store = make_store([SUB])
    store.record_events([ev(i, subject=f"c-{i}") for i in range(3)])
    held = store.claim_due(3, 60)
    assert store.claim_due(3, 60) == []
    from kti_policy.store.tables import deliveries_t

    with store.engine.begin() as conn:  # the first row's lease was lost to another worker
        conn.execute(deliveries_t.update().where(deliveries_t.c.id == held[0].id).values(claim_token="other"))
    assert store.release_claims(held) == 2
    assert sorted(c.id for c in store.claim_due(3, 60)) == sorted(c.id for c in held[1:])
    assert store.release_claims([]) == 0
