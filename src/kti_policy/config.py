"""Service configuration: one flat mapping of ``KTI_*`` settings (CONTRACT section 7).

``load_config(None)`` reads the environment when it is called (never at import time);
``load_config(mapping)`` takes the mapping as it is, filling in defaults, so tests pass dicts.
The result is a plain ``dict`` that every component reads its own keys from (the store and
pseudonymizer read ``KTI_DATABASE_URL``, ``KTI_PSEUDONYM_KEY``, ``KTI_INSTANCE_DIR``; the HTTP layer
the rest).
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import os
import socket
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .errors import ConfigError

DEFAULTS: dict[str, Any] = {
    "KTI_POLICY_DIR": "./policies",
    "KTI_HOOKS_DIR": "./hooks",
    "KTI_INSTANCE_DIR": "./instance",
    "KTI_DATABASE_URL": None,  # None: a SQLite file in the instance folder (the store decides)
    "KTI_PSEUDONYM_KEY": None,  # None: generated once and kept in the instance folder
    "KTI_API_KEYS": "",
    "KTI_DECISION_LOG": None,  # a path, "-" for stdout, None/"" for no log
    "KTI_INBOUND_WEBHOOK_SECRET": None,
    "KTI_HOOK_RETRY_SCHEDULE": "5,300,1800,7200,18000,36000,36000",
    "KTI_MAX_BODY_BYTES": 2 * 1024 * 1024,
    "KTI_MAX_BATCH": 1000,
    "KTI_FACTS_CACHE_SIZE": 65536,
    "KTI_RELOAD_CHECK_SECONDS": 1.0,
}

#: Settings that hold secrets: never logged or shown.
SECRET_KEYS = frozenset({"KTI_PSEUDONYM_KEY", "KTI_API_KEYS", "KTI_INBOUND_WEBHOOK_SECRET"})

_INT_KEYS = ("KTI_MAX_BODY_BYTES", "KTI_MAX_BATCH", "KTI_FACTS_CACHE_SIZE")
_FLOAT_KEYS = ("KTI_RELOAD_CHECK_SECONDS",)


def load_config(config: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The effective configuration: defaults, overridden by ``config`` (or by the environment).

    With a mapping, every key of it is kept (other components may read their own keys) and the
    environment is not consulted. Numbers given as text are converted; a bad number is a
    ``ConfigError`` naming the setting.
    """
    source: Mapping[str, Any]
    if config is None:
        source = {k: v for k, v in os.environ.items() if k.startswith("KTI_")}
    else:
        source = config
    out: dict[str, Any] = dict(DEFAULTS)
    out.update({k: v for k, v in source.items() if v is not None or k not in DEFAULTS})
    for key in _INT_KEYS:
        out[key] = number_setting(key, out[key], int)
    for key in _FLOAT_KEYS:
        out[key] = number_setting(key, out[key], float)
    if out["KTI_MAX_BODY_BYTES"] <= 0:
        raise ConfigError("KTI_MAX_BODY_BYTES must be positive", {"setting": "KTI_MAX_BODY_BYTES"})
    if out["KTI_FACTS_CACHE_SIZE"] < 0:
        raise ConfigError(
            "KTI_FACTS_CACHE_SIZE must be 0 (off) or a number of subjects", {"setting": "KTI_FACTS_CACHE_SIZE"}
        )
    return out


def number_setting(key: str, value: Any, kind: type) -> Any:
    """``kind(value)``, or a ``ConfigError`` that names the setting and the value given."""
    try:
        return kind(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{key} must be a number, got {value!r}", {"setting": key}) from None


def public_view(config: Mapping[str, Any]) -> dict[str, Any]:
    """The configuration with secrets masked, for logs and diagnostics."""
    return {k: ("***" if k in SECRET_KEYS and v else v) for k, v in config.items()}


def is_loopback_host(host: str) -> bool:
    """True for addresses that only this machine can reach (127.0.0.0/8, ::1, ``localhost``).

    A name other than ``localhost`` is resolved: it counts as loopback only when every address it
    resolves to is loopback. The empty host and wildcard addresses are not loopback.
    """
    host = host.strip().strip("[]")
    if not host:
        return False
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(host, None)
    except OSError:
        return False
    addrs = {str(info[4][0]) for info in infos}
    return bool(addrs) and all(ipaddress.ip_address(a.split("%")[0]).is_loopback for a in addrs)


def bind_host(bind: str) -> str | None:
    """The host part of a gunicorn bind string; None for a unix socket or file descriptor
    (those are not reachable over the network)."""
    if bind.startswith(("unix:", "fd://")):
        return None
    if bind.startswith("["):  # [::1]:8080
        return bind[1:].split("]", 1)[0]
    if bind.count(":") > 1:  # a bare IPv6 address without port
        return bind
    return bind.rsplit(":", 1)[0] if ":" in bind else bind


def check_auth_for_binds(binds: list[str], api_keys_text: str | None) -> list[str]:
    """Refuse (``ConfigError``) to serve a non-loopback address without API keys.

    Returns the warnings to log (auth off on loopback). Used by ``gunicorn.conf.py`` and ``serve``.
    """
    keys = ApiKeys.parse(api_keys_text)
    if keys.enabled:
        return []
    public = [b for b in binds if (h := bind_host(b)) is not None and not is_loopback_host(h)]
    if public:
        raise ConfigError(
            "KTI_API_KEYS is not set: without API keys the service only binds to loopback "
            f"(127.0.0.1 or ::1), not {', '.join(public)}",
            {"binds": public},
        )
    return [
        "KTI_API_KEYS is not set: authentication is OFF; serving on loopback only "
        f"({', '.join(binds)})"
    ]


ROLES = ("query", "ingest", "admin")


# admin may do everything a query or ingest key may do
_IMPLIED: dict[str, frozenset[str]] = {
    "query": frozenset({"query"}),
    "ingest": frozenset({"ingest"}),
    "admin": frozenset(ROLES),
}


def _digest(key: str) -> bytes:
    # Keys are looked up by digest so that the comparison does not leak key prefixes by timing.
    return hashlib.sha256(key.encode("utf-8")).digest()


@dataclass(frozen=True)
class ApiKeys:
    """The configured keys (by digest) and their roles. Empty means auth is off."""

    roles_by_digest: Mapping[bytes, frozenset[str]] = field(default_factory=dict)

    @property
    def enabled(self) -> bool:
        return bool(self.roles_by_digest)

    @classmethod
    def parse(cls, text: str | None) -> ApiKeys:
        """Parse ``key:role[+role],...``; raises ``ConfigError`` naming the bad entry."""
        keys: dict[bytes, frozenset[str]] = {}
        for raw in (text or "").split(","):
            entry = raw.strip()
            if not entry:
                continue
            key, sep, role_text = entry.rpartition(":")
            if not sep or not key:
                raise ConfigError(
                    "KTI_API_KEYS: each entry must be key:role[+role]",
                    {"entry_index": len(keys)},
                )
            roles: set[str] = set()
            for role in role_text.split("+"):
                role = role.strip()
                if role not in _IMPLIED:
                    raise ConfigError(
                        f"KTI_API_KEYS: unknown role {role!r}; known roles: {', '.join(ROLES)}",
                        {"role": role, "known": list(ROLES)},
                    )
                roles |= _IMPLIED[role]
            keys[_digest(key)] = frozenset(roles) | keys.get(_digest(key), frozenset())
        return cls(keys)

    def roles_for(self, key: str) -> frozenset[str] | None:
        """The roles of ``key``, or None when it is not a configured key."""
        found: frozenset[str] | None = None
        wanted = _digest(key)
        for digest, roles in self.roles_by_digest.items():
            # constant-time over the whole table: no early exit on a match
            if hmac.compare_digest(digest, wanted):
                found = roles
        return found
