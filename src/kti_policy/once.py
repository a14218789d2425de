"""``once_property``: a value computed on first read and kept on the instance.

``functools.cached_property`` on Python 3.11 takes a lock shared by every instance of the class on
each first read (removed in 3.12, python/cpython#87634); on the decision path, where every
``Decision`` reads its ``evaluated_at_text`` once or twice, that lock was a measurable share of a
decision in a batch (bench/app_profile.py). This is 3.12's behaviour: no lock. Two threads reading
a fresh instance at once may both compute the value; the properties it serves are pure functions
of frozen objects, so they compute the same value.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Generic, TypeVar, overload

T = TypeVar("T")


class once_property(Generic[T]):  # noqa: N801 - used like the built-in decorators
    """Like ``functools.cached_property`` (works on frozen dataclasses: it writes the instance's
    ``__dict__``), without the per-class lock."""

    def __init__(self, func: Callable[[Any], T]) -> None:
        self.func = func
        self.name = func.__name__
        self.__doc__ = func.__doc__

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    @overload
    def __get__(self, obj: None, owner: type | None = None) -> once_property[T]: ...

    @overload
    def __get__(self, obj: object, owner: type | None = None) -> T: ...

    def __get__(self, obj: object | None, owner: type | None = None) -> Any:
        if obj is None:
            return self
        value = self.func(obj)
        obj.__dict__[self.name] = value  # later reads find it there: this is a non-data descriptor
        return value
