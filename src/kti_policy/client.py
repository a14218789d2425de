"""A Python client for the decision service, for the systems that ask before they touch personal data.

Every caller used to write its own HTTP calls, timeouts, retries and, most easily forgotten, the
fail-closed rule. This module does it once (it imports httpx only, never Flask or the engine)::

    from kti_policy.client import Client, Denied

    kti = Client("https://kti-policy.internal", api_key=KEY, timeout=2.0)
    d = kti.decide(operation="disclose", data_categories=["email"], subject="c-1001",
                   recipient={"type": "authority", "country": "FI"})
    if d.allowed: ...
    else: print([r.rule for r in d.reasons])

What a caller can rely on:

- **Fail closed.** When the service cannot be reached in time (connection refused, a timeout, a
  503 that outlives the retries, any other 5xx), ``decide``/``decide_many`` answer *deny* with one reason
  whose rule is ``unavailable``, and log a warning (operation and purpose only, never the subject
  id). ``on_error="raise"`` raises ``Unavailable`` instead. ``record_event`` and ``subject`` always
  raise: a write that did not happen must not look as if it did.
- **Retries** (``retries`` more attempts, exponential backoff with jitter) on connection errors,
  timeouts and 503; a 503's ``Retry-After`` is honoured, and one longer than ``max_wait`` seconds
  ends the retrying (a caller waiting on a decision should not block for minutes). Never on a 4xx:
  those are the caller's mistakes and are raised as ``ApiError`` subclasses whose ``field`` names
  the bad field (a 400 is never turned into a deny, as the service never turns it into one).
  Retrying is safe: decisions change nothing, and events are idempotent on their ``id`` (the client
  picks the id once, before the first attempt).
- **Typed results**: frozen dataclasses mirroring CONTRACT section 2 (``Decision`` with
  ``.allowed``, ``.reasons``, ``.obligations``); fields the service adds later stay in ``.raw``.
- ``requires(...)`` is a decorator and a context manager for "deny means do not run this": it raises
  ``Denied`` (carrying the decision) instead of running the code.

``AsyncClient`` is the same for asyncio. Request fields are passed through as given, so fields the
service learns later (``channel``, ``cookie``, ...) need no client change.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import logging
import random
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any, Literal, TypeVar

import httpx

from . import __version__
from .retry_after import parse_retry_after

log = logging.getLogger(__name__)

UNAVAILABLE = "unavailable"
_UNAVAILABLE_MESSAGE = (
    "The decision service could not be reached in time; the operation is denied to be safe."
)
_RETRY_STATUSES = frozenset({503})

OnError = Literal["deny", "raise"]
F = TypeVar("F", bound=Callable[..., Any])

__all__ = [
    "ApiError", "AsyncClient", "BadRequest", "Client", "Conflict", "Decision", "Denied",
    "EventResult", "Forbidden", "KtiClientError", "NotFound", "Obligation", "Reason",
    "SubjectView", "Unauthorized", "Unavailable",
]


# -- errors -------------------------------------------------------------------------------------


class KtiClientError(Exception):
    """Anything this client raises."""


class Unavailable(KtiClientError):
    """The service could not be reached in time, or kept answering 503/5xx through the retries."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class ApiError(KtiClientError):
    """The service answered with an error (CONTRACT section 6 JSON ``{error, message, details}``)."""

    def __init__(self, status: int, code: str, message: str, details: Mapping[str, Any]) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.details = dict(details)

    @property
    def field(self) -> str | None:
        """The bad field the service named (``details.field``, else the first of ``details.errors``)."""
        named = self.details.get("field")
        if isinstance(named, str):
            return named
        errors = self.details.get("errors") or self.details.get("fields")
        if isinstance(errors, Mapping) and errors:
            return str(next(iter(errors)))
        return None


class BadRequest(ApiError):
    """400: the request does not fit the contract (``field`` says where)."""


class Unauthorized(ApiError):
    """401: no valid API key."""


class Forbidden(ApiError):
    """403: the API key lacks the role."""


class NotFound(ApiError):
    """404."""


class Conflict(ApiError):
    """409: e.g. an event id already recorded with other content."""


_ERROR_CLASSES: dict[int, type[ApiError]] = {
    400: BadRequest, 401: Unauthorized, 403: Forbidden, 404: NotFound, 409: Conflict,
}


class Denied(KtiClientError):
    """Raised by ``requires`` instead of running the code; ``decision`` says why."""

    def __init__(self, decision: Decision) -> None:
        rules = ", ".join(r.rule for r in decision.reasons) or "no reason given"
        super().__init__(f"denied by kti-policy ({rules})")
        self.decision = decision


# -- results ------------------------------------------------------------------------------------


def _time(value: Any) -> datetime | None:
    return datetime.fromisoformat(value) if isinstance(value, str) and value else None


@dataclass(frozen=True)
class Reason:
    rule: str
    effect: str
    message: str
    source: str = ""
    law: tuple[str, ...] = ()

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Reason:
        return cls(str(d["rule"]), str(d.get("effect", "")), str(d.get("message", "")),
                   str(d.get("source") or ""), tuple(d.get("law") or ()))


@dataclass(frozen=True)
class Obligation:
    """One obligation; ``due`` and ``chargeable`` where its type has them, the rest in ``raw``."""

    type: str
    rule: str = ""
    message: str = ""
    due: date | None = None
    chargeable: bool | None = None
    data_categories: tuple[str, ...] = ()
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Obligation:
        due = d.get("due")
        return cls(
            type=str(d["type"]), rule=str(d.get("rule") or ""), message=str(d.get("message") or ""),
            due=date.fromisoformat(due) if isinstance(due, str) else None,
            chargeable=d.get("chargeable"), data_categories=tuple(d.get("data_categories") or ()),
            raw=dict(d),
        )


@dataclass(frozen=True)
class Decision:
    """A decision as CONTRACT section 2 answers it. ``decision_id`` is None for an ``unavailable`` deny."""

    allowed: bool
    reasons: tuple[Reason, ...]
    obligations: tuple[Obligation, ...] = ()
    decision_id: str | None = None
    policy_version: str | None = None
    evaluated_at: datetime | None = None
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @property
    def decision(self) -> str:
        return "allow" if self.allowed else "deny"

    @property
    def unavailable(self) -> bool:
        """True for the client's own fail-closed deny (the service was not reached)."""
        return any(r.rule == UNAVAILABLE for r in self.reasons) and self.decision_id is None

    @property
    def rules(self) -> list[str]:
        return [r.rule for r in self.reasons]

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Decision:
        return cls(
            allowed=d.get("allowed") is True and d.get("decision", "allow") == "allow",
            reasons=tuple(Reason.from_dict(r) for r in d.get("reasons") or ()),
            obligations=tuple(Obligation.from_dict(o) for o in d.get("obligations") or ()),
            decision_id=d.get("decision_id"),
            policy_version=d.get("policy_version"),
            evaluated_at=_time(d.get("evaluated_at")),
            raw=dict(d),
        )

    @classmethod
    def unavailable_deny(cls) -> Decision:
        return cls(False, (Reason(UNAVAILABLE, "forbid", _UNAVAILABLE_MESSAGE),),
                   evaluated_at=datetime.now(UTC))


@dataclass(frozen=True)
class EventResult:
    """What ``record_event`` did: ``created`` is False when the same id was already recorded."""

    created: bool
    id: str
    type: str
    subject_key: str
    occurred_at: datetime | None
    sequence: int | None
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_response(cls, status: int, d: Mapping[str, Any]) -> EventResult:
        return cls(status == 201, str(d["id"]), str(d["type"]), str(d.get("subject_key", "")),
                   _time(d.get("occurred_at")), d.get("sequence"), dict(d))


@dataclass(frozen=True)
class SubjectView:
    """``GET /v1/subjects/<id>``: the current facts and the history (keyed by the pseudonym)."""

    subject_key: str
    consents: tuple[str, ...]
    objections: tuple[str, ...]
    relationship: str | None
    erasure_requested: bool
    last_access_request_at: datetime | None
    history: tuple[Mapping[str, Any], ...]
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> SubjectView:
        def ids(key: str) -> tuple[str, ...]:
            # v2 may give each consent as {"purpose", "since"}; keep the ids either way
            return tuple(x if isinstance(x, str) else str(next(iter(x.values())))
                         for x in d.get(key) or ())

        return cls(
            subject_key=str(d.get("subject_key", "")), consents=ids("consents"),
            objections=ids("objections"), relationship=d.get("relationship"),
            erasure_requested=bool(d.get("erasure_requested")),
            last_access_request_at=_time(d.get("last_access_request_at")),
            history=tuple(d.get("history") or ()), raw=dict(d),
        )


# -- the parts both clients share ---------------------------------------------------------------


def _json_value(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, Mapping):
        return {k: _json_value(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_json_value(v) for v in value]
    return value


def decision_body(base: Mapping[str, Any] | None = None, /, **fields: Any) -> dict[str, Any]:
    """A ``POST /v1/decisions`` body from a mapping and/or keywords (keywords win).

    Positional-only, because ``request`` is itself a CONTRACT 2 field (subject requests).
    ``subject="c-1"`` is short for ``subject={"id": "c-1"}``; datetimes become ISO 8601. Every other
    field is passed as given, so the service's own schema decides what is valid.
    """
    body = {**(base or {}), **fields}
    if isinstance(body.get("subject"), str):
        body["subject"] = {"id": body["subject"]}
    return {k: _json_value(v) for k, v in body.items() if v is not None}


def retry_after_seconds(value: str | None) -> float | None:
    """Seconds from a ``Retry-After`` header (delta-seconds or an HTTP date), or None."""
    return parse_retry_after(value, datetime.now(UTC))


def _raise_for(resp: httpx.Response) -> None:
    if resp.status_code < 400:
        return
    if resp.status_code >= 500:
        raise Unavailable(f"the service answered {resp.status_code}", resp.status_code)
    try:
        body = resp.json()
    except ValueError:
        body = {}
    if not isinstance(body, Mapping):
        body = {}
    cls = _ERROR_CLASSES.get(resp.status_code, ApiError)
    raise cls(resp.status_code, str(body.get("error", "http_error")),
              str(body.get("message", resp.reason_phrase)), body.get("details") or {})


class _Policy:
    """Connection settings and the retry schedule (shared by both clients)."""

    def __init__(self, retries: int, backoff: float, max_wait: float) -> None:
        if retries < 0:
            raise ValueError("retries must be >= 0")
        self.retries = retries
        self.backoff = backoff
        self.max_wait = max_wait

    def wait_before(self, attempt: int, resp: httpx.Response | None) -> float | None:
        """Seconds to wait before attempt ``attempt + 1`` (0-based), or None to stop retrying."""
        if attempt >= self.retries:
            return None
        delay = self.backoff * (2**attempt) * (0.5 + random.random())  # noqa: S311  # jitter
        if resp is not None:
            asked = retry_after_seconds(resp.headers.get("Retry-After"))
            if asked is not None:
                if asked > self.max_wait:
                    return None
                delay = max(delay, asked)
        return min(delay, self.max_wait)


def _headers(api_key: str | None, language: str | None) -> dict[str, str]:
    headers = {"User-Agent": f"kti-policy-client/{__version__}", "Accept": "application/json"}
    if api_key:
        headers["Authorization"] = f"Bearer {api_key}"
    if language:
        headers["Accept-Language"] = language
    return headers


def _describe(body: Mapping[str, Any]) -> str:
    # for the log: what was asked, never whom it was about
    return f"operation={body.get('operation')!r} purpose={body.get('purpose')!r}"


def _bind(fields: Mapping[str, Any], args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> dict[str, Any]:
    """``requires`` fields with callables applied to the decorated function's arguments."""
    return {k: (v(*args, **kwargs) if callable(v) else v) for k, v in fields.items()}


def _no_callables(fields: Mapping[str, Any]) -> None:
    for k, v in fields.items():
        if callable(v):
            raise TypeError(f"requires({k}=<callable>) needs the decorator form: a context manager "
                            "has no arguments to call it with")


# -- the synchronous client ---------------------------------------------------------------------


class Client:
    """A pooled, thread-safe client. ``timeout`` is per attempt, in seconds; see the module docstring."""

    def __init__(
        self,
        base_url: str,
        api_key: str | None = None,
        *,
        timeout: float = 2.0,
        retries: int = 2,
        backoff: float = 0.1,
        max_wait: float = 5.0,
        on_error: OnError = "deny",
        language: str | None = None,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        if on_error not in ("deny", "raise"):
            raise ValueError("on_error must be 'deny' or 'raise'")
        self.on_error = on_error
        self._policy = _Policy(retries, backoff, max_wait)
        self._http = httpx.Client(
            base_url=base_url.rstrip("/"), timeout=timeout, headers=_headers(api_key, language),
            transport=transport,
        )

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _send(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        attempt = 0
        while True:
            resp: httpx.Response | None = None
            failure: str
            try:
                resp = self._http.request(method, path, **kwargs)
            except httpx.TransportError as exc:
                failure = type(exc).__name__
            else:
                if resp.status_code not in _RETRY_STATUSES:
                    _raise_for(resp)
                    return resp
                failure = f"HTTP {resp.status_code}"
            wait = self._policy.wait_before(attempt, resp)
            if wait is None:
                raise Unavailable(f"{method} {path}: {failure} after {attempt + 1} attempt(s)",
                                  resp.status_code if resp is not None else None)
            time.sleep(wait)
            attempt += 1

    def _fail_closed(self, exc: Unavailable, bodies: Sequence[Mapping[str, Any]]) -> list[Decision]:
        if self.on_error == "raise":
            raise exc
        for body in bodies:
            log.warning("kti-policy unavailable (%s); denying %s", exc, _describe(body))
        return [Decision.unavailable_deny() for _ in bodies]

    def decide(self, base: Mapping[str, Any] | None = None, /, **fields: Any) -> Decision:
        """One decision. Fields as in CONTRACT 2 (``operation``, ``purpose``, ``subject``, ...)."""
        body = decision_body(base, **fields)
        try:
            return Decision.from_dict(self._send("POST", "/v1/decisions", json=body).json())
        except Unavailable as exc:
            return self._fail_closed(exc, [body])[0]

    def decide_many(self, requests: Sequence[Mapping[str, Any]]) -> list[Decision]:
        """Several decisions in one call (``/v1/decisions/batch``), in the same order."""
        bodies = [decision_body(r) for r in requests]
        try:
            resp = self._send("POST", "/v1/decisions/batch", json={"operations": bodies})
        except Unavailable as exc:
            return self._fail_closed(exc, bodies)
        return [Decision.from_dict(d) for d in resp.json()["decisions"]]

    def record_event(
        self, type: str, subject_id: str, data: Mapping[str, Any] | None = None, *,
        id: str | None = None, occurred_at: datetime | None = None,
    ) -> EventResult:
        """Record an event (CONTRACT 3). ``id`` defaults to a new UUID, ``occurred_at`` to now."""
        body = _event_body(type, subject_id, data, id, occurred_at)
        resp = self._send("POST", "/v1/events", json=body)
        return EventResult.from_response(resp.status_code, resp.json())

    def subject(self, subject_id: str) -> SubjectView | None:
        """The recorded facts and history of a subject; None when no event names it."""
        try:
            resp = self._send("GET", f"/v1/subjects/{_quote(subject_id)}")
        except NotFound:
            return None
        return SubjectView.from_dict(resp.json())

    def requires(self, base: Mapping[str, Any] | None = None, /, **fields: Any) -> _Requirement:
        """Run the code only when the decision allows it; otherwise raise ``Denied``.

        As a decorator, a callable field is called with the function's arguments::

            @kti.requires(operation="process", purpose="direct_marketing", subject=lambda c: c.id)
            def send_offer(customer): ...

        As a context manager (plain values only) it yields the ``Decision``.
        """
        return _Requirement(self, {**(base or {}), **fields})


class _Requirement:
    def __init__(self, client: Client, fields: Mapping[str, Any]) -> None:
        self._client = client
        self._fields = fields

    def _check(self, fields: Mapping[str, Any]) -> Decision:
        decision = self._client.decide(fields)
        if not decision.allowed:
            raise Denied(decision)
        return decision

    def __call__(self, fn: F) -> F:
        if inspect.iscoroutinefunction(fn):
            raise TypeError("use AsyncClient.requires for a coroutine function")

        @functools.wraps(fn)
        def wrapped(*args: Any, **kwargs: Any) -> Any:
            self._check(_bind(self._fields, args, kwargs))
            return fn(*args, **kwargs)

        return wrapped  # type: ignore[return-value]

    def __enter__(self) -> Decision:
        _no_callables(self._fields)
        return self._check(self._fields)

    def __exit__(self, *exc: object) -> None:
        return None


def _event_body(type: str, subject_id: str, data: Mapping[str, Any] | None, id: str | None,
                occurred_at: datetime | None) -> dict[str, Any]:
    return {
        "id": id or f"evt-{uuid.uuid4()}",
        "type": type,
        "subject_id": subject_id,
        "occurred_at": (occurred_at or datetime.now(UTC)).isoformat(),
        "data": _json_value(dict(data or {})),
    }


def _quote(subject_id: str) -> str:
    from urllib.parse import quote

    return quote(subject_id, safe="")


# -- the asyncio client -------------------------------------------------------------------------


class AsyncClient:
    """``Client`` for asyncio (httpx's ``AsyncClient``): the same methods, awaited."""

    def __init__(
        self,
        base_url: str,
        api_key: str | None = None,
        *,
        timeout: float = 2.0,
        retries: int = 2,
        backoff: float = 0.1,
        max_wait: float = 5.0,
        on_error: OnError = "deny",
        language: str | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        if on_error not in ("deny", "raise"):
            raise ValueError("on_error must be 'deny' or 'raise'")
        self.on_error = on_error
        self._policy = _Policy(retries, backoff, max_wait)
        self._http = httpx.AsyncClient(
            base_url=base_url.rstrip("/"), timeout=timeout, headers=_headers(api_key, language),
            transport=transport,
        )

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def _send(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        attempt = 0
        while True:
            resp: httpx.Response | None = None
            failure: str
            try:
                resp = await self._http.request(method, path, **kwargs)
            except httpx.TransportError as exc:
                failure = type(exc).__name__
            else:
                if resp.status_code not in _RETRY_STATUSES:
                    _raise_for(resp)
                    return resp
                failure = f"HTTP {resp.status_code}"
            wait = self._policy.wait_before(attempt, resp)
            if wait is None:
                raise Unavailable(f"{method} {path}: {failure} after {attempt + 1} attempt(s)",
                                  resp.status_code if resp is not None else None)
            await asyncio.sleep(wait)
            attempt += 1

    def _fail_closed(self, exc: Unavailable, bodies: Sequence[Mapping[str, Any]]) -> list[Decision]:
        if self.on_error == "raise":
            raise exc
        for body in bodies:
            log.warning("kti-policy unavailable (%s); denying %s", exc, _describe(body))
        return [Decision.unavailable_deny() for _ in bodies]

    async def decide(self, base: Mapping[str, Any] | None = None, /, **fields: Any) -> Decision:
        body = decision_body(base, **fields)
        try:
            resp = await self._send("POST", "/v1/decisions", json=body)
        except Unavailable as exc:
            return self._fail_closed(exc, [body])[0]
        return Decision.from_dict(resp.json())

    async def decide_many(self, requests: Sequence[Mapping[str, Any]]) -> list[Decision]:
        bodies = [decision_body(r) for r in requests]
        try:
            resp = await self._send("POST", "/v1/decisions/batch", json={"operations": bodies})
        except Unavailable as exc:
            return self._fail_closed(exc, bodies)
        return [Decision.from_dict(d) for d in resp.json()["decisions"]]

    async def record_event(
        self, type: str, subject_id: str, data: Mapping[str, Any] | None = None, *,
        id: str | None = None, occurred_at: datetime | None = None,
    ) -> EventResult:
        body = _event_body(type, subject_id, data, id, occurred_at)
        resp = await self._send("POST", "/v1/events", json=body)
        return EventResult.from_response(resp.status_code, resp.json())

    async def subject(self, subject_id: str) -> SubjectView | None:
        try:
            resp = await self._send("GET", f"/v1/subjects/{_quote(subject_id)}")
        except NotFound:
            return None
        return SubjectView.from_dict(resp.json())

    def requires(self, base: Mapping[str, Any] | None = None, /, **fields: Any) -> _AsyncRequirement:
        """``Client.requires`` for coroutine functions and ``async with``."""
        return _AsyncRequirement(self, {**(base or {}), **fields})


class _AsyncRequirement:
    def __init__(self, client: AsyncClient, fields: Mapping[str, Any]) -> None:
        self._client = client
        self._fields = fields

    async def _check(self, fields: Mapping[str, Any]) -> Decision:
        decision = await self._client.decide(fields)
        if not decision.allowed:
            raise Denied(decision)
        return decision

    def __call__(self, fn: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
        if not inspect.iscoroutinefunction(fn):
            raise TypeError("AsyncClient.requires decorates coroutine functions")

        @functools.wraps(fn)
        async def wrapped(*args: Any, **kwargs: Any) -> Any:
            await self._check(_bind(self._fields, args, kwargs))
            return await fn(*args, **kwargs)

        return wrapped

    async def __aenter__(self) -> Decision:
        _no_callables(self._fields)
        return await self._check(self._fields)

    async def __aexit__(self, *exc: object) -> None:
        return None
