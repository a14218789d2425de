"""API keys and roles (CONTRACT section 6).

``KTI_API_KEYS`` is a comma-separated list of ``key:role[+role]`` with roles ``query``, ``ingest`` and
``admin``; ``admin`` implies the other two. A key is sent as ``Authorization: Bearer <key>`` or
``X-API-Key: <key>``. With no keys configured auth is off; the app factory and the server entry
points only allow that on a loopback address (see ``kti_policy.config``).

Views declare what they need with ``@require_role("query")``; a request without a valid key raises
``Unauthorized`` (401), one whose key lacks the role raises ``Forbidden`` (403). Both are
``KtiError`` subclasses, rendered by ``kti_policy.api.errors`` like every other error.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from typing import Any, TypeVar, cast

from flask import current_app, g, request

from kti_policy.config import _IMPLIED, ROLES, ApiKeys
from kti_policy.errors import KtiError, Unauthorized

from .schemas import current_request

F = TypeVar("F", bound=Callable[..., Any])

__all__ = ["ApiKeys", "Forbidden", "Unauthorized", "check_role", "presented_key", "require_role"]


class Forbidden(KtiError):
    """A known API key without the role the endpoint needs (HTTP 403)."""

    code = "forbidden"


def presented_key(environ: Mapping[str, Any] | None = None) -> str | None:
    """The key the current request carries, from ``Authorization: Bearer`` or ``X-API-Key``.

    ``environ``: the request's WSGI environ when the caller has it (the headers' WSGI names:
    werkzeug's ``Headers`` cost more here)."""
    if environ is None:
        environ = request.environ
    scheme, _, value = environ.get("HTTP_AUTHORIZATION", "").partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    key = environ.get("HTTP_X_API_KEY", "").strip()
    return key or None


def current_keys() -> ApiKeys:
    """The app's keys; an app without the kti extension has auth off."""
    state = current_app._get_current_object().extensions.get("kti")  # type: ignore[attr-defined]
    keys = getattr(state, "api_keys", None)
    return keys if isinstance(keys, ApiKeys) else ApiKeys()


def check_role(role: str) -> None:
    """Raise ``Unauthorized``/``Forbidden`` unless the current request may act as ``role``."""
    if role not in _IMPLIED:
        raise ValueError(f"unknown role {role!r}")
    keys = current_keys()
    if not keys.enabled:
        g.kti_roles = frozenset(ROLES)
        return
    key = presented_key(current_request().environ)
    if key is None:
        raise Unauthorized(
            "an API key is required: send 'Authorization: Bearer <key>' or 'X-API-Key: <key>'",
            {"required_role": role},
        )
    roles = keys.roles_for(key)
    if roles is None:
        raise Unauthorized("unknown API key", {"required_role": role})
    if role not in roles:
        raise Forbidden(
            f"this API key lacks the role {role!r}",
            {"required_role": role, "roles": sorted(roles)},
        )
    g._get_current_object().kti_roles = roles  # one context look-up, not a proxy's two


def require_role(role: str) -> Callable[[F], F]:
    """Decorator for a view: the caller's API key must have ``role`` (when auth is on)."""
    if role not in _IMPLIED:
        raise ValueError(f"unknown role {role!r}; known roles: {', '.join(ROLES)}")

    def decorate(view: F) -> F:
        @functools.wraps(view)
        def wrapped(*args: Any, **kwargs: Any) -> Any:
            check_role(role)
            return view(*args, **kwargs)

        wrapped.required_role = role  # type: ignore[attr-defined]  # read by the openapi builder
        return cast(F, wrapped)

    return decorate
