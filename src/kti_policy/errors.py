"""Error types shared by every stage.

Each error has a stable snake_case ``code`` named by phase. Only the API maps codes to HTTP statuses
and only the CLI maps them to exit codes; the library raises and never prints.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, order=True)
class Position:
    """A place in a source file: 1-based line and column, as editors show them."""

    file: str
    line: int = 0
    col: int = 0

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.col}"


@dataclass(frozen=True)
class PolicyError:
    """One problem in a policy, vocabulary, policy-test or hook file, with where it is."""

    code: str
    message: str
    position: Position
    severity: str = "error"  # "error" or "warning"

    def sort_key(self) -> tuple[Any, ...]:
        return (self.position.file, self.position.line, self.position.col, self.code, self.message)

    def __str__(self) -> str:
        tag = "" if self.severity == "error" else "warning: "
        return f"{self.position}: {tag}{self.message} [{self.code}]"

    def to_dict(self) -> dict[str, Any]:
        return {
            "code": self.code,
            "message": self.message,
            "file": self.position.file,
            "line": self.position.line,
            "col": self.position.col,
            "severity": self.severity,
        }


class KtiError(Exception):
    """Base of every error the library raises on purpose."""

    code = "kti_error"

    def __init__(self, message: str, details: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details or {}


class PolicyErrors(KtiError):
    """A policy folder (or file) failed to load: every problem found, sorted by position."""

    code = "invalid_policies"

    def __init__(self, errors: list[PolicyError]) -> None:
        self.errors = sorted(set(errors), key=PolicyError.sort_key)
        n = len(self.errors)
        super().__init__(
            f"{n} problem{'s' if n != 1 else ''} in the policies",
            {"errors": [e.to_dict() for e in self.errors]},
        )

    def __str__(self) -> str:
        return "\n".join(str(e) for e in self.errors)


class RequestError(KtiError):
    """A decision request or event does not fit the contract (HTTP 400)."""

    code = "bad_request"


class UnknownVocabularyId(RequestError):
    """A request named an id the loaded vocabulary does not know (HTTP 400, never a deny)."""

    code = "unknown_vocabulary_id"

    def __init__(self, field_name: str, value: Any, known: list[str]) -> None:
        super().__init__(
            f"{field_name}: unknown id {value!r}; known ids: {', '.join(known)}",
            {"field": field_name, "value": value, "known": known},
        )
        self.field = field_name
        self.value = value
        self.known = known


class EvalError(KtiError):
    """Something went wrong inside evaluation; the decision must be deny."""

    code = "eval_error"


class NotFound(KtiError):
    code = "not_found"


class ConfigError(KtiError):
    """The service configuration is unusable (e.g. no API keys on a public address)."""

    code = "config_error"


class EventConflict(RequestError):
    """An event id arrived again with a different body (HTTP 409): ids are for idempotency only."""

    code = "event_conflict"


class Unauthorized(KtiError):
    """A request failed authentication, e.g. a bad or stale webhook signature (HTTP 401)."""

    code = "unauthorized"
