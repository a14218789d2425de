"""yamlpos: YAML with the position of every key, value and item; duplicate keys reported."""

from __future__ import annotations

from pathlib import Path

import pytest

from kti_policy.errors import Position
from kti_policy.policy.yamlpos import LList, LMap, load_file, load_text, position_of

DOC = """\
policy: p
title: {fi: a, en: b}
rules:
  - id: r1
    when: {operation: delete}
  - id: r2
at: 2026-03-02T10:00:00+02:00
day: 2026-03-02
n: 3
flag: yes
nothing: null
"""


def test_positions_of_keys_values_and_items() -> None:
    data, errors = load_text(DOC, "f.yaml")
    assert errors == []
    assert isinstance(data, LMap) and data.pos == Position("f.yaml", 1, 1)
    assert data.key_at("title") == Position("f.yaml", 2, 1)
    assert data.at("title") == Position("f.yaml", 2, 8)
    assert data["title"].at("en") == Position("f.yaml", 2, 20)
    rules = data["rules"]
    assert isinstance(rules, LList)
    assert [rules.at(i).line for i in range(len(rules))] == [4, 6]
    assert rules[0]["when"].key_at("operation") == Position("f.yaml", 5, 12)


def test_missing_key_and_index_fall_back_to_the_container() -> None:
    data, _ = load_text(DOC, "f.yaml")
    assert data.at("nope") == data.pos and data.key_at("nope") == data.pos
    assert data["rules"].at(7) == data["rules"].pos
    assert position_of("plain", Position("x", 9, 9)) == Position("x", 9, 9)
    assert position_of(data, Position("x")) == data.pos


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("at", "2026-03-02T10:00:00+02:00"),  # timestamps stay strings
        ("day", "2026-03-02"),
        ("n", 3),
        ("flag", True),  # YAML 1.1 booleans, as PyYAML's SafeLoader
        ("nothing", None),
        ("policy", "p"),
    ],
)
def test_scalars(key: str, value: object) -> None:
    data, _ = load_text(DOC, "f.yaml")
    assert data[key] == value and type(data[key]) is type(value)


def test_duplicate_keys_are_reported_and_the_first_value_kept() -> None:
    data, errors = load_text("a: 1\nb:\n  c: 2\n  c: 3\na: 4\n", "d.yaml")
    assert [(e.code, e.position.line, e.position.col) for e in errors] == [
        ("duplicate_key", 4, 3),
        ("duplicate_key", 5, 1),
    ]
    assert "first at line 1" in errors[1].message
    assert data == {"a": 1, "b": {"c": 2}}


@pytest.mark.parametrize(
    ("text", "line", "col", "words"),
    [
        ("a: {b: 1\nc: 2\n", 2, 2, "YAML syntax"),
        ("a: 1\n\tb: 2\n", 2, 1, "YAML syntax"),
        ("a: 1\n---\nb: 2\n", 2, 1, "YAML syntax"),  # one document per file
        ("", 1, 1, "empty"),
        ("# only a comment\n", 1, 1, "empty"),
        ("? [a, b]\n: 1\n", 1, 3, "plain value"),
    ],
)
def test_errors_carry_positions(text: str, line: int, col: int, words: str) -> None:
    data, errors = load_text(text, "bad.yaml")
    assert len(errors) == 1
    err = errors[0]
    assert err.code == "policy_parse_error" and words in err.message
    assert (err.position.file, err.position.line, err.position.col) == ("bad.yaml", line, col)
    assert str(err).startswith(f"bad.yaml:{line}:{col}: ")


def test_recursive_alias_is_an_error_not_a_crash() -> None:
    _, errors = load_text("a: &x [*x]\n", "alias.yaml")
    assert [e.code for e in errors] == ["policy_parse_error"]
    assert "refers to itself" in errors[0].message and errors[0].position.line == 1


def test_load_file_uses_the_display_name(tmp_path: Path) -> None:
    path = tmp_path / "p.yaml"
    path.write_text("a: [1, 2]\n", encoding="utf-8")
    data, errors = load_file(path, "policies/p.yaml")
    assert errors == [] and data.at("a") == Position("policies/p.yaml", 1, 4)


@pytest.mark.parametrize("content", [b"a: \xff\xfe\n", None])
def test_load_file_unreadable(tmp_path: Path, content: bytes | None) -> None:
    path = tmp_path / "p.yaml"
    if content is not None:
        path.write_bytes(content)
    data, errors = load_file(path)
    assert data is None and [e.code for e in errors] == ["policy_parse_error"]


def test_deep_nesting_is_an_error_not_a_crash() -> None:
    for text in ("- " * 600 + "x\n", "a: " + "[" * 100 + "]" * 100 + "\n", "[" * 5000 + "]" * 5000):
        data, errors = load_text(text, "deep.yaml")
        assert data is None
        assert errors and errors[0].code == "policy_parse_error" and "nesting deeper" in errors[0].message


def test_alias_bomb_stops_with_an_error() -> None:
    lines = ['a0: &a0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    for i in range(1, 9):
        prev = f"*a{i - 1}"
        lines.append(f"a{i}: &a{i} [{', '.join([prev] * 9)}]")
    data, errors = load_text("\n".join(lines) + "\n", "bomb.yaml")
    assert data is None
    assert errors[0].code == "policy_parse_error" and "expands to more than" in errors[0].message
    assert errors[0].position.file == "bomb.yaml" and errors[0].position.line >= 1
