"""Private files for what the service keeps on disk: the instance folder (0700), the SQLite
database and its WAL/shared-memory files and the pseudonym key (0600).

The SQLite file holds the event history and sealed webhook bodies; under a usual umask it and its
folder came out 0644/0755, readable by every local user. ``serve``, ``deliver`` and gunicorn all
open the store through ``Store.from_config``, which calls these first.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

log = logging.getLogger(__name__)


def _tighten(path: Path, private: int) -> None:
    """Drop group/other bits from a path this process owns (leave others' files alone)."""
    try:
        st = path.stat()
    except FileNotFoundError:
        return
    if st.st_mode & 0o077 and st.st_uid == os.getuid():
        os.chmod(path, private)
        log.warning("%s was readable by other users; made it private", path)


def private_dir(path: Path) -> Path:
    """Create ``path`` (and missing parents) as 0700, or make an existing one private."""
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    _tighten(path, 0o700)
    return path


def private_file(path: Path) -> Path:
    """Create ``path`` empty as 0600 when missing, or make an existing one private."""
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    except FileExistsError:
        _tighten(path, 0o600)
    return path


def private_sqlite(db: Path) -> None:
    """The database file before SQLite opens it (its -wal and -shm files take its mode), and any
    of those left from before, made private."""
    if not db.parent.exists():
        private_dir(db.parent)
    private_file(db)
    for suffix in ("-wal", "-shm", "-journal"):
        _tighten(db.with_name(db.name + suffix), 0o600)
