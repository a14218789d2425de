"""The Dockerfile, checked without a Docker engine.

- Static: it parses; multi-stage on python:3.11-slim; the compiler only in the build stage; the
  final stage runs as a non-root user, exposes the port gunicorn binds, has a Python HEALTHCHECK on
  /healthz, the gunicorn entry point, the policy/hooks/instance folders as volumes; every COPY
  source exists and is not excluded by ``.dockerignore``; every ``KTI_*`` it sets is a real setting.
- The wheel: the build context the Dockerfile copies builds as a wheel holding every module and the
  package data (migrations, schemas, static files); installed on its own it serves an app.
- The build stage for real: its RUN steps (all but apt-get) run in a temporary folder standing for
  /src, /opt/venv and /wheels; the resulting virtualenv then runs the image's CMD and HEALTHCHECK.
  Skipped, saying why, when no package index is reachable.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
import tomllib
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DOCKERFILE = REPO / "Dockerfile"
DOCKERIGNORE = REPO / ".dockerignore"
CLEAN_POLICIES = REPO / "tests" / "data" / "clean"

pytestmark = pytest.mark.timeout(300)

BUILD_TOOLS = ("gcc", "g++", "clang", "make", "build-essential", "libc6-dev", "python3-dev",
               "libpython3", "cmake")


# --- a small Dockerfile parser -------------------------------------------------------------------


@dataclass
class Instruction:
    cmd: str  # upper case: FROM, RUN, COPY, ...
    rest: str  # everything after the keyword, continuations joined
    line: int

    def flags_and_args(self) -> tuple[dict[str, str], list[str]]:
        """``--from=build a b`` -> ({"from": "build"}, ["a", "b"]) (shell form only)."""
        words = shlex.split(self.rest)
        flags: dict[str, str] = {}
        while words and words[0].startswith("--"):
            name, _, value = words.pop(0)[2:].partition("=")
            flags[name] = value
        return flags, words

    def exec_form(self) -> list[str] | None:
        text = self.rest.strip()
        if text.startswith("["):
            value = json.loads(text)
            assert isinstance(value, list) and all(isinstance(v, str) for v in value), self
            return value
        return None


@dataclass
class Stage:
    base: str
    name: str | None
    instructions: list[Instruction] = field(default_factory=list)

    def all(self, cmd: str) -> list[Instruction]:
        return [i for i in self.instructions if i.cmd == cmd]

    def env(self) -> dict[str, str]:
        out: dict[str, str] = {}
        for instr in self.all("ENV"):
            for word in shlex.split(instr.rest):
                key, sep, value = word.partition("=")
                assert sep, f"line {instr.line}: use ENV KEY=value"
                out[key] = value
        return out


def logical_lines(text: str) -> list[tuple[int, str]]:
    """Join ``\\`` continuations; drop comments and blank lines (as Docker does, also inside a
    continued instruction)."""
    out: list[tuple[int, str]] = []
    buf: list[str] = []
    start = 0
    for n, raw in enumerate(text.splitlines(), 1):
        stripped = raw.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if not buf:
            start = n
        if stripped.endswith("\\"):
            buf.append(stripped[:-1].strip())
            continue
        buf.append(stripped)
        out.append((start, " ".join(buf)))
        buf = []
    assert not buf, "the Dockerfile ends inside a continued line"
    return out


def parse_dockerfile(text: str) -> tuple[dict[str, str], list[Stage]]:
    args: dict[str, str] = {}
    stages: list[Stage] = []
    for line, content in logical_lines(text):
        cmd, _, rest = content.partition(" ")
        cmd = cmd.upper()
        instr = Instruction(cmd, rest.strip(), line)
        if cmd == "ARG" and not stages:
            arg, _, default = instr.rest.partition("=")
            args[arg] = default
        elif cmd == "FROM":
            words = instr.rest.split()
            base = re.sub(r"\$\{?(\w+)\}?", lambda m: args.get(m.group(1), m.group(0)), words[0])
            stage_name = words[2] if len(words) >= 3 and words[1].upper() == "AS" else None
            stages.append(Stage(base, stage_name))
        else:
            assert stages, f"line {line}: {cmd} before the first FROM"
            stages[-1].instructions.append(instr)
    return args, stages


@pytest.fixture(scope="module")
def stages() -> list[Stage]:
    return parse_dockerfile(DOCKERFILE.read_text())[1]


# --- .dockerignore -------------------------------------------------------------------------------


def _ignore_regex(pattern: str) -> re.Pattern[str]:
    out = []
    i = 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out.append("(?:.*/)?")
            i += 3
        elif pattern.startswith("**", i):
            out.append(".*")
            i += 2
        elif pattern[i] == "*":
            out.append("[^/]*")
            i += 1
        elif pattern[i] == "?":
            out.append("[^/]")
            i += 1
        elif pattern[i] == "[":  # a character class, as it is
            end = pattern.index("]", i + 1)
            out.append(pattern[i:end + 1])
            i = end + 1
        else:
            out.append(re.escape(pattern[i]))
            i += 1
    return re.compile("".join(out) + r"\Z")


def dockerignore_excludes(path: str, rules: list[str]) -> bool:
    """Docker's semantics: the last matching pattern wins; a pattern matching a parent folder
    matches everything below it; ``!`` re-includes."""
    parts = path.split("/")
    prefixes = ["/".join(parts[: k + 1]) for k in range(len(parts))]
    excluded = False
    for rule in rules:
        negate = rule.startswith("!")
        pattern = os.path.normpath(rule[1:] if negate else rule).lstrip("/")
        rx = _ignore_regex(pattern)
        if any(rx.match(p) for p in prefixes):
            excluded = not negate
    return excluded


def dockerignore_rules() -> list[str]:
    return [
        line.strip() for line in DOCKERIGNORE.read_text().splitlines()
        if line.strip() and not line.strip().startswith("#")
    ]


def test_dockerignore_matcher_semantics() -> None:
    rules = ["*", "!src/", "**/__pycache__", "instance"]
    assert dockerignore_excludes(".venv/bin/python", rules)
    assert not dockerignore_excludes("src/kti_policy/api/app.py", rules)
    assert dockerignore_excludes("src/kti_policy/__pycache__/app.cpython-311.pyc", rules)
    assert dockerignore_excludes("instance/kti.sqlite3", rules)


# --- static checks -------------------------------------------------------------------------------


def test_multi_stage_on_python_311_slim(stages: list[Stage]) -> None:
    assert len(stages) >= 2, "a build stage and a runtime stage"
    assert all(s.base == "python:3.11-slim" for s in stages), [s.base for s in stages]
    names = [s.name for s in stages[:-1]]
    copies_from = {
        i.flags_and_args()[0].get("from") for i in stages[-1].all("COPY")
    } - {None}
    assert copies_from and copies_from <= set(names), (copies_from, names)


def test_compiler_only_in_the_build_stage(stages: list[Stage]) -> None:
    build, final = stages[0], stages[-1]
    build_runs = " ".join(i.rest for i in build.all("RUN"))
    assert re.search(r"apt-get install .*\bgcc\b", build_runs), "the build stage installs gcc"
    assert "pip\" wheel" in build_runs or "pip wheel" in build_runs, "the build stage builds wheels"
    for instr in final.all("RUN"):
        for tool in BUILD_TOOLS:
            assert not re.search(rf"(?<![\w-]){re.escape(tool)}(?![\w-])", instr.rest), (
                f"line {instr.line}: {tool} in the runtime stage"
            )
        assert "apt-get install" not in instr.rest, f"line {instr.line}: packages in the runtime stage"
    # the runtime gets only the virtualenv from the build stage, never wheels or sources
    for instr in final.all("COPY"):
        flags, words = instr.flags_and_args()
        if "from" in flags:
            assert words[:-1] == ["/opt/venv"], f"line {instr.line}: copies {words[:-1]} from the build"


def test_runs_as_a_non_root_user(stages: list[Stage]) -> None:
    final = stages[-1]
    users = final.all("USER")
    assert users, "the runtime stage sets USER"
    user = users[-1].rest.split(":")[0]
    assert user not in ("root", "0", ""), user
    # the user is created in the image, and no instruction after USER switches back
    runs = " ".join(i.rest for i in final.all("RUN"))
    assert re.search(rf"useradd .*--uid {re.escape(user)}\b", runs) or f"useradd {user}" in runs
    last_user_at = final.instructions.index(users[-1])
    assert all(i.cmd != "USER" for i in final.instructions[last_user_at + 1:])


def test_gunicorn_entry_point(stages: list[Stage]) -> None:
    final = stages[-1]
    assert not final.all("ENTRYPOINT"), "CMD alone, so that `docker run IMAGE kti-policy ...` works"
    cmd = final.all("CMD")[-1].exec_form()
    assert cmd == ["gunicorn", "-c", "/app/gunicorn.conf.py", "kti_policy.app:create_app()"], cmd
    copied = {words[-1]: words[:-1] for i in final.all("COPY")
              for flags, words in [i.flags_and_args()] if "from" not in flags}
    assert copied.get("/app/gunicorn.conf.py") == ["gunicorn.conf.py"], copied


def test_port_env_and_volumes(stages: list[Stage]) -> None:
    from kti_policy.config import DEFAULTS, ConfigError, check_auth_for_binds

    final = stages[-1]
    env = final.env()
    assert env["KTI_POLICY_DIR"] == "/policies"
    assert env["KTI_HOOKS_DIR"] == "/hooks"
    assert env["KTI_INSTANCE_DIR"] == "/instance"
    assert "KTI_DATABASE_URL" not in env, "SQLite in /instance unless the operator sets PostgreSQL"
    assert "KTI_API_KEYS" not in env and "KTI_PSEUDONYM_KEY" not in env, "no secrets in the image"
    known = set(DEFAULTS) | {"KTI_BIND", "KTI_THREADS", "KTI_WORKER_CLASS", "KTI_LOG_LEVEL",
                             "KTI_ACCESS_LOG", "KTI_MAX_REQUESTS"}  # the last from gunicorn.conf.py
    assert {k for k in env if k.startswith("KTI_")} <= known, set(env) - known
    gunicorn_conf = (REPO / "gunicorn.conf.py").read_text()
    assert "KTI_BIND" in gunicorn_conf
    port = env["KTI_BIND"].rsplit(":", 1)[1]
    exposed = [w.split("/")[0] for i in final.all("EXPOSE") for w in i.rest.split()]
    assert exposed == [port], (exposed, env["KTI_BIND"])
    volumes = [v for i in final.all("VOLUME") for v in (i.exec_form() or i.rest.split())]
    assert {"/policies", "/hooks", "/instance"} <= set(volumes), volumes
    # the SQLite database and the pseudonym key file are written by the unprivileged user
    runs = " ".join(i.rest for i in final.all("RUN"))
    assert re.search(r"chown \S+ [^&]*/instance\b", runs), "the instance volume belongs to the user"
    # the decision log is a file in a volume the user may write (a pipe may split long lines)
    log_dir = env["KTI_DECISION_LOG"].rsplit("/", 1)[0]
    assert env["KTI_DECISION_LOG"].startswith("/") and log_dir in volumes, env["KTI_DECISION_LOG"]
    assert re.search(rf"chown \S+ [^&]*{re.escape(log_dir)}\b", runs), log_dir
    # the image binds 0.0.0.0: without keys the service refuses to start (docker run -e KTI_API_KEYS)
    with pytest.raises(ConfigError):
        check_auth_for_binds([env["KTI_BIND"]], None)


def test_healthcheck_uses_python_on_healthz(stages: list[Stage]) -> None:
    final = stages[-1]
    checks = final.all("HEALTHCHECK")
    assert len(checks) == 1
    cmd = healthcheck_command(checks[0])
    assert cmd[0] == "python" and "/healthz" in cmd[-1]
    assert not any(tool in " ".join(cmd) for tool in ("curl", "wget"))


def healthcheck_command(instr: Instruction) -> list[str]:
    m = re.search(r"\bCMD\s+(\[.*\])\s*$", instr.rest)
    assert m, f"line {instr.line}: HEALTHCHECK ... CMD [exec form]"
    value = json.loads(m.group(1))
    assert isinstance(value, list)
    return value


def copy_sources(stage: Stage) -> list[tuple[list[str], str]]:
    out = []
    for instr in stage.all("COPY"):
        flags, words = instr.flags_and_args()
        if "from" not in flags:
            out.append((words[:-1], words[-1]))
    return out


def project_files(path: Path) -> list[Path]:
    """The files under ``path`` that belong to the project (tracked or not ignored by git), so
    that local build artefacts (egg-info, __pycache__) do not count."""
    proc = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "--", str(path)],
        cwd=REPO, capture_output=True, text=True, check=False,
    )
    if proc.returncode == 0:
        return [REPO / line for line in proc.stdout.splitlines() if (REPO / line).is_file()]
    files = [path] if path.is_file() else [p for p in path.rglob("*") if p.is_file()]
    return [f for f in files if "__pycache__" not in f.parts and ".egg-info" not in str(f)]


def test_copy_sources_exist_and_are_in_the_build_context(stages: list[Stage]) -> None:
    rules = dockerignore_rules()
    for stage in stages:
        for sources, _dest in copy_sources(stage):
            for src in sources:
                path = REPO / src
                assert path.exists(), f"COPY {src}: not in the repository"
                files = project_files(path)
                assert files, f"COPY {src}: nothing to copy"
                for f in files:
                    rel = f.relative_to(REPO).as_posix()
                    assert not dockerignore_excludes(rel, rules), f"{rel} is excluded by .dockerignore"
    # and what must never be in the context is not
    for secret in (".venv/bin/python", ".git/config", "instance/pseudonym.key",
                   "instance/kti.sqlite3", "tests/test_dockerfile.py"):
        assert dockerignore_excludes(secret, rules), secret


# --- the wheel -----------------------------------------------------------------------------------


def build_context(stage: Stage, dest: Path) -> Path:
    """Copy what the stage COPYs from the context into ``dest`` (standing for its WORKDIR)."""
    rules = dockerignore_rules()
    for sources, target in copy_sources(stage):
        for src in sources:
            path = REPO / src
            files = [path] if path.is_file() else [p for p in path.rglob("*") if p.is_file()]
            for f in files:
                rel = f.relative_to(REPO).as_posix()
                if dockerignore_excludes(rel, rules):
                    continue
                if target.endswith("/") or len(sources) > 1 or path.is_dir():
                    base = Path(target.rstrip("/") or ".")
                    out = base / (f.name if path.is_file() else f.relative_to(path))
                else:
                    out = Path(target)
                out = dest / out if not out.is_absolute() else dest / out.relative_to("/")
                out.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(f, out)
    return dest


def package_data_files() -> list[str]:
    """Every file under src/kti_policy that pyproject's package-data globs select."""
    conf = tomllib.loads((REPO / "pyproject.toml").read_text())
    globs = conf["tool"]["setuptools"]["package-data"]["kti_policy"]
    pkg = REPO / "src" / "kti_policy"
    found = {p.relative_to(pkg.parent).as_posix() for g in globs for p in pkg.glob(g) if p.is_file()}
    return sorted(f for f in found if "__pycache__" not in f)


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory, stages: list[Stage]) -> Path:
    ctx = build_context(stages[0], tmp_path_factory.mktemp("context"))
    out = tmp_path_factory.mktemp("wheel")
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "--wheel-dir", str(out), str(ctx)],
        capture_output=True, text=True, timeout=240, check=False,
    )
    if proc.returncode != 0 and _offline(proc.stderr):
        pytest.skip(f"no package index for the build backend: {proc.stderr.strip()[-300:]}")
    assert proc.returncode == 0, proc.stderr
    (whl,) = out.glob("kti_policy-*.whl")
    return whl


def test_wheel_holds_modules_and_package_data(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    src = REPO / "src"
    modules = sorted(p.relative_to(src).as_posix() for p in (src / "kti_policy").rglob("*.py")
                     if "__pycache__" not in p.parts)
    missing = [m for m in modules + package_data_files() if m not in names]
    assert not missing, f"not in the wheel: {missing}"
    assert any(n.startswith("kti_policy/store/migrations/versions/") for n in names)
    entry_points = next(n for n in names if n.endswith(".dist-info/entry_points.txt"))
    assert "kti-policy = kti_policy.tools.cli:main" in zipfile.ZipFile(wheel).read(entry_points).decode()


def test_installed_wheel_serves_on_its_own(wheel: Path, tmp_path: Path) -> None:
    """The wheel, installed alone (dependencies from this venv), migrates a database and answers."""
    target = tmp_path / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-index",
         "--target", str(target), str(wheel)],
        check=True, capture_output=True, text=True, timeout=120,
    )
    script = f"""
import json, kti_policy
assert kti_policy.__file__.startswith({str(target)!r}), kti_policy.__file__
from kti_policy.app import create_app
app = create_app({{
    "KTI_POLICY_DIR": {str(CLEAN_POLICIES)!r},
    "KTI_INSTANCE_DIR": {str(tmp_path / "instance")!r},
    "KTI_HOOKS_DIR": {str(tmp_path / "hooks")!r},
}})
c = app.test_client()
assert c.get("/healthz").json == {{"status": "ok"}}
assert c.get("/readyz").status_code == 200, c.get("/readyz").json
assert "/v1/decisions" in c.get("/openapi.json").json["paths"]
r = c.post("/v1/decisions", json={{"operation": "delete", "subject": {{"id": "s-1"}}}})
assert r.status_code == 200 and r.json["decision"] in ("allow", "deny"), r.json
ev = {{"id": "w-1", "type": "erasure.requested", "subject_id": "s-1",
      "occurred_at": "2026-01-01T00:00:00Z", "data": {{}}}}
assert c.post("/v1/events", json=ev).status_code == 201
print("ok")
"""
    env = {k: v for k, v in os.environ.items() if not k.startswith("KTI_")}
    env["PYTHONPATH"] = str(target)
    proc = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0 and proc.stdout.strip().endswith("ok"), proc.stderr[-3000:]
    assert (tmp_path / "instance" / "kti.sqlite3").exists()


# --- the build stage for real, then the image's CMD and HEALTHCHECK -------------------------------


def _offline(stderr: str) -> bool:
    return any(s in stderr for s in (
        "No matching distribution", "Could not find a version", "NewConnectionError",
        "Temporary failure in name resolution", "Network is unreachable", "ConnectTimeout",
    ))


@pytest.fixture(scope="module")
def built_venv(tmp_path_factory: pytest.TempPathFactory, stages: list[Stage]) -> Path:
    """Run the build stage's RUN steps (not apt-get) with /src, /opt/venv, /wheels in a temp dir."""
    build = stages[0]
    root = tmp_path_factory.mktemp("buildstage")
    workdir = build.all("WORKDIR")[-1].rest
    ctx = build_context(build, root / workdir.lstrip("/"))
    env = build.env()
    venv, wheels = root / "opt-venv", root / "wheels"
    assert env["VIRTUAL_ENV"] == "/opt/venv" and env["WHEELS"] == "/wheels"
    bindir = root / "bin"  # `python` is the base interpreter, as in the image
    bindir.mkdir()
    (bindir / "python").symlink_to(getattr(sys, "_base_executable", sys.executable))
    run_env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("KTI_", "VIRTUAL_ENV", "PYTHON"))},
        "VIRTUAL_ENV": str(venv), "WHEELS": str(wheels),
        "PIP_DISABLE_PIP_VERSION_CHECK": "1",
        "PATH": f"{bindir}:{os.environ.get('PATH', '')}",
    }
    for instr in build.all("RUN"):
        if "apt-get" in instr.rest:
            continue  # the compiler comes with this machine
        assert "/opt/venv" not in instr.rest and "/wheels" not in instr.rest, (
            f"line {instr.line}: use $VIRTUAL_ENV and $WHEELS, so this test can run the step"
        )
        proc = subprocess.run(["sh", "-ec", instr.rest], cwd=ctx, env=run_env,
                              capture_output=True, text=True, timeout=240, check=False)
        if proc.returncode != 0 and _offline(proc.stderr):
            pytest.skip(f"no package index reachable for the build stage: {proc.stderr.strip()[-300:]}")
        assert proc.returncode == 0, f"RUN at line {instr.line} failed:\n{proc.stderr[-3000:]}"
    assert (venv / "bin" / "gunicorn").exists()
    assert any(wheels.glob("durable_rules-2.0.28-*.whl")), "durable-rules built as a wheel"
    return venv


def test_build_stage_then_cmd_and_healthcheck(built_venv: Path, stages: list[Stage], tmp_path: Path) -> None:
    sys.path.insert(0, str(REPO / "tests"))
    from e2e.server import free_port

    final = stages[-1]
    env = final.env()
    copied = {dest: srcs for srcs, dest in copy_sources(final)}
    # the image's folders, here
    where = {"/policies": str(CLEAN_POLICIES), "/hooks": str(tmp_path / "hooks"),
             "/instance": str(tmp_path / "instance"), "/app": str(REPO)}
    (tmp_path / "hooks").mkdir()
    port = free_port()
    run_env = {k: v for k, v in os.environ.items() if not k.startswith(("KTI_", "VIRTUAL_ENV"))}
    for key, value in env.items():
        run_env[key] = where.get(value, value)
    run_env["PATH"] = f"{built_venv}/bin:{os.environ.get('PATH', '')}"
    run_env["VIRTUAL_ENV"] = str(built_venv)
    run_env["KTI_BIND"] = f"127.0.0.1:{port}"
    run_env["PROMETHEUS_MULTIPROC_DIR"] = str(tmp_path / "prometheus")
    run_env["KTI_DECISION_LOG"] = str(tmp_path / "decisions.jsonl")
    cmd = final.all("CMD")[-1].exec_form()
    assert cmd is not None
    conf_dest = cmd[cmd.index("-c") + 1]
    cmd[cmd.index("-c") + 1] = str(REPO / copied[conf_dest][0])
    health = healthcheck_command(final.all("HEALTHCHECK")[0])

    def healthy() -> bool:
        r = subprocess.run(health, env=run_env, capture_output=True, timeout=10, check=False)
        return r.returncode == 0

    proc = subprocess.Popen(cmd, cwd=tmp_path, env=run_env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        while not healthy():
            assert proc.poll() is None, proc.stdout.read().decode() if proc.stdout else ""
            assert time.monotonic() < deadline, "the HEALTHCHECK never passed"
            time.sleep(0.5)
        assert (tmp_path / "instance" / "kti.sqlite3").exists()
        assert any((tmp_path / "instance").iterdir())
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    assert not healthy(), "the HEALTHCHECK fails when nothing answers"
