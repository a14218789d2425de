"""``once_property``: computed on first read, kept on the instance, no lock (kti_policy.once)."""

from __future__ import annotations

import threading
from dataclasses import dataclass

from kti_policy.once import once_property


@dataclass(frozen=True)
class Point:
    x: int
    calls: list[int]

    @once_property
    def double(self) -> int:
        """Twice x."""
        self.calls.append(1)
        return self.x * 2


def test_computed_once_per_instance_on_a_frozen_dataclass() -> None:
    calls: list[int] = []
    p, q = Point(3, calls), Point(5, calls)
    assert (p.double, p.double, q.double, q.double) == (6, 6, 10, 10)
    assert len(calls) == 2
    assert Point.double.__doc__ == "Twice x." and isinstance(Point.__dict__["double"], once_property)


def test_threads_reading_a_fresh_instance_all_see_the_value() -> None:
    p = Point(7, [])
    seen: list[int] = []
    threads = [threading.Thread(target=lambda: seen.append(p.double)) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert seen == [14] * 8 and p.double == 14
