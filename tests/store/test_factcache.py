"""The facts cache: hits only while no event was recorded anywhere, and never an older fact.

Unit tests of ``FactsCache``, then the store on SQLite and PostgreSQL: the same process, a second
store on the same database (another worker or replica), duplicates, a missing version row, and a
random interleaving of writes and reads compared step by step with a store that has no cache.
"""

from __future__ import annotations

import os
import random
from datetime import UTC, datetime
from typing import Any

import pytest
import sqlalchemy as sa
from conftest import in_a_forked_child
from test_store import ev

from kti_policy.errors import EventConflict
from kti_policy.facts.fold import SubjectFacts
from kti_policy.store.factcache import FactsCache
from kti_policy.store.tables import facts_version_t

_T = datetime(2026, 3, 1, 10, 0, tzinfo=UTC)
OBJECTED = SubjectFacts(objections=frozenset({"direct_marketing"}))


def test_a_new_version_empties_the_cache() -> None:
    cache = FactsCache(4)
    assert cache.lookup(1, ["a"]) == {}
    cache.store(1, {"a": OBJECTED})
    assert cache.lookup(1, ["a", "b"]) == {"a": OBJECTED}
    assert cache.lookup(2, ["a"]) == {}
    assert len(cache) == 0
    cache.store(1, {"a": OBJECTED})  # read under the old version: may be older than version 2
    assert cache.lookup(2, ["a"]) == {}


def test_no_version_or_size_zero_caches_nothing() -> None:
    cache = FactsCache(4)
    cache.store(None, {"a": OBJECTED})
    assert cache.lookup(None, ["a"]) == {}
    off = FactsCache(0)
    assert not off.enabled
    assert off.lookup(1, ["a"]) == {}
    off.store(1, {"a": OBJECTED})
    assert off.lookup(1, ["a"]) == {} and len(off) == 0
    with pytest.raises(ValueError):
        FactsCache(-1)


def test_the_bound_evicts_the_oldest() -> None:
    cache = FactsCache(2)
    cache.lookup(7, [])
    cache.store(7, {"a": OBJECTED, "b": SubjectFacts()})
    cache.store(7, {"c": SubjectFacts()})
    assert set(cache.lookup(7, ["a", "b", "c"])) == {"b", "c"}
    cache.store(7, {"b": OBJECTED})  # a key already there takes no room
    assert cache.lookup(7, ["b", "c"]) == {"b": OBJECTED, "c": SubjectFacts()}


def _version(store: Any) -> int:
    with store.engine.connect() as conn:
        return int(conn.execute(sa.select(sa.func.sum(facts_version_t.c.n))).scalar_one())


def _count_event_reads(store: Any) -> list[int]:
    """Wrap the store's events reads; the list's one item counts them."""
    calls = [0]
    run, many = store._facts_read.run, store._rows_by_key

    def counted_run(*args: Any) -> Any:
        calls[0] += 1
        return run(*args)

    def counted_many(*args: Any) -> Any:
        calls[0] += 1
        return many(*args)

    store._facts_read.run, store._rows_by_key = counted_run, counted_many
    return calls


def test_a_second_read_is_a_hit_and_a_new_event_is_seen_at_once(make_store: Any) -> None:
    store = make_store()
    reads = _count_event_reads(store)
    assert store.facts_for("c1") == SubjectFacts()
    assert store.facts_for("c1") == SubjectFacts()
    assert reads == [1]
    store.record_events([ev(1, subject="c1")])
    assert store.facts_for("c1").objections == {"direct_marketing"}
    assert store.facts_for_many(["c1", "c2"])["c1"].objections == {"direct_marketing"}
    assert reads == [3]  # after the event: c1 once, then c2 only
    assert store.facts_for_many(["c1", "c2"])["c2"] == SubjectFacts()
    assert reads == [3]


def test_an_event_recorded_by_another_process_is_seen_at_once(make_store: Any) -> None:
    """Two stores on one database are two workers or replicas: each caches, neither misses the
    other's events (the objection stops marketing on the next decision, whoever recorded it)."""
    deciding, ingesting = make_store(), make_store()
    subjects = ["a", "b", "c"]
    assert deciding.facts_for_many(subjects)["b"] == SubjectFacts()
    ingesting.record_events([ev(1, subject="b")])
    assert deciding.facts_for("b").objections == {"direct_marketing"}
    assert deciding.facts_for_many(subjects)["b"].objections == {"direct_marketing"}
    ingesting.record_events([ev(2, "objection.withdrawn", subject="b", at="2026-03-02T10:00:00Z")])
    assert deciding.facts_for_many(subjects)["b"].objections == frozenset()


def test_duplicates_and_conflicts_keep_the_version(make_store: Any) -> None:
    store = make_store()
    before = _version(store)
    store.record_events([ev(1), ev(2, subject="c2")])
    assert _version(store) == before + 2  # a step per event
    store.record_events([ev(1)])  # a duplicate changes no fact
    assert _version(store) == before + 2
    with pytest.raises(EventConflict):
        store.record_events([ev(3), ev(1, subject="someone-else")])  # rolled back whole
    assert _version(store) == before + 2


def test_any_writer_of_events_moves_the_version(make_store: Any) -> None:
    """Triggers keep the version, not the store's code: an older release during a rolling upgrade
    or an operator's SQL that inserts, fixes or deletes an event invalidates every cache too."""
    from kti_policy.store.tables import events_t

    store = make_store()
    assert store.facts_for("c1") == SubjectFacts()
    row = {"event_id": "by-hand", "type": "objection.registered", "subject_key": store.pseudonymizer.subject_key("c1"),
           "data": '{"scope":"direct_marketing"}'}
    with store.engine.begin() as conn:
        conn.execute(sa.insert(events_t).values(**row, occurred_at=_T, received_at=_T))
    assert store.facts_for("c1").objections == {"direct_marketing"}
    with store.engine.begin() as conn:
        conn.execute(sa.update(events_t).where(events_t.c.event_id == "by-hand").values(type="objection.withdrawn"))
    assert store.facts_for("c1").objections == frozenset()
    with store.engine.begin() as conn:
        conn.execute(sa.delete(events_t).where(events_t.c.event_id == "by-hand"))
    assert store.facts_for("c1") == SubjectFacts()
    assert _version(store) == 3


def test_without_the_version_row_every_read_goes_to_the_events(make_store: Any) -> None:
    store = make_store()
    with store.engine.begin() as conn:
        conn.execute(sa.delete(facts_version_t))
    reads = _count_event_reads(store)
    store.facts_for("c1")
    store.record_events([ev(1, subject="c1")])  # the bump updates no row; recording still works
    assert store.facts_for("c1").objections == {"direct_marketing"}
    assert reads == [2] and len(store.facts_cache) == 0


def test_random_writes_and_reads_agree_with_a_store_without_cache(make_store: Any) -> None:
    """Two caching stores (two workers) and one without a cache read the same database after every
    write, from either worker: all three give the same facts at every step."""
    workers = [make_store(), make_store()]
    plain = make_store(facts_cache_size=0)
    rng = random.Random(11)
    kinds = ["objection.registered", "objection.withdrawn", "consent.granted", "consent.withdrawn",
             "relationship.started", "relationship.ended"]
    subjects = [f"s{i}" for i in range(6)]
    for i in range(60):
        if rng.random() < 0.4:
            batch = [ev(f"{i}-{j}", rng.choice(kinds), rng.choice(subjects), f"2026-03-{rng.randrange(1, 28):02d}T10:00:00Z")
                     for j in range(rng.randrange(1, 3))]
            rng.choice(workers).record_events(batch)
        asked = rng.sample(subjects, rng.randrange(1, 4))
        want = {s: plain.facts_for(s) for s in asked}
        for worker in workers:
            got = worker.facts_for_many(asked) if len(asked) > 1 else {asked[0]: worker.facts_for(asked[0])}
            assert got == want, (i, asked)
    assert any(len(w.facts_cache) for w in workers)


def test_the_cache_size_comes_from_the_config(tmp_path: Any) -> None:
    from kti_policy.config import load_config
    from kti_policy.errors import ConfigError
    from kti_policy.store.db import Store

    config = load_config({"KTI_INSTANCE_DIR": str(tmp_path), "KTI_FACTS_CACHE_SIZE": "0",
                          "KTI_PSEUDONYM_KEY": "test-pseudonym-key-0123456789"})
    store = Store.from_config(config)
    try:
        assert not store.facts_cache.enabled
    finally:
        store.close()
    with pytest.raises(ConfigError, match="KTI_FACTS_CACHE_SIZE"):
        load_config({"KTI_FACTS_CACHE_SIZE": "-1"})


def test_the_kept_sqlite_connection_is_replaced_after_a_failure(make_store: Any) -> None:
    """SQLite's decision-path reads use one kept connection (``SharedReader``): a read that fails
    raises (the API answers deny) and drops it; the next read opens another."""
    if make_store.db.backend != "sqlite":
        pytest.skip("PostgreSQL reads through the pool")
    store = make_store()
    store.record_events([ev(1, subject="c1")])
    assert store.facts_for("c1").objections == {"direct_marketing"}
    store._shared_reader._conn.driver_connection.close()  # the connection breaks under it
    with pytest.raises(Exception, match="closed"):
        store.facts_for("c1")
    assert store.facts_for("c1").objections == {"direct_marketing"}


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_forked_child_opens_its_own_kept_connection(make_store: Any) -> None:
    """A gunicorn worker forked from a process that already read must not share its SQLite
    connection (the kept process id is renewed at the fork, without a getpid per read)."""
    if make_store.db.backend != "sqlite":
        pytest.skip("PostgreSQL reads through the pool")
    store = make_store()
    store.record_events([ev(1, subject="c1")])
    assert store.facts_for("c1").objections == {"direct_marketing"}
    parent_conn = store._shared_reader._conn

    def child() -> bytes:  # read, and say whether it did so on a connection of its own
        ok = store.facts_for("c1").objections == {"direct_marketing"}
        own = store._shared_reader._conn is not parent_conn and store._shared_reader._opened[1] == os.getpid()
        return b"ok" if ok and own else b"no"

    assert in_a_forked_child(child) == b"ok"
    assert store._shared_reader._conn is parent_conn  # the child left the parent's alone
    assert store.facts_for("c1").objections == {"direct_marketing"}
