#!/usr/bin/env python3
"""Issue 16: move src/kti_policy/ from 30 flat modules to one package per stage of the data's way.

    python /work/relayout/relayout.py /path/to/checkout

Data-driven: MAP (old module -> new place) and PACKAGES (bottom -> top) below are all a newcomer
extends when main grows a module. The script stops before touching anything when a module under
src/kti_policy is not placed by MAP, and lists those modules. Running it twice is a no-op: every
step checks whether it is already done. It edits only the checkout it is given (git mv when git).

What it does, in order: preflight (MAP covers every module) -> code cuts that layering needs
(ApiKeys into config; store loses its hooks imports) -> imports rewritten by AST in src, tests,
bench, hooks, gunicorn.conf.py -> files moved (git mv) -> store split into modules -> package
__init__ docstrings, the kti_policy.app shim, hooks/fanout.py -> dotted and slashed paths in every
text file (docs, YAML modelines, pyproject, Dockerfile, monkeypatch strings) -> tests into folders
mirroring the packages (+ path depth fix, conftest sys.path) -> tests/test_layering.py ->
docs/DESIGN.md opening -> ruff (sort imports, drop the ones a cut left unused) -> pip install -e .
"""

from __future__ import annotations

import ast
import re
import shutil
import subprocess
import sys
from pathlib import Path

# --------------------------------------------------------------------------------------------------
# THE MAP: old module (dotted, relative to kti_policy; a directory is a name too) -> new dotted place.
# A new module on main: add one line. "api.*" means: the api package's modules stay where they are.
# --------------------------------------------------------------------------------------------------
MAP: dict[str, str] = {
    # root: base modules every package may use, and the standalone caller library
    "__init__": "__init__",
    "errors": "errors",
    "config": "config",
    "client": "client",
    "static": "static",        # Flask("kti_policy") serves /static from the package root; ui.py too
    "templates": "templates",
    # facts/: what is known about a subject (no database)
    "facts": "facts.fold",
    # policy/: the language
    "yamlpos": "policy.yamlpos",
    "model": "policy.model",
    "durations": "policy.durations",
    "calendar": "policy.calendar",
    "fields": "policy.fields",
    "conditions": "policy.conditions",
    "loader": "policy.loader",
    "lint": "policy.lint",
    "schemas": "policy.schemas",
    # decide/: an operation and facts -> a decision
    "operation": "decide.operation",
    "compile": "decide.compile",
    "engine": "decide.engine",
    "decision": "decide.decision",
    "obligations": "decide.obligations",
    # verify/: policy tests (the CLI's `test` and the playground both run them)
    "policytest": "verify.policytest",
    # store/: the database
    "store": "store.db",            # then split by STORE_SPLIT
    "pseudonym": "store.pseudonym",
    "metrics_events": "store.metrics_events",  # Store.record_events counts EVENTS_RECORDED
    "migrations": "store.migrations",
    # hooks/: webhooks out and in
    "hooks": "hooks.subscriptions",
    "delivery": "hooks.delivery",
    "inbound": "hooks.inbound",
    # api/: the Flask service
    "app": "api.app",
    "openapi": "api.openapi",
    "metrics": "api.metrics",
    "decision_log": "api.decision_log",
    "policy_holder": "api.policy_holder",
    "redact": "api.redact",
    "api.*": "api.*",
    # tools/: the command line
    "cli": "tools.cli",
    "diff": "tools.diff",
    "serve": "tools.serve",
}

# Packages bottom -> top: each imports only the root base modules and the packages before it.
PACKAGES: list[tuple[str, str]] = [
    ("facts", """What is known about a subject: the event types, the fold of events into facts,
dated facts (``SubjectFacts``, ``fold_events``). No database, no policy.

It sits below ``policy`` because the language's fields (``policy.fields``) name the facts a
condition may test (issue 16 proposed it above ``decide``; the imports decide the order).

May import: the root base modules (``kti_policy.errors``, ``kti_policy.config``)."""),
    ("policy", """The policy language: YAML with source positions, the model (frozen dataclasses),
conditions and their reference evaluator, fields, periods and the Finnish calendar, the loader (every
error at once), lint, and the editors' JSON Schemas (``schemas/``). No IO beyond reading files.

``calendar`` lives here, not in ``decide`` as issue 16 proposed: ``durations`` (periods such as
``1 month``, part of the model) counts with it.

May import: the root base modules and ``facts``."""),
    ("decide", """From an operation and a subject's facts to a decision: operation parsing,
compile to durable-rules, the engine (the only importer of durable-rules), the decision and its
obligations (deadlines from ``policy.calendar``).

May import: the root base modules, ``facts``, ``policy``."""),
    ("verify", """Policy tests (``policies/tests/*.yaml``): load cases, run them against a
policy set, JUnit and coverage. A package of its own, below ``store``, ``api`` and ``tools``,
because both the CLI (``kti-policy test``) and the playground (``api/ui.py``) run them, and the API
must not import the tools.

May import: the root base modules, ``facts``, ``policy``, ``decide``."""),
    ("store", """The database: subject events (validated, pseudonymised), facts reads, the webhook
outbox and its deliveries, sealed bodies, the pseudonym key, Alembic migrations (``migrations/``)
and the Prometheus metrics of events and the outbox.

The store fans events out to subscriptions it is given (``db.Subscriber`` is all it needs of one);
it never imports ``hooks``, which sits above it (``hooks.fanout.Store`` reads ``KTI_HOOKS_DIR``).

May import: the root base modules, ``facts``, ``policy``, ``decide``, ``verify``."""),
    ("hooks", """Webhooks: subscriptions (``KTI_HOOKS_DIR``), the store wired to them
(``fanout``), the delivery worker, inbound signatures.

May import: the root base modules and every package up to ``store``."""),
    ("api", """The Flask service: the app factory (``app``), blueprints, API keys and roles,
OpenAPI, metrics, the decision log, the policy holder, log redaction, and the playground.
The root module ``app`` re-exports ``create_app`` for ``gunicorn 'kti_policy.app:create_app()'``.

May import: the root base modules and every package up to ``hooks``."""),
    ("tools", """The command line (``kti-policy check/test/eval/serve/deliver/diff``): thin
commands over the library, impact analysis (``diff``), the development server (``serve``).

May import: everything below it."""),
]
LAYERS = [name for name, _ in PACKAGES]

ROOT_DOC = f"""kti-policy: a policy-as-code engine for personal-data rules.

Packages, bottom -> top, each importing only the root base modules (``errors``, ``config``) and the
packages below it: {", ".join(LAYERS)} (docs/DESIGN.md draws them; tests/test_layering.py holds
them). ``client`` is the standalone caller library; ``app`` re-exports ``api.app.create_app``."""

# Root modules that only re-export from above (kept so entry points keep working): name -> target.
SHIMS = {"app": ("api.app", ["create_app"], """The WSGI entry point at its old place: ``gunicorn 'kti_policy.app:create_app()'``
(Dockerfile, gunicorn.conf.py) keeps working. The factory lives in ``kti_policy.api.app``.""")}

# store.py (1,100 lines) cut by responsibility: new module -> (docstring, top-level names).
# Everything not named stays in store/db.py (the Store class, its records and queries).
STORE_SPLIT: dict[str, tuple[str, list[str]]] = {
    "tables": ("""The database schema: the tables (events, the outbox's deliveries, their attempts)
and the column type keeping datetimes aware in Python and naive UTC in the database. The migrations
(``migrations/``) create the same tables.""",
               ["UtcDateTime", "_PK", "metadata", "events_t", "deliveries_t", "attempts_t",
                "STATUSES", "utcnow", "_iso"]),
    "validation": ("""Incoming events checked against CONTRACT section 3, naming the field of every
problem (``events[i].`` in batches), before anything is written.""",
                   ["EVENT_ID_RE", "MAX_SUBJECT_ID_LEN", "_OPTIONAL_DATA", "DEFAULT_VOCABULARY",
                    "NewEvent", "_bad", "MAX_FUTURE_SKEW", "parse_time", "validate_event"]),
    "bodies": ("""Outbox bodies: the bytes sent to subscribers, and their sealing at rest (the body
is the only place the clear subject id exists, so it never reaches the files unsealed).""",
               ["webhook_body", "BodySealer"]),
    "queries": ("""The decision path's facts reads, compiled once and run on a pooled DB-API
connection (building the statement per call cost more than running it on SQLite).""",
                ["_FACTS_IN_FOLD_ORDER", "_FACTS_OF_ONE", "_FACTS_OF_MANY", "_DriverQuery",
                 "_FactRow"]),
}

# Names moved between modules so that layering holds: (old module, name) -> new module.
NAME_MOVES: dict[str, tuple[str, list[str]]] = {
    # config checks KTI_API_KEYS at bind time; the key table is configuration, the request side
    # (require_role, check_role) stays in api.auth
    "api.auth": ("config", ["ROLES", "_IMPLIED", "_digest", "ApiKeys"]),
}

# Tests: folder per package; a test file goes where the module its name starts with went
# (test_store_dated.py -> store), unless named here. "" = tests/ itself.
TEST_MAP: dict[str, str] = {
    "test_api_e2e.py": "e2e",
    "test_reliability_e2e.py": "e2e",
    "test_ui_browser.py": "e2e",
    "test_openapi_client.py": "e2e",
    "test_differential.py": "decide",
    "test_pack_properties.py": "decide",
    "test_client.py": "",
    "test_dockerfile.py": "",
    "test_layering.py": "",
}

SKIP_DIRS = {".git", ".venv", "venv", "__pycache__", "node_modules", "build", "dist", "instance"}
TEXT_SUFFIXES = {".py", ".md", ".yaml", ".yml", ".toml", ".txt", ".cfg", ".ini", ".sh", ".json",
                 ".html", ".js", ".mako"}
TEXT_NAMES = {"Dockerfile", "Makefile", ".dockerignore"}

# --------------------------------------------------------------------------------------------------


def die(msg: str) -> None:
    print(f"relayout: ERROR: {msg}", file=sys.stderr)
    sys.exit(1)


def say(msg: str) -> None:
    print(f"relayout: {msg}")


class Layout:
    def __init__(self, repo: Path) -> None:
        self.repo = repo
        self.pkg = repo / "src" / "kti_policy"
        self.git = (repo / ".git").exists()
        self.changed: set[Path] = set()

    # -- names ------------------------------------------------------------------------------------
    def new_module(self, old: str) -> str:
        """'kti_policy.store' -> 'kti_policy.store.db' (full dotted names) while the old module is
        still on disk; names already in the new layout come back unchanged."""
        if not old.startswith("kti_policy."):
            return old
        parts = old[len("kti_policy."):].split(".")
        for i in range(len(parts), 0, -1):
            head = ".".join(parts[:i])
            if head in MAP and not MAP[head].endswith("*"):
                if self.old_exists(head):
                    return "kti_policy." + ".".join([MAP[head], *parts[i:]])
                break
        return old

    def old_exists(self, head: str) -> bool:
        p = self.pkg / head.replace(".", "/")
        return p.with_suffix(".py").is_file() or (p.is_dir() and head not in LAYERS)

    def target(self, old_mod: str, name: str | None) -> str:
        """Where ``name`` imported from ``old_mod`` lives now (module dotted name)."""
        rel = old_mod[len("kti_policy."):] if old_mod.startswith("kti_policy.") else ""
        if name is not None and (self.pkg / rel.replace(".", "/") / name).with_suffix(".py").exists() \
                and (self.pkg / rel.replace(".", "/")).is_dir() and rel:
            return old_mod  # a submodule of a package that is already in place
        if name is not None:
            for src_rel, (dst, names) in NAME_MOVES.items():
                if rel == src_rel and name in names:
                    return "kti_policy." + dst
            if rel in ("store", "store.db"):
                for part, (_, names) in STORE_SPLIT.items():
                    if name in names:
                        return f"kti_policy.store.{part}"
        return self.new_module(old_mod)

    # -- files ------------------------------------------------------------------------------------
    def write(self, path: Path, text: str) -> None:
        if not path.exists() or path.read_text(encoding="utf-8") != text:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
            self.changed.add(path)

    def move(self, src: Path, dst: Path) -> None:
        dst.parent.mkdir(parents=True, exist_ok=True)
        if self.git:
            subprocess.run(["git", "mv", str(src), str(dst)], cwd=self.repo, check=True)
        else:
            shutil.move(str(src), str(dst))
        self.changed.add(dst)

    def text_files(self) -> list[Path]:
        out = []
        for p in self.repo.rglob("*"):
            rel = p.relative_to(self.repo)
            if any(part in SKIP_DIRS or part.endswith(".egg-info") for part in rel.parts):
                continue
            if p.is_file() and (p.suffix in TEXT_SUFFIXES or p.name in TEXT_NAMES):
                out.append(p)
        return sorted(out)

    def py_files(self) -> list[Path]:
        return [p for p in self.text_files() if p.suffix == ".py"]


# ---- 1. preflight -------------------------------------------------------------------------------


def preflight(lay: Layout) -> None:
    if not lay.pkg.is_dir():
        die(f"{lay.pkg} not found: give the checkout's root")
    unplaced = []
    for entry in sorted(lay.pkg.iterdir()):
        name = entry.stem if entry.suffix == ".py" else entry.name
        if entry.name == "__pycache__" or (entry.is_file() and entry.suffix != ".py"):
            continue
        if name in MAP or name in LAYERS or name in SHIMS or name == "api":
            continue
        unplaced.append(str(entry.relative_to(lay.repo)))
    if unplaced:
        die("these modules are not placed by MAP (add a line to MAP at the top of "
            f"{Path(__file__).name}):\n  " + "\n  ".join(unplaced))
    for old, new in MAP.items():
        if new.endswith("*") or old == "__init__":
            continue
        o = lay.pkg / (old.replace(".", "/"))
        n = lay.pkg / (new.replace(".", "/"))
        found = [p for p in (o, o.with_suffix(".py"), n, n.with_suffix(".py")) if p.exists()]
        if not found:
            say(f"note: MAP entry {old!r} -> {new!r}: neither place exists (skipped)")
    say("preflight: every module under src/kti_policy is placed by MAP")


# ---- 2. cuts that layering needs (before the move; each checks whether it is done) -----------------


def top_level_segments(text: str) -> tuple[ast.Module, list[tuple[int, int, ast.stmt]]]:
    """Each top-level statement with its line range (0-based, end exclusive), comments above it
    included (they belong to what follows them)."""
    tree = ast.parse(text)
    lines = text.splitlines(keepends=True)
    segs = []
    prev_end = 0
    for node in tree.body:
        start = node.lineno - 1
        if getattr(node, "decorator_list", None):
            start = min(d.lineno for d in node.decorator_list) - 1  # type: ignore[attr-defined]
        s = start
        while s > prev_end and lines[s - 1].lstrip().startswith("#"):
            s -= 1
        end = node.end_lineno or node.lineno
        segs.append((s, end, node))
        prev_end = end
    return tree, segs


def bound_names(node: ast.stmt) -> list[str]:
    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
        return [node.name]
    if isinstance(node, ast.Assign):
        return [t.id for t in node.targets if isinstance(t, ast.Name)]
    if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
        return [node.target.id]
    return []


def used_names(nodes: list[ast.stmt]) -> set[str]:
    used: set[str] = set()
    for node in nodes:
        for n in ast.walk(node):
            if isinstance(n, ast.Name):
                used.add(n.id)
            elif isinstance(n, ast.Constant) and isinstance(n.value, str) and n.value.isidentifier():
                used.add(n.value)  # __all__ entries, string annotations
    return used


def import_lines(tree: ast.Module, text: str, used: set[str]) -> list[str]:
    """The module's top-level imports (not under TYPE_CHECKING) that bind a name in ``used``."""
    out = []
    for node in tree.body:
        if isinstance(node, ast.ImportFrom) and node.module == "__future__":
            continue
        if isinstance(node, ast.Import):
            keep = [a for a in node.names if (a.asname or a.name.split(".")[0]) in used]
            out += [f"import {a.name}" + (f" as {a.asname}" if a.asname else "") for a in keep]
        elif isinstance(node, ast.ImportFrom):
            keep = [a for a in node.names if (a.asname or a.name) in used]
            if keep:
                names = ", ".join(a.name + (f" as {a.asname}" if a.asname else "") for a in keep)
                out.append(f"from {'.' * node.level}{node.module or ''} import {names}")
    return out


def move_names(lay: Layout, src: Path, dst: Path, names: list[str], dst_import: str,
               src_import: str) -> None:
    """Cut the top-level definitions ``names`` out of ``src`` and append them to ``dst`` with the
    imports they need; ``src`` imports back what it still uses (``dst_import``: how src names dst,
    ``src_import``: how dst names src)."""
    text = src.read_text(encoding="utf-8")
    tree, segs = top_level_segments(text)
    lines = text.splitlines(keepends=True)
    moving = [(s, e, n) for s, e, n in segs if set(bound_names(n)) & set(names)]
    if not moving:
        return
    moved_text = "".join("".join(lines[s:e]) + "\n\n" for s, e, _ in moving)
    keep_lines = [ln for i, ln in enumerate(lines) if not any(s <= i < e for s, e, _ in moving)]
    rest = re.sub(r"\n{4,}", "\n\n\n", "".join(keep_lines))
    moved_nodes = [n for _, _, n in moving]
    need = import_lines(tree, text, used_names(moved_nodes))
    rest_used = used_names(ast.parse(rest).body)
    back = sorted(n for n in names if n in rest_used)
    if back:
        rest = add_imports(rest, [f"from {dst_import} import {', '.join(back)}"])
    lay.write(src, rest)
    dtext = dst.read_text(encoding="utf-8")
    bound = {a.asname or a.name for n in ast.parse(dtext).body
             if isinstance(n, (ast.Import, ast.ImportFrom)) for a in n.names}
    need = [ln for ln in need if not (set(re.findall(r"(?:as |import |, )(\w+)", ln)) <= bound)]
    dtext = add_imports(dtext, [ln for ln in need if src_import not in ln])
    lay.write(dst, dtext.rstrip("\n") + "\n\n\n" + moved_text.rstrip("\n") + "\n")
    say(f"moved {', '.join(names)}: {src.relative_to(lay.repo)} -> {dst.relative_to(lay.repo)}")


def add_imports(text: str, new: list[str]) -> str:
    """Insert import lines after the last top-level import (ruff sorts them later)."""
    if not new:
        return text
    tree = ast.parse(text)
    last = 0
    for node in tree.body:
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            last = node.end_lineno or node.lineno
        elif last:
            break
    lines = text.splitlines(keepends=True)
    return "".join(lines[:last]) + "".join(ln + "\n" for ln in new) + "".join(lines[last:])


def replace_once(lay: Layout, path: Path, old: str, new: str, done_marker: str) -> None:
    text = path.read_text(encoding="utf-8")
    if done_marker in text:
        return
    if old not in text:
        die(f"{path.relative_to(lay.repo)}: expected text not found (main changed here; adapt "
            f"the script):\n{old}")
    lay.write(path, text.replace(old, new, 1))


SUBSCRIBER = '''

class Subscriber(Protocol):
    """What the store needs of a webhook subscription (``kti_policy.hooks.subscriptions``): its id
    and which event types it wants. The store is handed them; it imports nothing from hooks."""

    @property
    def id(self) -> str: ...

    def wants(self, event_type: str) -> bool: ...

'''

SUBS_FROM_CONFIG = '''    @classmethod
    def subscriptions_from_config(
        cls, config: Mapping[str, Any], environ: Mapping[str, str]
    ) -> Sequence[Subscriber]:
        """The subscriptions ``from_config`` fans events out to: none here, the store imports
        nothing from hooks; ``kti_policy.hooks.fanout.Store`` reads them from ``KTI_HOOKS_DIR``."""
        return ()

'''


def cut_store_hooks(lay: Layout, store: Path) -> None:
    """store.py: no import of hooks at all (not even TYPE_CHECKING); a Protocol instead."""
    if not store.exists():
        return
    text = store.read_text(encoding="utf-8")
    if "class Subscriber(Protocol)" in text:
        return
    replace_once(lay, store, "if TYPE_CHECKING:\n    from .hooks import Subscription\n\n", "",
                 "class Subscriber(Protocol)")
    replace_once(lay, store, "\nclass Store:", SUBSCRIBER + "\nclass Store:",
                 "class Subscriber(Protocol)")
    text = store.read_text(encoding="utf-8")
    text = re.sub(r"\bSequence\[Subscription\]", "Sequence[Subscriber]", text)
    text = re.sub(r"\blist\[Subscription\]", "list[Subscriber]", text)
    text = text.replace("from typing import TYPE_CHECKING, Any, NamedTuple",
                        "from typing import Any, NamedTuple, Protocol, Self")
    # from_config returns the class it is called on (hooks.fanout.Store is a subclass)
    text = text.replace("""        cls, config: Mapping[str, Any], environ: Mapping[str, str] | None = None
    ) -> Store:""", """        cls, config: Mapping[str, Any], environ: Mapping[str, str] | None = None
    ) -> Self:""")
    lay.write(store, text)
    replace_once(lay, store, "        from .hooks import active_subscriptions, load_subscriptions\n\n",
                 "", "subscriptions_from_config(config, env)")
    replace_once(lay, store,
                 '        subs = load_subscriptions(Path(str(config.get("KTI_HOOKS_DIR") or "hooks")))\n',
                 "", "subscriptions_from_config(config, env)")
    replace_once(lay, store, "            active_subscriptions(subs, env),\n",
                 "            cls.subscriptions_from_config(config, env),\n",
                 "subscriptions_from_config(config, env)")
    replace_once(lay, store, "    # -- connections\n", SUBS_FROM_CONFIG + "    # -- connections\n",
                 "def subscriptions_from_config(")
    if re.search(r"\bSubscription\b|from \.hooks|import hooks", store.read_text(encoding="utf-8")):
        die("store.py still names hooks' Subscription: adapt cut_store_hooks")
    say("store: hooks import replaced by the Subscriber protocol and subscriptions_from_config")


FANOUT = '''"""The store wired to the webhook subscriptions of ``KTI_HOOKS_DIR``.

``kti_policy.store`` fans events out to the subscriptions it is handed and imports nothing from this
package; this ``Store`` is that store whose ``from_config`` also reads the subscription files and
attaches their secrets (a subscription whose secret variable is unset is skipped with a warning).
The service and ``kti-policy deliver`` open their store here.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from kti_policy.store import db

from .subscriptions import Subscription, active_subscriptions, load_subscriptions


class Store(db.Store):
    """``kti_policy.store.db.Store`` fanning events out to the active subscriptions of the
    configuration's ``KTI_HOOKS_DIR`` (default ``hooks``)."""

    subscriptions: list[Subscription]  # type: ignore[assignment]  # what from_config attached

    @classmethod
    def subscriptions_from_config(
        cls, config: Mapping[str, Any], environ: Mapping[str, str]
    ) -> Sequence[Subscription]:
        subs = load_subscriptions(Path(str(config.get("KTI_HOOKS_DIR") or "hooks")))
        return active_subscriptions(subs, environ)
'''


# ---- 3. imports ----------------------------------------------------------------------------------


def module_of(lay: Layout, path: Path) -> str | None:
    """Dotted module name of a file under src/ (None for files elsewhere)."""
    try:
        rel = path.relative_to(lay.repo / "src")
    except ValueError:
        return None
    parts = list(rel.with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def resolve(node: ast.ImportFrom, mod: str | None, is_pkg: bool) -> str:
    if not node.level:
        return node.module or ""
    if mod is None:
        return node.module or ""
    base = mod.split(".")
    if not is_pkg:
        base = base[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def render(target: str, names: list[str], here_pkg: str | None, indent: str) -> str:
    """An import of ``names`` from module ``target``; relative when it is in the same package;
    wrapped as ruff's isort wraps it past 100 characters."""
    pkg, _, leaf = target.rpartition(".")
    mod = target
    if here_pkg is not None and target.startswith("kti_policy"):
        if target == here_pkg:
            mod = "."
        elif pkg == here_pkg:
            mod = f".{leaf}"
    line = f"{indent}from {mod} import {', '.join(names)}"
    if len(line) <= 100:
        return line
    inner = "".join(f"{indent}    {n},\n" for n in names)
    return f"{indent}from {mod} import (\n{inner}{indent})"


def rewrite_imports(lay: Layout, path: Path, old_mod: str | None, new_mod: str | None,
                    is_pkg: bool) -> None:
    """Rewrite every kti_policy import of ``path`` (written as module ``old_mod``) for the new
    layout, as module ``new_mod``: same package relative, other packages absolute."""
    text = path.read_text(encoding="utf-8")
    try:
        tree = ast.parse(text)
    except SyntaxError:
        return
    here_pkg = None
    if new_mod is not None:
        here_pkg = new_mod if is_pkg else new_mod.rpartition(".")[0]
    uses_from_config = "Store.from_config" in text and new_mod != "kti_policy.hooks.fanout"
    lines = text.splitlines(keepends=True)
    edits: list[tuple[int, int, int, int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                if a.name.startswith("kti_policy.") and lay.new_module(a.name) != a.name:
                    die(f"{path}: 'import {a.name}' form not handled; write it as from-import")
            continue
        if not isinstance(node, ast.ImportFrom):
            continue
        src = resolve(node, old_mod, is_pkg)
        if src != "kti_policy" and not src.startswith("kti_policy."):
            continue
        groups: dict[str, list[str]] = {}
        for a in node.names:
            alias = a.name + (f" as {a.asname}" if a.asname else "")
            if src == "kti_policy" and a.name != "__version__" and a.name not in SHIMS:
                sub = lay.new_module(f"kti_policy.{a.name}")
                tgt, _, nm = sub.rpartition(".")
                alias = nm + (f" as {a.asname}" if a.asname else (f" as {a.name}" if nm != a.name else ""))
            elif src == "kti_policy" and a.name in SHIMS:
                tgt = "kti_policy.api" if a.name == "app" else "kti_policy"
            else:
                tgt = lay.target(src, a.name)
                if tgt == "kti_policy.app":  # the shim: code and tests import the real module
                    tgt = "kti_policy." + SHIMS["app"][0]
                if (a.name == "Store" and tgt == "kti_policy.store.db" and uses_from_config):
                    tgt = "kti_policy.hooks.fanout"
            if tgt == new_mod:
                continue  # the name now lives in this very module
            groups.setdefault(tgt, []).append(alias)
        indent = " " * node.col_offset
        new = "\n".join(render(t, ns, here_pkg, indent) for t, ns in groups.items())
        old = "".join(lines[node.lineno - 1: node.end_lineno])
        trail = old[len(old.rstrip("\n")):]
        last = lines[(node.end_lineno or node.lineno) - 1].rstrip("\n")
        comment = last[node.end_col_offset or 0:] if last[node.end_col_offset or 0:].strip(
            ).startswith("#") else ""
        if not new:
            repl = ""
        else:
            nl = new.split("\n")
            repl = "\n".join(ln + comment for ln in nl) + trail
        if repl != old:
            edits.append((node.lineno - 1, node.end_lineno or node.lineno, 0, 0, repl))
    if not edits:
        return
    for start, end, _, _, repl in sorted(edits, reverse=True):
        lines[start:end] = [repl] if repl else []
    lay.write(path, "".join(lines))


# ---- 4. move --------------------------------------------------------------------------------------


def plan_moves(lay: Layout) -> list[tuple[Path, Path]]:
    moves = []
    for old, new in MAP.items():
        if new.endswith("*") or old == new:
            continue
        o = lay.pkg / old.replace(".", "/")
        n = lay.pkg / new.replace(".", "/")
        if o.with_suffix(".py").is_file() and not (old in SHIMS and is_shim(o.with_suffix(".py"))):
            moves.append((o.with_suffix(".py"), n.with_suffix(".py")))
        elif o.is_dir() and old not in LAYERS:
            moves.append((o, n))
    return moves


def is_shim(path: Path) -> bool:
    return path.exists() and "re-export" in path.read_text(encoding="utf-8")[:400].lower() or (
        path.exists() and "at its old place" in path.read_text(encoding="utf-8")[:400])


def split_store(lay: Layout) -> None:
    db = lay.pkg / "store" / "db.py"
    if not db.exists() or (lay.pkg / "store" / "tables.py").exists():
        return
    text = db.read_text(encoding="utf-8")
    tree, segs = top_level_segments(text)
    lines = text.splitlines(keepends=True)
    owner: dict[str, str] = {}
    for part, (_, names) in STORE_SPLIT.items():
        for n in names:
            owner[n] = part
    defined = {n for _, _, node in segs for n in bound_names(node)}
    missing = sorted(set(owner) - defined)
    if missing:
        die(f"store split: names no longer in store.py: {missing} (adapt STORE_SPLIT)")
    chunks: dict[str, list[tuple[int, int, ast.stmt]]] = {p: [] for p in STORE_SPLIT}
    chunks["db"] = []
    for s, e, node in segs:
        names = bound_names(node)
        parts = {owner.get(n, "db") for n in names} or {"db"}
        if isinstance(node, (ast.Import, ast.ImportFrom)) or (
                isinstance(node, ast.Expr) and node is tree.body[0]):
            parts = {"db"}
        if len(parts) > 1:
            die(f"store split: one statement binds names of two modules: {names}")
        chunks[parts.pop()].append((s, e, node))
    all_defs = {n: owner.get(n, "db") for n in defined}

    def joined(segs_p: list[tuple[int, int, ast.stmt]]) -> str:
        out, prev = "", None
        for s_, e_, node in segs_p:
            text_ = "".join(lines[s_:e_]).strip("\n")
            if prev is not None:
                defn = (ast.FunctionDef, ast.ClassDef)
                gap = 3 if isinstance(node, defn) or isinstance(prev[1], defn) else \
                    1 + sum(1 for ln in lines[prev[0]:s_] if not ln.strip())
                out += "\n" * gap
            out += text_
            prev = (e_, node)
        return out + "\n"

    for part, segs_p in chunks.items():
        nodes = [n for _, _, n in segs_p if not isinstance(n, (ast.Import, ast.ImportFrom))]
        used = used_names(nodes)
        sib: dict[str, list[str]] = {}
        for n in sorted(used):
            p = all_defs.get(n)
            if p and p != part:
                if p == "db":
                    die(f"store split: {part} would import {n} from db (a circle); move {n} too")
                sib.setdefault(p, []).append(n)
        sib_lines = [f"from .{p} import {', '.join(ns)}" for p, ns in sorted(sib.items())]
        if part == "db":
            lay.write(db, add_imports(joined(segs_p), sib_lines))
            continue
        doc, _ = STORE_SPLIT[part]
        imports = import_lines(tree, text, used) + sib_lines
        out = f'"""{doc}\n"""\n\nfrom __future__ import annotations\n\n' + "\n".join(imports) \
            + "\n\n\n" + joined(segs_p)
        lay.write(lay.pkg / "store" / f"{part}.py", out)
        if lay.git:
            subprocess.run(["git", "add", f"src/kti_policy/store/{part}.py"], cwd=lay.repo, check=True)
    say(f"store split: db.py + {', '.join(STORE_SPLIT)}")


def fix_dynamic_imports(lay: Layout) -> None:
    """cli.py registers serve/deliver/diff by ``__import__(f"kti_policy.{module}")`` and skips them
    silently on ImportError: name them by their new dotted paths. Other dynamic imports: listed."""
    cli = lay.pkg / "tools" / "cli.py"
    if cli.exists():
        text = cli.read_text(encoding="utf-8")
        m = re.search(r"for module, name in \((.*?)\):\n", text, re.S)
        if m is None:
            die("tools/cli.py: the optional commands' loop (for module, name in ...) not found")
        inner = re.sub(r'\("(\w+)", ', lambda k: f'("{MAP.get(k.group(1), k.group(1))}", '
                       if MAP.get(k.group(1), "").count(".") else k.group(0), m.group(1))
        lay.write(cli, text[: m.start(1)] + inner + text[m.end(1):])
    for p in sorted(lay.pkg.rglob("*.py")):
        for n, line in enumerate(p.read_text(encoding="utf-8").splitlines(), 1):
            if re.search(r"__import__\(|import_module\(", line) and "kti_policy.{module}" not in line:
                say(f"check by hand, a dynamic import: {p.relative_to(lay.repo)}:{n}: {line.strip()}")


# ---- 5. text: dotted and slashed paths everywhere ---------------------------------------------------


def text_rules(lay: Layout) -> list[tuple[re.Pattern[str], object]]:
    rules: list[tuple[re.Pattern[str], object]] = []
    split_owner = {n: p for p, (_, ns) in STORE_SPLIT.items() for n in ns}
    for old, new in sorted(MAP.items(), key=lambda kv: -len(kv[0])):
        if new.endswith("*") or old == new or old == "__init__":
            continue
        new_pkg = new.split(".")[0]
        collides = old == new_pkg  # store -> store.db: "kti_policy.store" is now the package
        subs = {p.stem for p in (lay.pkg / new_pkg).glob("*")} | set(STORE_SPLIT) if collides else set()

        def dotted(m: re.Match[str], old: str = old, new: str = new, collides: bool = collides,
                   subs: set[str] = subs) -> str:
            nxt = m.group(1)
            if old in SHIMS and not nxt:
                return m.group(0)  # the shim keeps the bare name valid (entry points, Dockerfile)
            if not collides:
                return f"kti_policy.{new}" + (f".{nxt}" if nxt else "")
            if not nxt or nxt in subs:
                return m.group(0)
            mod = new
            if old == "store" and nxt in split_owner:
                mod = f"store.{split_owner[nxt]}"
            return f"kti_policy.{mod}.{nxt}"

        rules.append((re.compile(rf"(?<![\w.])kti_policy\.{re.escape(old)}(?![\w])(?:\.(\w+))?"), dotted))
        src_old = old.replace(".", "/")
        src_new = new.replace(".", "/")
        is_dir = ((lay.pkg / src_old).is_dir() or (lay.pkg / src_new).is_dir()) and old not in LAYERS
        suffix = "/" if is_dir else r"\.py"
        rules.append((re.compile(rf"(?<![\w.])kti_policy/{re.escape(src_old)}({suffix})"),
                      lambda m, n=src_new: f"kti_policy/{n}{m.group(1)}"))
        if not is_dir:
            continue
        path_join = " / ".join(f'"{x}"' for x in new.split("."))
        rules.append((re.compile(rf'"kti_policy" / "{re.escape(old)}"(?! / "({"|".join(LAYERS)})")'),
                      lambda m, pj=path_join: f'"kti_policy" / {pj}'))
    return rules


def rewrite_texts(lay: Layout, files: list[Path]) -> None:
    rules = text_rules(lay)
    for p in files:
        try:
            text = p.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            continue
        new = text
        for pat, repl in rules:
            # 'kti_policy.app:create_app()' is the entry point the shim keeps
            new = pat.sub(lambda m, r=repl: m.group(0) if m.group(0) == "kti_policy.app"
                          and m.string[m.end():m.end() + 1] == ":" else r(m), new)  # type: ignore[operator]
        if new != text:
            lay.write(p, new)


def fix_pyproject(lay: Layout) -> None:
    pp = lay.repo / "pyproject.toml"
    text = pp.read_text(encoding="utf-8")
    m = re.search(r"^kti_policy = \[(.*)\]$", text, re.M)
    if not m:
        die("pyproject.toml: [tool.setuptools.package-data] kti_policy = [...] not found")
    pats = re.findall(r'"([^"]+)"', m.group(1))
    out = []
    for pat in pats:
        head, _, rest = pat.partition("/")
        if rest and head in MAP and head not in LAYERS and not MAP[head].endswith("*") \
                and MAP[head] != head:
            pat = MAP[head].replace(".", "/") + "/" + rest
        out.append(pat)
    text = text[: m.start(1)] + ", ".join(f'"{p}"' for p in out) + text[m.end(1):]
    lay.write(pp, text)


# ---- 6. tests -------------------------------------------------------------------------------------

CONFTEST_PATHS = '''# --- tests mirror the packages (tests/policy/, tests/decide/, ...; end-to-end in tests/e2e/) --------
# Tests import each other by basename (``from test_policytest import ...``): every test folder that
# is not a package is on sys.path (pytest's default "prepend" import mode adds tests/ itself, so
# ``from conftest import ...`` and ``from e2e.server import ...`` work). Basenames must therefore be
# unique across folders; this refuses a duplicate before anything is collected.
import sys as _lay_sys  # noqa: E402
from pathlib import Path as _LayPath  # noqa: E402

_LAY_TESTS = _LayPath(__file__).resolve().parent
_lay_seen: dict[str, _LayPath] = {}
for _lay_file in sorted(_LAY_TESTS.rglob("test_*.py")):
    if _lay_file.name in _lay_seen:
        raise RuntimeError(f"two test files named {_lay_file.name}: {_lay_seen[_lay_file.name]}, {_lay_file}")
    _lay_seen[_lay_file.name] = _lay_file
    _lay_dir = str(_lay_file.parent)
    if not (_lay_file.parent / "__init__.py").exists() and _lay_dir not in _lay_sys.path:
        _lay_sys.path.append(_lay_dir)
# --- end tests layout ------------------------------------------------------------------------------
'''


def test_folder(name: str) -> str:
    if name in TEST_MAP:
        return TEST_MAP[name]
    stem = name[len("test_"):-len(".py")]
    parts = stem.split("_")
    for i in range(len(parts), 0, -1):
        head = "_".join(parts[:i])
        if head in MAP and not MAP[head].endswith("*"):
            new = MAP[head]
            return "" if "." not in new else new.split(".")[0]
        if head in LAYERS or head == "api":
            return head
        api_mod = lay_global.pkg / "api" / f"{head}.py"
        if api_mod.exists():
            return "api"
    return "?"


def move_tests(lay: Layout) -> list[tuple[Path, Path]]:
    tests = lay.repo / "tests"
    moves, unknown = [], []
    for f in sorted(tests.glob("test_*.py")):
        folder = test_folder(f.name)
        if folder == "?":
            unknown.append(f.name)
        elif folder:
            moves.append((f, tests / folder / f.name))
    if unknown:
        die("tests without a folder (name them in TEST_MAP):\n  " + "\n  ".join(unknown))
    for src, dst in moves:
        text = src.read_text(encoding="utf-8")
        # one level deeper: the paths the test builds from its own file
        text = re.sub(r"(Path\(__file__\)(?:\.resolve\(\))?\.parent)(?![\w.]*parent)(?!s)",
                      r"\1.parent", text)
        text = re.sub(r"(Path\(__file__\)(?:\.resolve\(\))?\.parents\[)(\d+)\]",
                      lambda m: f"{m.group(1)}{int(m.group(2)) + 1}]", text)
        src.write_text(text, encoding="utf-8")
        lay.move(src, dst)
    if moves:
        say(f"tests: {len(moves)} files into {len({d.parent for _, d in moves})} folders")
    conf = tests / "conftest.py"
    ctext = conf.read_text(encoding="utf-8")
    if "# --- tests mirror the packages" not in ctext:
        # before the first section that imports from e2e (module level)
        idx = ctext.find("\nimport pytest\n")
        if idx < 0:
            die("tests/conftest.py: 'import pytest' line not found")
        idx += len("\nimport pytest\n")
        lay.write(conf, ctext[:idx] + "\n" + CONFTEST_PATHS + ctext[idx:])
    return moves


LAYERING_TEST = '''"""The packages import one way (issue 16): each only the root base modules and the packages below
it, TYPE_CHECKING and function-level imports included. Order bottom -> top as in docs/DESIGN.md."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parents[1] / "src" / "kti_policy"
LAYERS = {layers!r}
SHIMS = {shims!r}  # root modules re-exporting from above, for entry points


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
            out += [(node.lineno, f"{{mod}}.{{a.name}}" if not node.module else mod) for a in node.names]
    return [(n, m) for n, m in out if m.split(".")[0] == "kti_policy"]


@pytest.mark.parametrize("path", sorted(PKG.rglob("*.py")), ids=lambda p: str(p.relative_to(PKG)))
def test_imports_only_below(path: Path) -> None:
    module = ".".join(path.relative_to(PKG.parent).with_suffix("").parts)
    bad = [f"{{path.name}}:{{n}} imports {{m}}" for n, m in imports(path) if layer(m) > layer(module)]
    assert not bad, bad
'''


def write_layering_test(lay: Layout) -> None:
    lay.write(lay.repo / "tests" / "test_layering.py",
              LAYERING_TEST.format(layers=LAYERS, shims=sorted(SHIMS)))


# ---- 7. docs ----------------------------------------------------------------------------------------


def first_doc_line(path: Path) -> str:
    try:
        doc = ast.get_docstring(ast.parse(path.read_text(encoding="utf-8"))) or ""
    except SyntaxError:
        return ""
    para = doc.strip().split("\n\n")[0].replace("\n", " ")
    m = re.match(r"(.+?\.)(\s|$)", para)
    line = (m.group(1) if m else para).replace("|", "\\|")
    return line if len(line) < 170 else line[:165].rsplit(" ", 1)[0] + " ..."


def modules_of(lay: Layout, pkg: str) -> list[Path]:
    d = lay.pkg / pkg if pkg else lay.pkg
    out = sorted(p for p in d.glob("*.py") if p.name != "__init__.py")
    out += sorted(p for p in d.iterdir() if p.is_dir() and p.name != "__pycache__"
                  and p.name not in LAYERS)
    return out


def design_section(lay: Layout) -> str:
    rows = []
    width = max(len(n) for n in LAYERS) + 2
    for name in reversed(LAYERS):
        mods = ", ".join(p.stem if p.is_file() else p.name + "/" for p in modules_of(lay, name))
        rows.append(f"    {name + '/':<{width}} {mods}")
        rows.append(f"    {'|':^{width - 2}}".rstrip())
    base = [p.stem if p.is_file() else p.name + "/" for p in modules_of(lay, "")]
    rows.append(f"    {'(root)':<{width}} {', '.join(base)}")
    picture = "\n".join(rows)
    table = ["| module | job |", "|---|---|"]
    for name in [""] + LAYERS:
        for p in modules_of(lay, name):
            rel = p.relative_to(lay.pkg).as_posix() + ("/" if p.is_dir() else "")
            doc = first_doc_line(p if p.is_file() else p / "__init__.py") if (
                p.is_file() or (p / "__init__.py").exists()) else ""
            if not doc and p.is_dir():
                doc = {"migrations": "Alembic migrations, run by `Store.migrate()` on open",
                       "static": "the playground's CSS and JavaScript",
                       "templates": "the playground's HTML"}.get(p.name, "")
            table.append(f"| `{rel}` | {doc} |")
    return f"""## Packages and the one-way flow (`src/kti_policy/`)

Each package imports only the root base modules and the packages below it
(`tests/test_layering.py` fails otherwise, TYPE_CHECKING imports included). A lower package that
needs something from a higher one takes it as a parameter: the store is handed the subscriptions it
fans events out to (`store.db.Subscriber`); `hooks.fanout.Store` reads them from `KTI_HOOKS_DIR`.

{picture}

The data's way: YAML -> `policy` (positions, model, every error at once) -> `decide` (compile ->
engine, the only module importing durable-rules -> decision) -> `api` (Flask) and `tools` (click).
Beside it: `facts` (the fold), `store` (events, outbox), `hooks` (webhooks). `kti_policy.app`
re-exports `create_app` for gunicorn; each package's `__init__.py` says what it is for and what it
may import.

{chr(10).join(table)}

"""


def fix_design(lay: Layout) -> None:
    path = lay.repo / "docs" / "DESIGN.md"
    if not path.exists():
        return
    text = path.read_text(encoding="utf-8")
    m = re.search(r"^## (Flow and modules|Packages and the one-way flow)[^\n]*\n.*?(?=^## )", text,
                  re.M | re.S)
    if not m:
        die("docs/DESIGN.md: section '## Flow and modules' not found")
    lay.write(path, text[: m.start()] + design_section(lay) + text[m.end():])


# ---- main -----------------------------------------------------------------------------------------

lay_global: Layout


def main() -> None:
    global lay_global
    if len(sys.argv) != 2:
        die("usage: python relayout.py /path/to/checkout")
    lay = lay_global = Layout(Path(sys.argv[1]).resolve())
    preflight(lay)
    pkg = lay.pkg

    # cuts first, at the old places (each is a no-op when done)
    for src_rel, (dst, names) in NAME_MOVES.items():
        src = pkg / (src_rel.replace(".", "/") + ".py")
        dst_path = pkg / (dst.replace(".", "/") + ".py")
        if src.exists() and dst_path.exists():
            move_names(lay, src, dst_path, names, f"kti_policy.{dst}", src_rel.split(".")[-1])
    cfg = pkg / "config.py"
    if cfg.exists():
        t = cfg.read_text(encoding="utf-8")
        t2 = t.replace("    from .api.auth import ApiKeys\n\n", "").replace(
            "    from .api.auth import ApiKeys\n", "")
        lay.write(cfg, t2)
    cut_store_hooks(lay, pkg / "store.py")

    # imports, then the move
    moves = plan_moves(lay)
    new_of: dict[Path, tuple[str | None, str | None, bool]] = {}
    moved_src = {s for s, _ in moves}
    for f in lay.py_files():
        old_mod = module_of(lay, f)
        is_pkg = f.name == "__init__.py"
        if old_mod is not None:
            new_mod = lay.new_module(old_mod)
            for s, d in moves:
                if f == s or (s.is_dir() and s in f.parents):
                    new_mod = module_of(lay, d / f.relative_to(s)) if s.is_dir() else module_of(lay, d)
        else:
            new_mod = None
        new_of[f] = (old_mod, new_mod, is_pkg)
    for f, (old_mod, new_mod, is_pkg) in new_of.items():
        rewrite_imports(lay, f, old_mod, new_mod, is_pkg)
    for s, d in moves:
        lay.move(s, d)
        say(f"moved {s.relative_to(lay.repo)} -> {d.relative_to(lay.repo)}")
    del moved_src

    split_store(lay)
    fix_dynamic_imports(lay)

    # packages, shim, fanout
    for name, doc in PACKAGES:
        init = pkg / name / "__init__.py"
        lay.write(init, f'"""{doc}\n"""\n')
    root_init = pkg / "__init__.py"
    rtext = root_init.read_text(encoding="utf-8")
    rtree = ast.parse(rtext)
    if rtree.body and isinstance(rtree.body[0], ast.Expr) and "Packages, bottom -> top" not in rtext:
        rlines = rtext.splitlines(keepends=True)
        lay.write(root_init, f'"""{ROOT_DOC}\n"""\n' + "".join(rlines[rtree.body[0].end_lineno:]))
    for name, (target, names, doc) in SHIMS.items():
        shim = pkg / f"{name}.py"
        lay.write(shim, f'"""{doc}\n"""\n\nfrom kti_policy.{target} import {", ".join(names)}\n\n'
                        f'__all__ = {names!r}\n'.replace("'", '"'))
    if (pkg / "hooks" / "subscriptions.py").exists():
        lay.write(pkg / "hooks" / "fanout.py", FANOUT)
    if lay.git:
        subprocess.run(["git", "add", "-A", "src"], cwd=lay.repo, check=True)

    # text everywhere (docs, modelines, pyproject, Dockerfile, strings in code and tests)
    fix_pyproject(lay)
    test_moves = move_tests(lay)
    rewrite_texts(lay, lay.text_files())
    # test files named by path in docs: tests/test_x.py -> tests/<folder>/test_x.py
    for s, d in test_moves:
        old, new = f"tests/{s.name}", d.relative_to(lay.repo).as_posix()
        pat = re.compile(rf"(?<![\w/]){re.escape(old)}")
        for p in lay.text_files():
            t = p.read_text(encoding="utf-8")
            if old in t:
                lay.write(p, pat.sub(new, t))
    write_layering_test(lay)
    fix_design(lay)

    # ruff: sort the rewritten imports; drop those the cuts left unused
    ruff = lay.repo / ".venv" / "bin" / "ruff"
    ruff_cmd = [str(ruff)] if ruff.exists() else ([shutil.which("ruff")] if shutil.which("ruff") else None)
    py = sorted(str(p) for p in lay.changed if p.suffix == ".py" and p.exists())
    if ruff_cmd and py:
        subprocess.run([*ruff_cmd, "check", "--quiet", "--select", "I001", "--fix", *py],  # type: ignore[list-item]
                       cwd=lay.repo, check=False)
        cut = [str(p) for p in (pkg / "config.py", pkg / "api" / "auth.py", *sorted((pkg / "store").glob("*.py")))
               if p.exists()]
        subprocess.run([*ruff_cmd, "check", "--quiet", "--select", "F401,I001", "--fix", *cut],  # type: ignore[list-item]
                       cwd=lay.repo, check=False)
    elif py:
        say("note: ruff not found; run `ruff check --select I001 --fix src tests` to sort imports")
    pip = lay.repo / ".venv" / "bin" / "pip"
    if pip.exists() and lay.changed:
        say("reinstalling the editable package (the kti-policy entry point moved)")
        subprocess.run([str(pip), "install", "-q", "--no-deps", "-e", "."], cwd=lay.repo, check=True)
    say(f"done: {len(lay.changed)} files written" if lay.changed else "done: nothing to do")


if __name__ == "__main__":
    main()
