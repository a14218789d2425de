"""The loaded policy set of one process, its reload, and reload propagation between processes.

A reload loads and checks the whole folder first; only a set that loaded without errors replaces the
current one, in one reference assignment (requests in flight keep the set they started with). On
failure the ``PolicyErrors`` propagate and the old set stays.

Several processes (gunicorn workers) serve the same folder, and a reload request reaches only one of
them. After a successful reload that process writes a *generation marker* (a small file in the
instance folder holding a fresh token and the new version). Every process looks at the marker at most
once per ``check_interval`` seconds, on the request path, and when its token changed loads the folder
itself. So every worker serves the new ``policy_version`` within about ``check_interval`` seconds of
its next request; a process that is busy loading keeps answering from the old set meanwhile.
"""

from __future__ import annotations

import hashlib
import logging
import os
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kti_policy.errors import KtiError, PolicyErrors

log = logging.getLogger(__name__)

Loader = Callable[[str], Any]  # (dir) -> PolicySet, raises PolicyErrors
DeciderFactory = Callable[[Any], Any]  # (PolicySet) -> Decider


@dataclass(frozen=True)
class Loaded:
    """A policy set together with the decider built for it: swapped as one reference."""

    policy_set: Any
    decider: Any
    loaded_at: float

    @property
    def version(self) -> str:
        return str(self.policy_set.version)


def marker_path_for(instance_dir: str | os.PathLike[str], policy_dir: str) -> Path:
    """The marker file for a policy folder: one per folder, so that two services sharing an
    instance folder but serving different folders do not reload each other."""
    digest = hashlib.sha256(os.path.abspath(policy_dir).encode()).hexdigest()[:16]
    return Path(instance_dir) / f"policy-generation-{digest}"


def _default_loader(directory: str) -> Any:
    from kti_policy.policy.loader import load_policy_set

    return load_policy_set(directory)


def _default_decider(policy_set: Any) -> Any:
    from kti_policy.decide.decision import Decider

    return Decider(policy_set)


class PolicyHolder:
    def __init__(
        self,
        policy_dir: str,
        marker_path: str | os.PathLike[str],
        *,
        check_interval: float = 1.0,
        loader: Loader | None = None,
        decider_factory: DeciderFactory | None = None,
        on_loaded: Callable[[Loaded | None, Loaded, str], None] | None = None,
    ) -> None:
        """``on_loaded(old, new, how)`` is called after every swap; ``how`` is ``initial``,
        ``reload`` (this process was asked) or ``sync`` (another process reloaded)."""
        self.policy_dir = str(policy_dir)
        self.marker_path = Path(marker_path)
        self.check_interval = check_interval
        self._load = loader or _default_loader
        self._make_decider = decider_factory or _default_decider
        self._on_loaded = on_loaded
        self._loaded: Loaded | None = None
        self._seen_token: str | None = None
        self._next_check = 0.0
        self._lock = threading.Lock()

    # -- reading -----------------------------------------------------------------------------

    def current(self) -> Loaded:
        """The set to answer with, after looking at the marker if it is time to."""
        if time.monotonic() >= self._next_check:
            self._sync_from_marker()
        loaded = self._loaded
        if loaded is None:
            raise KtiError("no policy set is loaded")  # maps to 500; readyz reports it
        return loaded

    @property
    def loaded(self) -> Loaded | None:
        """The current set without checking the marker (None before the first load)."""
        return self._loaded

    def policy_set(self) -> Any:
        return self.current().policy_set

    def decider(self) -> Any:
        return self.current().decider

    # -- loading -----------------------------------------------------------------------------

    def _build(self) -> Loaded:
        policy_set = self._load(self.policy_dir)
        decider = self._make_decider(policy_set)
        return Loaded(policy_set, decider, time.time())

    def load_initial(self) -> Loaded:
        """Load the folder at start; raises ``PolicyErrors`` when it does not load."""
        with self._lock:
            self._seen_token = self._read_marker()
            new = self._build()
            self._swap(new, "initial")
            self._next_check = time.monotonic() + self.check_interval
            return new

    def reload(self) -> tuple[Loaded | None, Loaded]:
        """Load and check the whole folder, swap, and tell the other processes.

        Raises ``PolicyErrors`` (the old set stays) when any file has an error.
        """
        with self._lock:
            old = self._loaded
            new = self._build()  # raises before anything changes
            self._swap(new, "reload")
            self._seen_token = self._write_marker(new.version)
            self._next_check = time.monotonic() + self.check_interval
            return old, new

    def _swap(self, new: Loaded, how: str) -> None:
        old = self._loaded
        self._loaded = new
        if old is None or old.version != new.version:
            log.info("policy set %s loaded (%s) from %s", new.version, how, self.policy_dir)
        if self._on_loaded is not None:
            try:
                self._on_loaded(old, new, how)
            except Exception:  # a metrics hiccup must not undo a good reload
                log.exception("on_loaded callback failed")

    def _sync_from_marker(self) -> None:
        self._next_check = time.monotonic() + self.check_interval
        token = self._read_marker()
        if token is None or token == self._seen_token:
            return
        if not self._lock.acquire(blocking=False):
            return  # another thread of this process is loading; keep serving the current set
        try:
            if token == self._seen_token:
                return
            self._seen_token = token  # tried once per marker: a bad folder is not retried in a loop
            try:
                new = self._build()
            except PolicyErrors as errs:
                log.error(
                    "another process reloaded the policies, but this one cannot load %s; "
                    "keeping %s:\n%s",
                    self.policy_dir,
                    self._loaded.version if self._loaded else None,
                    errs,
                )
                return
            except Exception:
                log.exception("policy sync failed; keeping the current set")
                return
            self._swap(new, "sync")
        finally:
            self._lock.release()

    # -- the marker --------------------------------------------------------------------------

    def _read_marker(self) -> str | None:
        try:
            return self.marker_path.read_text(encoding="utf-8").strip() or None
        except FileNotFoundError:
            return None
        except OSError:
            log.warning("cannot read the policy generation marker %s", self.marker_path)
            return None

    def _write_marker(self, version: str) -> str:
        token = f"{version} {secrets.token_hex(8)}"
        try:
            self.marker_path.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.marker_path.with_name(f".{self.marker_path.name}.{secrets.token_hex(4)}")
            tmp.write_text(token + "\n", encoding="utf-8")
            os.replace(tmp, self.marker_path)  # atomic: readers see the old or the new token
        except OSError:
            log.exception(
                "cannot write the policy generation marker %s: other workers will not reload",
                self.marker_path,
            )
        return token
