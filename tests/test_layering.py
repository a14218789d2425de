"""The packages import one way (issue 16): each only the root base modules and the packages below
it, TYPE_CHECKING and function-level imports included. Order bottom -> top as in docs/DESIGN.md."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parents[1] / "src" / "kti_policy"
LAYERS = ['facts', 'policy', 'decide', 'verify', 'store', 'register', 'hooks', 'api', 'tools']
SHIMS = ['app']  # root modules re-exporting from above, for entry points


def layer(module: str) -> int:
    parts = module.split(".")[1:]
    if parts and parts[0] in LAYERS:
        return LAYERS.index(parts[0]) + 1
    return len(LAYERS) + 1 if parts and parts[0] in SHIMS else 0  # 0: root base modules


def imports(path: Path) -> list[tuple[int, str]]:
    rel = path.relative_to(PKG.parent).with_suffix("")
    here = list(rel.parts[:-1]) if rel.name != "__init__" else list(rel.parts[:-1])
    out = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = here[: len(here) - node.level + 1] if node.level else []
            mod = ".".join(base + ([node.module] if node.module else []))
            out += [(node.lineno, f"{mod}.{a.name}" if not node.module else mod) for a in node.names]
    return [(n, m) for n, m in out if m.split(".")[0] == "kti_policy"]


@pytest.mark.parametrize("path", sorted(PKG.rglob("*.py")), ids=lambda p: str(p.relative_to(PKG)))
def test_imports_only_below(path: Path) -> None:
    module = ".".join(path.relative_to(PKG.parent).with_suffix("").parts)
    bad = [f"{path.name}:{n} imports {m}" for n, m in imports(path) if layer(m) > layer(module)]
    assert not bad, bad


def _module_graph() -> dict[str, set[str]]:
    """module -> the kti_policy modules it imports (a name imported from a package counts as the
    package's submodule of that name when one exists, else as the package itself)."""
    modules = {".".join(p.relative_to(PKG.parent).with_suffix("").parts).removesuffix(".__init__"): p
               for p in PKG.rglob("*.py") if "migrations" not in p.parts}
    graph: dict[str, set[str]] = {}
    for mod, path in modules.items():
        deps = set()
        for _, target in imports(path):
            while target and target not in modules:
                target = target.rpartition(".")[0]
            if target and target != mod and not modules[target].name == "__init__.py":
                deps.add(target)
        graph[mod] = deps
    return graph


def test_no_module_imports_itself_through_others() -> None:
    """No circle of imports between modules, inside a package too (model and conditions used to
    import each other): a circle is a sign two modules share one job."""
    graph = _module_graph()
    circles: list[list[str]] = []
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(m: str) -> None:
        state[m] = 1
        stack.append(m)
        for d in sorted(graph.get(m, ())):
            if state.get(d) == 1:
                circles.append(stack[stack.index(d):] + [d])
            elif d not in state:
                visit(d)
        stack.pop()
        state[m] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m)
    assert not circles, [" -> ".join(c) for c in circles]
