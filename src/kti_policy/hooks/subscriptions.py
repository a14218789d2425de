"""Webhook subscriptions: every ``*.yaml``/``*.yml`` file in ``KTI_HOOKS_DIR`` (CONTRACT section 4).

::

    subscriptions:
      - id: marketing-platform                 # unique across the folder
        url: http://127.0.0.1:9000/kti          # http(s) URL to POST to
        events: [objection.registered, consent.withdrawn]
        secret_env: KTI_HOOK_SECRET_MARKETING   # env var holding "whsec_<base64 of 24-64 bytes>"
        holds: [name, email]                    # optional: data categories this system keeps
                                                # (the obligations register opens its deletion tasks)

Besides the recorded event types, ``events`` may name the register's own webhooks
(``REGISTER_EVENTS``: ``deletion.due``, ``obligation.due_soon``, ``obligation.overdue``).

``load_subscriptions(dir)`` returns them or raises ``PolicyErrors`` with every problem at
``file:line:col``; ``check_hooks(dir, environ)`` returns the problems for ``kti-policy check``, where
an unset secret variable is only a warning (CI rarely has production secrets).

At service or worker start, ``active_subscriptions(subs, environ)`` attaches each secret: a
subscription whose variable is unset is skipped with a logged warning (no deliveries are created for
it, so ``make serve`` runs without any secret); a set but malformed secret is a ``ConfigError`` that
says what is wrong (a pasted ``v1,...`` signature, a raw string without ``whsec_``, bad base64, a
wrong length).
"""

from __future__ import annotations

import base64
import binascii
import logging
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from kti_policy.errors import ConfigError, PolicyError, PolicyErrors, Position
from kti_policy.facts.fold import EVENT_TYPES
from kti_policy.policy.yamlpos import LList, LMap, load_file

log = logging.getLogger(__name__)

SUBSCRIPTION_KEYS = ("id", "url", "events", "secret_env")
OPTIONAL_KEYS = ("holds",)
#: webhooks the obligations register sends (CONTRACT section 8); not inbound event types
REGISTER_EVENTS = ("deletion.due", "obligation.due_soon", "obligation.overdue")
CATEGORY_RE = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}$")
ENV_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
SECRET_PREFIX = "whsec_"


@dataclass(frozen=True)
class Subscription:
    """One subscriber. ``secret`` (the decoded key) is attached by ``active_subscriptions``."""

    id: str
    url: str
    events: frozenset[str]
    secret_env: str
    position: Position | None = field(default=None, compare=False)
    secret: bytes | None = field(default=None, repr=False, compare=False)
    holds: frozenset[str] = frozenset()

    def wants(self, event_type: str) -> bool:
        return event_type in self.events


def parse_secret(value: str, name: str) -> bytes:
    """Decode ``whsec_<base64>`` (24-64 bytes); ``ConfigError`` explaining a wrong paste."""
    text = value.strip()
    if text.startswith(("v1,", "v1a,")):
        raise ConfigError(
            f"{name} holds a signature ('v1,...'), not a secret: it must be 'whsec_<base64>'",
            {"env": name},
        )
    if not text.startswith(SECRET_PREFIX):
        raise ConfigError(
            f"{name} must be 'whsec_' followed by the base64 of 24-64 random bytes "
            "(e.g. python -c \"import base64,os;print('whsec_'+base64.b64encode(os.urandom(32))"
            '.decode())"); a raw string is not accepted',
            {"env": name},
        )
    try:
        raw = base64.b64decode(text[len(SECRET_PREFIX) :], validate=True)
    except (binascii.Error, ValueError):
        raise ConfigError(
            f"{name}: the part after 'whsec_' is not valid base64", {"env": name}
        ) from None
    if not 24 <= len(raw) <= 64:
        raise ConfigError(
            f"{name}: the secret decodes to {len(raw)} bytes; it must be 24 to 64 bytes",
            {"env": name},
        )
    return raw


def active_subscriptions(
    subscriptions: Sequence[Subscription], environ: Mapping[str, str]
) -> list[Subscription]:
    """Attach secrets; skip (with a warning) those whose secret variable is unset."""
    active: list[Subscription] = []
    for sub in subscriptions:
        value = environ.get(sub.secret_env)
        if not value:
            log.warning(
                "webhook subscription %r is disabled: %s is not set (no deliveries are created "
                "for it until it is set and the service restarted)",
                sub.id,
                sub.secret_env,
            )
            continue
        active.append(replace(sub, secret=parse_secret(str(value), sub.secret_env)))
    return active


def _files(folder: Path) -> list[Path]:
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if p.suffix in (".yaml", ".yml") and p.is_file())


def _blank(path: Path) -> bool:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return False
    return not any(ln.strip() and not ln.lstrip().startswith("#") for ln in text.splitlines())


def _parse(
    folder: Path, environ: Mapping[str, str] | None, categories: Sequence[str] | None = None
) -> tuple[list[Subscription], list[PolicyError]]:
    subs: list[Subscription] = []
    errors: list[PolicyError] = []
    seen: dict[str, Position] = {}
    for path in _files(folder):
        if _blank(path):
            continue
        data, errs = load_file(path)
        errors.extend(errs)
        if data is None:
            continue
        fpos = Position(str(path), 1, 1)
        if not isinstance(data, LMap):
            errors.append(
                PolicyError(
                    "hook_invalid",
                    "a hooks file must be a mapping with 'subscriptions:'",
                    getattr(data, "pos", fpos),
                )
            )
            continue
        for key in data:
            if key != "subscriptions":
                errors.append(
                    PolicyError(
                        "unknown_key",
                        f"unknown key {key!r} (expected 'subscriptions')",
                        data.key_at(key),
                    )
                )
        items = data.get("subscriptions")
        if items is None:
            errors.append(PolicyError("missing_key", "'subscriptions' is missing", data.pos))
            continue
        if not isinstance(items, LList):
            errors.append(
                PolicyError(
                    "hook_invalid", "'subscriptions' must be a list", data.at("subscriptions")
                )
            )
            continue
        for i, item in enumerate(items):
            sub = _subscription(item, items.at(i), errors, environ, categories)
            if sub is None:
                continue
            if sub.id in seen:
                first = seen[sub.id]
                errors.append(
                    PolicyError(
                        "duplicate_subscription",
                        f"duplicate subscription id {sub.id!r} (first at {first})",
                        sub.position or items.at(i),
                    )
                )
                continue
            seen[sub.id] = sub.position or items.at(i)
            subs.append(sub)
    return subs, errors


def _subscription(
    item: Any,
    pos: Position,
    errors: list[PolicyError],
    environ: Mapping[str, str] | None,
    categories: Sequence[str] | None = None,
) -> Subscription | None:
    if not isinstance(item, LMap):
        errors.append(PolicyError("hook_invalid", "a subscription must be a mapping", pos))
        return None
    n_before = len(errors)
    for key in item:
        if key not in SUBSCRIPTION_KEYS + OPTIONAL_KEYS:
            errors.append(
                PolicyError(
                    "unknown_key",
                    f"unknown key {key!r}; a subscription has "
                    f"{', '.join(SUBSCRIPTION_KEYS + OPTIONAL_KEYS)}",
                    item.key_at(key),
                )
            )
    for key in SUBSCRIPTION_KEYS:
        if key not in item:
            errors.append(
                PolicyError("missing_key", f"subscription: {key!r} is required", item.pos)
            )
    sid, url, events, secret_env = (item.get(k) for k in SUBSCRIPTION_KEYS)
    if "id" in item and (not isinstance(sid, str) or not ID_RE.match(sid)):
        errors.append(
            PolicyError("hook_invalid", "id: 1-64 letters, digits, '_', '-', '.'", item.at("id"))
        )
    if "url" in item:
        ok = False
        if isinstance(url, str):
            parts = urlsplit(url)
            ok = parts.scheme in ("http", "https") and bool(parts.hostname)
        if not ok:
            errors.append(
                PolicyError(
                    "bad_url", f"url: {url!r} is not an http(s) URL with a host", item.at("url")
                )
            )
    event_set: set[str] = set()
    if "events" in item:
        if not isinstance(events, LList) or not events:
            errors.append(
                PolicyError(
                    "hook_invalid", "events: a non-empty list of event types", item.at("events")
                )
            )
        else:
            for j, etype in enumerate(events):
                if etype not in EVENT_TYPES and etype not in REGISTER_EVENTS:
                    known = ", ".join((*EVENT_TYPES, *REGISTER_EVENTS))
                    errors.append(
                        PolicyError(
                            "unknown_event_type",
                            f"unknown event type {etype!r}; known: {known}",
                            events.at(j),
                        )
                    )
                else:
                    event_set.add(etype)
    holds = _holds(item, errors, categories)
    if "secret_env" in item:
        if not isinstance(secret_env, str) or not ENV_RE.match(secret_env):
            errors.append(
                PolicyError(
                    "hook_invalid",
                    "secret_env: the name of an environment variable",
                    item.at("secret_env"),
                )
            )
        elif environ is not None:
            value = environ.get(secret_env)
            if not value:
                errors.append(
                    PolicyError(
                        "secret_env_unset",
                        f"{secret_env} is not set: subscription {sid!r} is skipped until it is",
                        item.at("secret_env"),
                        severity="warning",
                    )
                )
            else:
                try:
                    parse_secret(str(value), secret_env)
                except ConfigError as exc:
                    errors.append(PolicyError("bad_secret", exc.message, item.at("secret_env")))
    if len(errors) != n_before and any(e.severity == "error" for e in errors[n_before:]):
        return None
    return Subscription(
        str(sid), str(url), frozenset(event_set), str(secret_env), item.pos, holds=holds
    )


def _holds(
    item: LMap, errors: list[PolicyError], categories: Sequence[str] | None = None
) -> frozenset[str]:
    """``holds``: data category ids (snake_case); with ``categories`` (the policy vocabulary's, as
    ``kti-policy check`` passes them), each must be one of them: a misspelt id would silently keep
    that system out of every deletion task."""
    if "holds" not in item:
        return frozenset()
    value = item.get("holds")
    if not isinstance(value, LList):
        errors.append(
            PolicyError("hook_invalid", "holds: a list of data category ids", item.at("holds"))
        )
        return frozenset()
    out: set[str] = set()
    for j, cat in enumerate(value):
        if not isinstance(cat, str) or not CATEGORY_RE.match(cat):
            errors.append(
                PolicyError(
                    "hook_invalid", f"holds: {cat!r} is not a data category id", value.at(j)
                )
            )
        elif categories is not None and cat not in categories:
            errors.append(
                PolicyError(
                    "unknown_id",
                    f"holds: unknown data category {cat!r}; known: {', '.join(sorted(categories))}",
                    value.at(j),
                )
            )
        else:
            out.add(cat)
    return frozenset(out)


def load_subscriptions(folder: Path | str) -> list[Subscription]:
    """Every subscription in the folder (none when it does not exist); raises ``PolicyErrors``."""
    subs, errors = _parse(Path(folder), None)
    if any(e.severity == "error" for e in errors):
        raise PolicyErrors(errors)
    return subs


def check_hooks(
    folder: Path | str,
    environ: Mapping[str, str] | None = None,
    categories: Sequence[str] | None = None,
) -> list[PolicyError]:
    """Problems in the hook files, sorted; with ``environ``, unset secrets are warnings and
    malformed ones errors; with ``categories``, ``holds`` ids must be among them."""
    _, errors = _parse(Path(folder), environ, categories)
    return sorted(set(errors), key=PolicyError.sort_key)
