"""Load YAML keeping the source position of every key and value.

PyYAML's ``compose`` gives nodes with marks; we turn them into plain ``dict``/``list`` subclasses
that remember where each key and item stood, so that every later stage can report
``file:line:col``. Duplicate keys (which PyYAML silently accepts) are reported, not merged.
Timestamps stay strings: the request parser, not YAML, decides what a time is.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from kti_policy.errors import PolicyError, Position


class LMap(dict):  # type: ignore[type-arg]
    """A mapping that knows where it, its keys and its values are."""

    pos: Position
    key_pos: dict[Any, Position]
    val_pos: dict[Any, Position]

    def at(self, key: Any) -> Position:
        """Where the value of ``key`` is (or the mapping itself when the key is missing)."""
        return self.val_pos.get(key, self.pos)

    def key_at(self, key: Any) -> Position:
        return self.key_pos.get(key, self.pos)


class LList(list):  # type: ignore[type-arg]
    """A list that knows where it and its items are."""

    pos: Position
    item_pos: list[Position]

    def at(self, index: int) -> Position:
        return self.item_pos[index] if 0 <= index < len(self.item_pos) else self.pos


def position_of(value: Any, default: Position) -> Position:
    return getattr(value, "pos", default)


class _Scalars(yaml.SafeLoader):
    """SafeLoader used only to construct scalar values (strings, bools, numbers, null)."""


_Scalars.yaml_implicit_resolvers = {
    k: [(tag, rx) for tag, rx in v if tag != "tag:yaml.org,2002:timestamp"]
    for k, v in yaml.SafeLoader.yaml_implicit_resolvers.copy().items()
}


def _pos(file: str, node: yaml.Node) -> Position:
    return Position(file, node.start_mark.line + 1, node.start_mark.column + 1)


MAX_DEPTH = 64  # policies nest a few levels; deeper is a mistake or an attack
MAX_NODES = 200_000  # aliases re-expand on every use: a "billion laughs" file stops here


class _TooBig(Exception):
    def __init__(self, message: str, node: yaml.Node) -> None:
        super().__init__(message)
        self.node = node


def _convert(
    file: str, node: yaml.Node, errors: list[PolicyError], ctor: _Scalars,
    path: frozenset[int] = frozenset(), budget: list[int] | None = None,
) -> Any:
    if id(node) in path:  # an alias that contains itself (a: &x [*x]) would never end
        errors.append(PolicyError("policy_parse_error", "a YAML alias refers to itself", _pos(file, node)))
        return None
    budget = budget if budget is not None else [0]
    budget[0] += 1
    if budget[0] > MAX_NODES:
        raise _TooBig(f"the document expands to more than {MAX_NODES} values (aliases used too often?)", node)
    if len(path) >= MAX_DEPTH:
        raise _TooBig(f"nesting deeper than {MAX_DEPTH} levels", node)
    if isinstance(node, (yaml.MappingNode, yaml.SequenceNode)):
        path = path | {id(node)}
    if isinstance(node, yaml.MappingNode):
        out = LMap()
        out.pos, out.key_pos, out.val_pos = _pos(file, node), {}, {}
        for knode, vnode in node.value:
            key = _convert(file, knode, errors, ctor, path, budget)
            if isinstance(key, (dict, list)):
                errors.append(PolicyError("policy_parse_error", "a key must be a plain value", _pos(file, knode)))
                continue
            if key in out:
                errors.append(
                    PolicyError(
                        "duplicate_key",
                        f"duplicate key {key!r} (first at line {out.key_pos[key].line})",
                        _pos(file, knode),
                    )
                )
                continue
            out[key] = _convert(file, vnode, errors, ctor, path, budget)
            out.key_pos[key] = _pos(file, knode)
            out.val_pos[key] = _pos(file, vnode)
        return out
    if isinstance(node, yaml.SequenceNode):
        lst = LList()
        lst.pos, lst.item_pos = _pos(file, node), []
        for item in node.value:
            lst.append(_convert(file, item, errors, ctor, path, budget))
            lst.item_pos.append(_pos(file, item))
        return lst
    if node.tag == "tag:yaml.org,2002:timestamp":
        return node.value
    return ctor.construct_object(node, deep=True)


def load_text(text: str, file: str) -> tuple[Any, list[PolicyError]]:
    """Parse one YAML document; returns (data, errors). Data is None when it cannot be parsed."""
    errors: list[PolicyError] = []
    try:
        loader = _Scalars(text)
        try:
            node = loader.get_single_node()
        finally:
            loader.dispose()
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        pos = Position(file, mark.line + 1, mark.column + 1) if mark else Position(file, 1, 1)
        problem = exc.problem or exc.context or "invalid YAML"
        return None, [PolicyError("policy_parse_error", f"YAML syntax: {problem}", pos)]
    except yaml.YAMLError as exc:
        return None, [PolicyError("policy_parse_error", f"YAML: {exc}", Position(file, 1, 1))]
    except RecursionError:  # PyYAML's composer recurses once per nesting level
        return None, [PolicyError("policy_parse_error", f"nesting deeper than {MAX_DEPTH} levels", Position(file, 1, 1))]
    if node is None:
        return None, [PolicyError("policy_parse_error", "the file is empty", Position(file, 1, 1))]
    ctor = _Scalars("")
    try:
        data = _convert(file, node, errors, ctor)
    except _TooBig as exc:
        return None, [PolicyError("policy_parse_error", str(exc), _pos(file, exc.node))]
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        pos = Position(file, mark.line + 1, mark.column + 1) if mark else Position(file, 1, 1)
        return None, [PolicyError("policy_parse_error", f"YAML: {exc}", pos)]
    return data, errors


def load_file(path: Path, display: str | None = None) -> tuple[Any, list[PolicyError]]:
    """Read and parse a file; ``display`` is the name used in positions (default: the path)."""
    name = display or str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        return None, [PolicyError("policy_parse_error", f"not UTF-8 text: {exc.reason}", Position(name, 1, 1))]
    except OSError as exc:
        return None, [PolicyError("policy_parse_error", f"cannot read: {exc.strerror}", Position(name, 0, 0))]
    return load_text(text, name)
