"""The decision log (CONTRACT section 6): one JSON line per decision.

Each line holds decision_id, time, the whole request with the subject id replaced by its keyed
pseudonym, the subject facts the decision used, the decision, its rule ids and policy_version:
enough to replay it against another policy version, and never a clear subject id. The record itself
comes from ``Decision.log_record(subject_key)``; this module only writes it.

Writing: the line (or, for a batch, all its lines) is written with a single ``os.write`` on a file
opened with ``O_APPEND``. That keeps lines whole when several gunicorn workers append to one file,
needs no thread or queue that a fork or a crash could lose, and costs one system call into the page
cache per request (a few microseconds; see ``bench/http_bench.py``). The log is not fsync'ed per
line: a power loss may lose the last lines, a process crash does not.

That holds for a regular file. A pipe (``-`` when stdout is a pipe, as under Docker or systemd)
only keeps a single write whole up to ``PIPE_BUF`` (4 KiB): a longer write from one worker can
interleave with another worker's. On a pipe the lines therefore go out in writes of whole lines of
at most ``PIPE_BUF`` bytes; a single line longer than that can still interleave, so a server with
several workers should log to a file.
"""

from __future__ import annotations

import json
import logging
import os
import select
import stat
import sys
import threading
from collections.abc import Iterable, Mapping
from typing import Any

from .jsonresp import line_bytes

log = logging.getLogger(__name__)


class DecisionLog:
    """Append-only JSON-lines writer; ``DecisionLog.open(None)`` is a no-op log."""

    def __init__(self, fd: int | None, target: str | None, owns_fd: bool) -> None:
        self._fd = fd
        self.target = target
        self._owns_fd = owns_fd
        self._pid = os.getpid()
        self._lock = threading.Lock()
        # None: one write for the lot (a regular file); else the largest write a pipe keeps whole
        self._chunk: int | None = None
        if fd is not None and not stat.S_ISREG(os.fstat(fd).st_mode):
            self._chunk = select.PIPE_BUF

    @classmethod
    def open(cls, target: str | None) -> DecisionLog:
        """``target`` is a path, ``-`` for stdout, or None/empty for no log."""
        if not target:
            return cls(None, None, False)
        if target == "-":
            return cls(sys.stdout.fileno(), "-", False)
        path = os.path.abspath(target)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o640)
        return cls(fd, path, True)

    @property
    def enabled(self) -> bool:
        return self._fd is not None

    def write(self, record: Mapping[str, Any]) -> None:
        self.write_many((record,))

    def write_many(self, records: Iterable[Mapping[str, Any]]) -> None:
        """Write the records as consecutive lines in one system call."""
        if self._fd is None:
            return
        if self._chunk is None:
            chunks = [b"".join([line_bytes(r) for r in records])]
        else:
            chunks = _whole_lines((line_bytes(r) for r in records), self._chunk)
        with self._lock:
            for data in chunks:
                view = memoryview(data)
                while view:
                    written = os.write(self._fd, view)  # O_APPEND: each call lands at the end
                    view = view[written:]

    def close(self) -> None:
        if self._owns_fd and self._fd is not None and os.getpid() == self._pid:
            os.close(self._fd)
        self._fd = None


def _whole_lines(lines: Iterable[bytes], limit: int) -> list[bytes]:
    """Group lines into writes of at most ``limit`` bytes (a longer line is a write of its own)."""
    out: list[bytes] = []
    current: list[bytes] = []
    size = 0
    for line in lines:
        if current and size + len(line) > limit:
            out.append(b"".join(current))
            current, size = [], 0
        current.append(line)
        size += len(line)
    if current:
        out.append(b"".join(current))
    return out


def read_log(path: str) -> list[dict[str, Any]]:
    """Every record of a decision log file (for replay and tests)."""
    with open(path, encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]
