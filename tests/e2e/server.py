"""Start the real service (gunicorn, ``gunicorn.conf.py``) on a free loopback port.

Reusable by every test module::

    from e2e.server import GunicornServer

    with GunicornServer(tmp_path, env={"KTI_API_KEYS": "k:admin"}, workers=2) as srv:
        r = srv.post("/v1/decisions", json={...}, key="k")

or through the ``live_server`` (module-scoped, default config) and ``start_server`` (factory, env
overrides) fixtures in ``tests/conftest.py``. Each server gets its own instance folder, SQLite
database, decision log and Prometheus folder under ``workdir``; its output goes to
``workdir/gunicorn.log`` (``srv.log_text()``), shown when start-up fails.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import requests

REPO = Path(__file__).resolve().parents[2]
DEFAULT_POLICIES = REPO / "tests" / "data" / "clean"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class ServerFailed(RuntimeError):
    pass


class GunicornServer:
    """A gunicorn process serving ``kti_policy.app:create_app()``.

    ``env`` overrides the environment (``KTI_*`` and anything else); ``policy_dir`` defaults to a
    copy of ``tests/data/clean`` in ``workdir/policies`` (so a test may edit it and reload).
    """

    def __init__(
        self,
        workdir: str | os.PathLike[str],
        env: Mapping[str, str] | None = None,
        *,
        workers: int = 2,
        threads: int = 4,
        policy_dir: str | os.PathLike[str] | None = None,
        extra_args: list[str] | None = None,
        host: str = "127.0.0.1",
        startup_timeout: float = 30.0,
    ) -> None:
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        if policy_dir is None:
            policy_dir = self.workdir / "policies"
            if not policy_dir.exists():
                shutil.copytree(DEFAULT_POLICIES, policy_dir)
        self.policy_dir = Path(policy_dir)
        self.host = host
        self.port = free_port()
        self.url = f"http://{host}:{self.port}"
        self.decision_log = self.workdir / "decisions.jsonl"
        self.log_path = self.workdir / "gunicorn.log"
        self.workers = workers
        self.threads = threads
        self.extra_args = list(extra_args or [])
        self.startup_timeout = startup_timeout
        self.env: dict[str, str] = {
            **{k: v for k, v in os.environ.items() if not k.startswith("KTI_")},
            "KTI_POLICY_DIR": str(self.policy_dir),
            "KTI_INSTANCE_DIR": str(self.workdir / "instance"),
            "KTI_HOOKS_DIR": str(self.workdir / "hooks"),
            "KTI_DATABASE_URL": f"sqlite:///{self.workdir / 'instance' / 'kti.sqlite3'}",
            "KTI_DECISION_LOG": str(self.decision_log),
            "KTI_PSEUDONYM_KEY": "e2e-pseudonym-key-0123456789abcdef",
            "PROMETHEUS_MULTIPROC_DIR": str(self.workdir / "prometheus"),
            "PYTHONUNBUFFERED": "1",
        }
        self.env.pop("GUNICORN_CMD_ARGS", None)
        self.env.update(env or {})
        (self.workdir / "hooks").mkdir(exist_ok=True)
        self.proc: subprocess.Popen[bytes] | None = None

    # -- lifecycle -------------------------------------------------------------------------------

    def command(self) -> list[str]:
        return [
            sys.executable, "-m", "gunicorn",
            "-c", str(REPO / "gunicorn.conf.py"),
            "--bind", f"{self.host}:{self.port}",
            "--workers", str(self.workers),
            "--threads", str(self.threads),
            *self.extra_args,
            "kti_policy.app:create_app()",
        ]

    def start(self) -> GunicornServer:
        logfile = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            self.command(), cwd=self.workdir, env=self.env, stdout=logfile, stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        logfile.close()
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise ServerFailed(f"gunicorn exited with {self.proc.returncode}:\n{self.log_text()}")
            try:
                if requests.get(self.url + "/healthz", timeout=1).status_code == 200:
                    return self
            except requests.RequestException:
                pass
            time.sleep(0.1)
        self.stop()
        raise ServerFailed(f"gunicorn did not answer /healthz in time:\n{self.log_text()}")

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=5)

    def __enter__(self) -> GunicornServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    # -- requests --------------------------------------------------------------------------------

    def request(self, method: str, path: str, *, key: str | None = None, **kwargs: Any) -> requests.Response:
        headers = dict(kwargs.pop("headers", None) or {})
        if key is not None:
            headers["Authorization"] = f"Bearer {key}"
        kwargs.setdefault("timeout", 30)
        # a new connection per call: a kept-alive one may be closed by the server between calls
        return requests.request(method, self.url + path, headers=headers, **kwargs)

    def get(self, path: str, **kwargs: Any) -> requests.Response:
        return self.request("GET", path, **kwargs)

    def post(self, path: str, **kwargs: Any) -> requests.Response:
        return self.request("POST", path, **kwargs)


def run_gunicorn_expecting_failure(workdir: Path, env: Mapping[str, str], bind: str, timeout: float = 20) -> subprocess.CompletedProcess[str]:
    """Run gunicorn on ``bind`` and return when it exits (for start-up refusals)."""
    srv = GunicornServer(workdir, env)
    cmd = srv.command()
    cmd[cmd.index("--bind") + 1] = bind
    return subprocess.run(cmd, cwd=workdir, env=srv.env, capture_output=True, text=True, timeout=timeout)
