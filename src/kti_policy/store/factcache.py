"""Subjects' folded facts kept in memory while the events table has not changed.

Reading a subject's events and folding them was the largest single cost of a decision request
(bench/app_profile.py). Triggers on ``events`` (migration 0003) raise the facts version (the sum of
the ``facts_version`` rows) for every row inserted, updated or deleted, in the same transaction,
whoever writes, so:

* a request reads the version first, then the events of subjects it has no facts for;
* facts read after the version was ``v`` are at least as new as ``v``; while a later request still
  reads ``v``, no change to ``events`` has been committed since, by this process or any other
  replica, so those facts are the subject's facts now;
* any other version drops every entry. One new event anywhere invalidates all: simple, and the
  alternative (a missed invalidation) would allow what the subject has objected to.

Entries are keyed by the subject's pseudonym, never the clear id. The bound evicts oldest first.
"""

from __future__ import annotations

from threading import Lock

from kti_policy.facts.fold import SubjectFacts

DEFAULT_SIZE = 65536  # subjects; KTI_FACTS_CACHE_SIZE (0: off)


class FactsCache:
    """Folded facts per subject key, valid for one ``facts_version``. Thread-safe."""

    def __init__(self, size: int = DEFAULT_SIZE) -> None:
        if size < 0:
            raise ValueError("the facts cache size must be 0 (off) or more")
        self.size = size
        self._version: int | None = None
        self._facts: dict[str, SubjectFacts] = {}
        self._lock = Lock()

    @property
    def enabled(self) -> bool:
        return self.size > 0

    def lookup(self, version: int | None, keys: list[str]) -> dict[str, SubjectFacts]:
        """The cached facts of those ``keys`` that are known at ``version`` (None: no version
        could be read, nothing is known); a new version empties the cache first."""
        if version is None or not self.size:
            return {}
        with self._lock:
            if version != self._version:
                self._version, self._facts = version, {}
                return {}
            facts = self._facts
            return {key: facts[key] for key in keys if key in facts}

    def store(self, version: int | None, found: dict[str, SubjectFacts]) -> None:
        """Keep facts read after ``version`` was read; dropped when the cache has moved on to
        another version meanwhile (they may be older than it)."""
        if version is None or not self.size or not found:
            return
        with self._lock:
            if version != self._version:
                return
            facts = self._facts
            for key, value in found.items():
                if key not in facts and len(facts) >= self.size:
                    del facts[next(iter(facts))]  # the oldest entry
                facts[key] = value

    def __len__(self) -> int:
        return len(self._facts)
