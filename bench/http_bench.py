"""HTTP throughput and latency of the decision service: gunicorn as in production, driven over loopback.

    .venv/bin/python bench/http_bench.py [--policies DIR] [--duration 10] [--json FILE]
        [--worker-class gevent,gthread] [--workers 2] [--threads 4] [--rates 1000,2000]
        [--batch-rate 150] [--no-decision-log] [--only wrk|paced] [--pg URL] [--as-of]
        [--facts-cache-size N]

For each worker class in turn (default: gevent, the production default, then gthread), starts
``gunicorn -c gunicorn.conf.py 'kti_policy.app:create_app()'`` (2 workers) on 127.0.0.1 with
SQLite in a temporary folder (``--pg URL``: a fresh schema in that PostgreSQL database), API keys on and the decision log written to a file, records the
workload's subject facts through ``POST /v1/events/batch``, then runs:

1. ``wrk`` closed loop (``bench/decisions.lua``, its own process): ``GET /healthz`` (the floor:
   wrk, loopback, gunicorn and Flask without a decision), single decisions, batches of 100. These
   are saturation figures (closed loop: a stalled server also stalls the client, so wrk's
   percentiles understate tail latency). A run that left a worker without connections is repeated
   (at most twice) and said so in a note.
2. A paced open-loop client (Python asyncio, a separate process, wrk2-style): requests are
   scheduled at a fixed rate and each latency is counted from the request's *scheduled* time, so
   queueing behind a slow answer shows in p99. Single decisions at half the floor's wrk rate (the
   issue-14 target), batches of 100 at ``--batch-rate``, and with ``--rates`` the paced floor at the
   highest rate and single decisions at each rate.

Targets (issue 14): single decisions reach 75% of the floor's request rate, and at half the floor's
rate their p99 stays under 10 ms. Both are ratios to a floor measured in the same run, so they
hold on any machine; the load generator shares the machine's cores with the server.

The bodies are ``bench/workload.py``'s seeded mix (process/disclose/delete/retain/collect over 2,000
subjects). The "conns per worker" column is sampled with ``ss`` halfway through each run:
keep-alive connections stay with the worker that accepted them, so an uneven split means an uneven
load. The "CPU us/req" column divides the CPU time the gunicorn processes (``/proc``) and the load
generator (wrk or the paced client, as a finished child) used during a run by its requests: what a
request costs the server, apart from what it costs the client on the same cores. Every run lasts
``--duration`` seconds (at most 30). The script prints the machine line and the load average it
started and ended with.
"""

from __future__ import annotations

import argparse
import http.client
import json
import multiprocessing
import os
import resource
import secrets
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
sys.path.insert(0, str(BENCH))
sys.path.insert(0, os.environ.get("KTI_BENCH_SRC") or str(REPO / "src"))

from machine import describe, machine  # noqa: E402
from workload import AT, generate  # noqa: E402

try:
    from kti_policy.policy.loader import load_policy_set
except ImportError:  # the flat layout of older revisions (bench/ab_issue14.sh)
    from kti_policy.loader import load_policy_set  # type: ignore[no-redef]

API_KEY = "bench-key-0123456789abcdef"
BATCH = 100
MAX_DURATION = 30.0


# --- the server ----------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def pg_schema(url: str) -> Iterator[str]:
    """A fresh schema in the PostgreSQL database ``url`` for one server (dropped afterwards)."""
    import psycopg

    schema = f"kti_bench_{secrets.token_hex(6)}"
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
    try:
        yield schema
    finally:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")


@contextmanager
def gunicorn(policies: Path, workdir: Path, workers: int, threads: int, decision_log: bool,
             worker_class: str = "gevent", database: tuple[str, str] | None = None,
             facts_cache_size: int | None = None,
             ) -> Iterator[tuple[str, int, subprocess.Popen[bytes]]]:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KTI_", "GUNICORN_"))}
    if os.environ.get("KTI_BENCH_SRC"):  # bench/ab_issue14.sh: serve another revision's code
        env["PYTHONPATH"] = os.environ["KTI_BENCH_SRC"]
    env.update({
        "KTI_POLICY_DIR": str(policies),
        "KTI_INSTANCE_DIR": str(workdir / "instance"),
        "KTI_HOOKS_DIR": str(workdir / "hooks"),
        "KTI_DATABASE_URL": f"sqlite:///{workdir / 'instance' / 'kti.sqlite3'}",
        "KTI_PSEUDONYM_KEY": "bench-pseudonym-key-0123456789abcdef",
        "KTI_API_KEYS": f"{API_KEY}:query+ingest",
        "PROMETHEUS_MULTIPROC_DIR": str(workdir / "prometheus"),
        "KTI_LOG_LEVEL": "warning",
        "KTI_WORKER_CLASS": worker_class,
    })
    if database is not None:  # PostgreSQL: (url, schema)
        env["KTI_DATABASE_URL"], env["KTI_DATABASE_SCHEMA"] = database
    if decision_log:
        env["KTI_DECISION_LOG"] = str(workdir / "decisions.jsonl")
    if facts_cache_size is not None:  # 0: every request reads its subject's events
        env["KTI_FACTS_CACHE_SIZE"] = str(facts_cache_size)
    (workdir / "hooks").mkdir(exist_ok=True)
    conf = Path(os.environ["KTI_BENCH_SRC"]).parent if os.environ.get("KTI_BENCH_SRC") else REPO
    cmd = [sys.executable, "-m", "gunicorn", "-c", str(conf / "gunicorn.conf.py"),
           "--bind", f"127.0.0.1:{port}", "--workers", str(workers), "--threads", str(threads),
           "kti_policy.app:create_app()"]
    log = open(workdir / "gunicorn.log", "wb")
    proc = subprocess.Popen(cmd, cwd=workdir, env=env, stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)
    log.close()
    try:
        deadline = time.monotonic() + 60
        while True:
            if proc.poll() is not None:
                raise SystemExit(f"gunicorn exited:\n{(workdir / 'gunicorn.log').read_text()}")
            try:
                status, _ = call("127.0.0.1", port, "GET", "/readyz")
                if status == 200:
                    break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise SystemExit(f"gunicorn not ready:\n{(workdir / 'gunicorn.log').read_text()}")
            time.sleep(0.2)
        yield "127.0.0.1", port, proc
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def call(host: str, port: int, method: str, path: str, body: bytes | None = None) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection(host, port, timeout=30)
    try:
        headers = {"Authorization": f"Bearer {API_KEY}"}
        if body is not None:
            headers["Content-Type"] = "application/json"
        conn.request(method, path, body=body, headers=headers)
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


# --- the workload --------------------------------------------------------------------------------


def fact_events(items: list[tuple[dict[str, Any], Any]]) -> list[dict[str, Any]]:
    """Events that record each workload subject's facts (the server looks them up per decision)."""
    seen: dict[str, Any] = {}
    for body, facts in items:
        seen.setdefault(body["subject"]["id"], facts)
    out: list[dict[str, Any]] = []
    when = (AT - timedelta(days=800)).isoformat()

    def add(sid: str, etype: str, data: dict[str, Any], at: str = when) -> None:
        out.append({"id": f"bench-{len(out)}", "type": etype, "subject_id": sid,
                    "occurred_at": at, "data": data})

    for sid, f in seen.items():
        add(sid, "relationship.started", {})
        for c in sorted(f.consents):
            add(sid, "consent.granted", {"purpose": c})
        for s in sorted(f.objections):
            add(sid, "objection.registered", {"scope": s})
        if f.relationship == "ended":
            add(sid, "relationship.ended", {})
        if f.erasure_requested:
            add(sid, "erasure.requested", {})
        for at in f.access_requests:
            add(sid, "access_request.received", {"written": True, "signed": True}, at.isoformat())
    return out


def seed_facts(host: str, port: int, events: list[dict[str, Any]]) -> None:
    for i in range(0, len(events), 1000):
        status, body = call(host, port, "POST", "/v1/events/batch",
                            json.dumps({"events": events[i:i + 1000]}).encode())
        if status not in (200, 201):
            raise SystemExit(f"seeding facts failed: {status} {body[:500]!r}")


def worker_pids(arbiter: int) -> list[int]:
    try:
        text = Path(f"/proc/{arbiter}/task/{arbiter}/children").read_text()
    except OSError:
        return []
    return sorted(int(x) for x in text.split())


def connection_split(port: int, workers: list[int]) -> str:
    """How many established client connections each gunicorn worker holds, e.g. "9/7"."""
    if shutil.which("ss") is None or not workers:
        return "?"
    out = established(port)
    return "/".join(str(out.count(f"pid={pid},")) for pid in workers)


def established(port: int) -> str:
    """``ss``'s lines for the established connections to ``port``, with the owning processes."""
    return subprocess.run(["ss", "-Htnp", "state", "established", f"( sport = :{port} )"],
                          capture_output=True, text=True, check=False).stdout


def warm_every_worker(host: str, port: int, workers: list[int], batches: list[bytes],
                      wait: float = 60.0) -> str:
    """Have every worker decide every body of the workload once (``--warm``): connections are opened
    one at a time until each worker holds one (``ss`` says which), then every batch is posted on each.
    Each worker's match cache then knows every question shape of the workload, as in a steady state
    where the same kinds of question recur; without it most single decisions of the 20,000-body mix
    are first sights for the worker that gets them (the mix has about 14,750 distinct shapes), so a
    run of seconds measures mostly the uncached path. Workers load the app themselves after the fork,
    so ``/readyz`` answering says only that one of them is up: a worker still loading accepts
    nothing, and the connections are tried for up to ``wait`` seconds, not a fixed number of times
    (a count ran out within a second while a worker was still loading). Returns a note of what was
    done."""
    if shutil.which("ss") is None or not workers:
        return "not warmed: ss or the worker pids are missing"
    held: dict[int, http.client.HTTPConnection] = {}
    deadline = time.monotonic() + wait
    while len(held) < len(workers) and time.monotonic() < deadline:
        conn = http.client.HTTPConnection(host, port, timeout=60)
        conn.request("GET", "/healthz")
        conn.getresponse().read()
        local = f"{host}:{conn.sock.getsockname()[1]}"
        line = next((x for x in established(port).splitlines() if f" {local} " in f" {x} "), "")
        pid = next((w for w in workers if f"pid={w}," in line), None)
        if pid is None or pid in held:
            conn.close()
            time.sleep(0.02)  # a worker still loading its policies gets its turn
        else:
            held[pid] = conn
    headers = {"Authorization": f"Bearer {API_KEY}", "Content-Type": "application/json"}
    for conn in held.values():
        for body in batches:
            conn.request("POST", "/v1/decisions/batch", body=body, headers=headers)
            resp = conn.getresponse()
            resp.read()
            if resp.status != 200:
                raise SystemExit(f"warming failed: {resp.status}")
    for conn in held.values():
        conn.close()
    return f"warmed: {len(held)} of {len(workers)} workers decided all {len(batches) * BATCH:,} bodies once"


def cpu_seconds(pids: list[int]) -> float:
    """User and system CPU seconds the processes have used so far (``/proc/<pid>/stat``; a process
    that is gone counts nothing)."""
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime: fields 14 and 15 of proc(5)
    return total / os.sysconf("SC_CLK_TCK")


def children_cpu_seconds() -> float:
    """CPU seconds of this process's finished children: wrk and the paced client, once waited for."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


@contextmanager
def split_sampler(port: int, workers: list[int], after: float) -> Iterator[dict[str, str]]:
    """Sample ``connection_split`` once, ``after`` seconds into a run."""
    found: dict[str, str] = {}
    timer = threading.Timer(after, lambda: found.setdefault("split", connection_split(port, workers)))
    timer.start()
    try:
        yield found
    finally:
        timer.cancel()


# --- wrk (closed loop) ---------------------------------------------------------------------------


def run_wrk(host: str, port: int, bodies_file: Path | None, path: str, connections: int, duration: float,
            threads: int = 1) -> dict[str, Any]:
    """wrk against ``path``: POSTs the bodies of ``bodies_file`` in turn, or GETs (no file)."""
    wrk = shutil.which("wrk")
    if wrk is None:
        return {"error": "wrk is not installed (apt-get install wrk)"}
    cmd = [wrk, f"-t{threads}", f"-c{connections}", f"-d{max(1, round(duration))}s", "--timeout", "10s",
           "-s", str(BENCH / "decisions.lua"), f"http://{host}:{port}", "--",
           str(bodies_file) if bodies_file else "-", path, API_KEY]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=duration + 60, check=False)
    for line in proc.stdout.splitlines():
        if line.startswith("WRK_JSON "):
            r = json.loads(line[len("WRK_JSON "):])
            secs = r["duration_us"] / 1e6
            r["rps"] = r["requests"] / secs
            r["errors"] = r["non2xx"] + r["connect_errors"] + r["read_errors"] + r["write_errors"] + r["timeouts"]
            return r
    return {"error": f"wrk failed ({proc.returncode}): {proc.stderr[-500:]} {proc.stdout[-500:]}"}


# --- the paced open-loop client ------------------------------------------------------------------


def _paced_client(host: str, port: int, path: str, bodies_file: str | None, rate: float,
                  duration: float, start_at: float, connections: int, stagger: float, out: Any) -> None:
    """The client process: asyncio, ``connections`` keep-alive connections, request ``i`` scheduled
    at ``start_at + i / rate`` and sent on connection ``i % connections``. Latency counts from the
    scheduled time, so a request queued behind a slow answer counts its wait (no coordinated
    omission, as wrk2). Requests are pre-encoded and responses parsed only for status and length,
    so the client costs tens of microseconds per request. No bodies file: GET ``path``."""
    import asyncio

    bodies = Path(bodies_file).read_bytes().splitlines() if bodies_file else []

    total = int(rate * duration)
    auth = f"Authorization: Bearer {API_KEY}\r\n".encode()
    if bodies:
        wire = [
            b"POST " + path.encode() + b" HTTP/1.1\r\nHost: bench\r\n" + auth
            + b"Content-Type: application/json\r\nContent-Length: " + str(len(b)).encode()
            + b"\r\n\r\n" + b
            for b in bodies
        ]
    else:
        wire = [b"GET " + path.encode() + b" HTTP/1.1\r\nHost: bench\r\n\r\n"]
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    errors: list[str] = []
    clock = time.perf_counter  # CLOCK_MONOTONIC: the same clock as the parent's start_at
    give_up_at = start_at + duration + min(5.0, duration / 2)

    async def one_connection(k: int) -> None:
        # open the pool over the second before the start, as a client warming up would: opened in
        # one burst, every connection may land on the same gunicorn worker (see the report)
        opening = start_at - stagger + k * stagger / connections - clock()
        if opening > 0:
            await asyncio.sleep(opening)
        reader, writer = await asyncio.open_connection(host, port)
        try:
            for i in range(k, total, connections):
                if clock() > give_up_at:
                    break  # the server is too far behind: the rest count as not answered
                scheduled = start_at + i / rate
                delay = scheduled - clock()
                if delay > 0:
                    await asyncio.sleep(delay)
                writer.write(wire[i % len(wire)])
                head = await reader.readuntil(b"\r\n\r\n")
                status = int(head[9:12])
                length = 0
                for line in head.split(b"\r\n"):
                    if line[:15].lower() == b"content-length:":
                        length = int(line[15:])
                if length:
                    await reader.readexactly(length)
                latencies.append(clock() - scheduled)
                statuses[status] = statuses.get(status, 0) + 1
                if b"connection: close" in head.lower():
                    writer.close()
                    reader, writer = await asyncio.open_connection(host, port)
        except (OSError, asyncio.IncompleteReadError, ValueError) as exc:
            errors.append(f"{type(exc).__name__}: {exc}")
        finally:
            writer.close()

    async def main() -> None:
        await asyncio.gather(*(one_connection(k) for k in range(connections)))

    asyncio.run(main())
    out.put({"latencies": latencies, "statuses": statuses, "errors": errors[:5],
             "finished_at": clock(), "scheduled": total})


def run_paced(host: str, port: int, path: str, bodies_file: Path | None, rate: float,
              duration: float, connections: int = 32, stagger: float = 1.0) -> dict[str, Any]:
    ctx = multiprocessing.get_context("spawn")
    out = ctx.Queue()
    start_at = time.perf_counter() + 2.0 + stagger  # time for the process to start, then the pool
    proc = ctx.Process(target=_paced_client,
                       args=(host, port, path, str(bodies_file) if bodies_file else None, rate,
                             duration, start_at, connections, stagger, out))
    proc.start()
    try:
        r = out.get(timeout=duration + 60)
    finally:
        proc.join(timeout=10)
        if proc.is_alive():
            proc.kill()
    latencies = sorted(r["latencies"])
    statuses = {int(k): v for k, v in r["statuses"].items()}
    elapsed = r["finished_at"] - start_at
    n = len(latencies)
    ok = sum(c for s, c in statuses.items() if 200 <= s < 300)
    return {
        "offered_rps": rate,
        "requests": n,
        "scheduled": r["scheduled"],
        "rps": n / elapsed if elapsed > 0 else 0.0,
        "errors": (r["scheduled"] - ok),
        "statuses": statuses,
        "client_errors": r["errors"],
        "p50_us": pct(latencies, 50) * 1e6,
        "p90_us": pct(latencies, 90) * 1e6,
        "p99_us": pct(latencies, 99) * 1e6,
        "max_us": (latencies[-1] if latencies else 0.0) * 1e6,
        "mean_us": (statistics.fmean(latencies) if latencies else 0.0) * 1e6,
    }


def pct(sorted_values: list[float], p: float) -> float:
    if not sorted_values:
        return 0.0
    k = min(len(sorted_values) - 1, max(0, round(p / 100 * len(sorted_values) + 0.5) - 1))
    return sorted_values[k]


# --- report --------------------------------------------------------------------------------------


def row(name: str, r: dict[str, Any], per_request: int, offered: str) -> list[str]:
    if "error" in r:
        return [name, offered, "-", "-", "-", "-", r["error"], "-", "-"]
    cpu = (f"{r['server_cpu_us']:,.0f} / {r['client_cpu_us']:,.0f}" if "server_cpu_us" in r else "-")
    return [
        name, offered, f"{r['rps']:,.0f}", f"{r['rps'] * per_request:,.0f}" if per_request else "-",
        f"{r['p50_us'] / 1000:.2f}", f"{r['p99_us'] / 1000:.2f}", str(r["errors"]),
        r.get("conns_per_worker", "?"), cpu,
    ]


def print_table(rows: list[list[str]]) -> None:
    head = ["run", "offered req/s", "req/s", "decisions/s", "p50 ms", "p99 ms", "failed/unsent",
            "conns per worker", "CPU us/req server / client"]
    widths = [max(len(str(x)) for x in col) for col in zip(head, *rows, strict=True)]
    fmt = "| " + " | ".join(f"{{:<{w}}}" for w in widths) + " |"
    print(fmt.format(*head))
    print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for r in rows:
        print(fmt.format(*r))


def bench_server(args: argparse.Namespace, worker_class: str, work: Path, single_file: Path,
                 batch_file: Path, items: list[Any], duration: float) -> tuple[dict[str, Any], list[list[str]]]:
    """Every run against one gunicorn of ``worker_class``: the floor and single decisions closed
    loop (wrk), single decisions paced at half the floor's rate, batches, the paced floor."""
    results: dict[str, Any] = {"worker_class": worker_class}
    rows: list[list[str]] = []
    notes: list[str] = []
    inst = work / worker_class
    inst.mkdir()
    with ExitStack() as stack:
        database = (args.pg, stack.enter_context(pg_schema(args.pg))) if args.pg else None
        host, port, server = stack.enter_context(gunicorn(
            args.policies, inst, args.workers, args.threads, not args.no_decision_log, worker_class, database,
            args.facts_cache_size))
        seed_facts(host, port, fact_events(items))
        pids = worker_pids(server.pid)

        def sampled(run: Any, *a: Any, at: float, **kw: Any) -> dict[str, Any]:
            gunicorn_pids = [server.pid, *pids]
            server_cpu, client_cpu = cpu_seconds(gunicorn_pids), children_cpu_seconds()
            with split_sampler(port, pids, at) as found:
                r = run(*a, **kw)
            r["conns_per_worker"] = found.get("split", "?")
            if r.get("requests"):  # CPU per request: the gunicorn processes, the load generator
                r["server_cpu_us"] = (cpu_seconds(gunicorn_pids) - server_cpu) / r["requests"] * 1e6
                r["client_cpu_us"] = (children_cpu_seconds() - client_cpu) / r["requests"] * 1e6
            return r

        def wrk_both_workers(name: str, *a: Any, at: float) -> dict[str, Any]:
            """wrk opens its connections in one burst, and a gunicorn worker may accept all of them:
            then the run measures one worker. Such runs are repeated (at most twice) and noted."""
            idle = 0
            for _ in range(3):
                r = sampled(run_wrk, *a, at=at)
                if "0" not in r.get("conns_per_worker", "?").split("/"):
                    break
                idle += 1
            if idle:
                notes.append(f"{worker_class} {name}: {idle} wrk run(s) left a worker without connections "
                             f"(only one worker served them) and were repeated")
            r["one_worker_runs"] = idle
            return r

        # warm up: every worker compiles its rules and opens its connections
        run_wrk(host, port, single_file, "/v1/decisions", 8, 2)
        if args.warm:
            notes.append(f"{worker_class}: {warm_every_worker(host, port, pids, batch_file.read_bytes().splitlines())}")
        if args.only in (None, "wrk"):
            floor = wrk_both_workers("floor", host, port, None, "/healthz", args.connections, duration,
                                     at=duration / 2)
            results["wrk_healthz"] = floor
            rows.append(row(f"floor: GET /healthz, wrk closed loop, {args.connections} conns", floor, 0, "max"))
            r = wrk_both_workers("single", host, port, single_file, "/v1/decisions",
                                 args.connections, duration, at=duration / 2)
            results["wrk_single"] = r
            rows.append(row(f"single, wrk closed loop, {args.connections} conns", r, 1, "max"))
            if "rps" in floor and "rps" in r:
                results["single_vs_floor"] = r["rps"] / floor["rps"]
                half = floor["rps"] / 2
                p = sampled(run_paced, host, port, "/v1/decisions", single_file, half, duration,
                            at=3.0 + duration / 2)
                results["paced_single_half_floor"] = p
                rows.append(row("single, paced at half the floor's rate", p, 1, f"{half:,.0f}"))
            r = wrk_both_workers("batch", host, port, batch_file, "/v1/decisions/batch",
                                 args.batch_connections, duration, at=duration / 2)
            results["wrk_batch"] = r
            rows.append(row(f"batch of {BATCH}, wrk closed loop, {args.batch_connections} conns", r, BATCH, "max"))
        if args.only in (None, "paced"):
            top = max([float(x) for x in args.rates.split(",") if x.strip()] or [0.0])
            if top > 0:
                # the floor of the paced client: the same client, gunicorn and Flask, no decision
                r = sampled(run_paced, host, port, "/healthz", None, top, min(duration, 5.0), at=5.0)
                results[f"paced_healthz_{top:.0f}"] = r
                rows.append(row("floor: GET /healthz, paced", r, 0, f"{top:,.0f}"))
            for rate in [float(x) for x in args.rates.split(",") if x.strip()]:
                r = sampled(run_paced, host, port, "/v1/decisions", single_file, rate, duration,
                            at=3.0 + duration / 2)
                results[f"paced_single_{rate:.0f}"] = r
                rows.append(row("single, paced (open loop)", r, 1, f"{rate:,.0f}"))
            if args.batch_rate > 0:
                r = sampled(run_paced, host, port, "/v1/decisions/batch", batch_file, args.batch_rate,
                            duration, connections=8, at=3.0 + duration / 2)
                results[f"paced_batch_{args.batch_rate:.0f}"] = r
                rows.append(row(f"batch of {BATCH}, paced (open loop)", r, BATCH, f"{args.batch_rate:,.0f}"))
    results["notes"] = notes
    if not args.no_decision_log:
        results["decision_log_lines"] = sum(1 for _ in open(inst / "decisions.jsonl", "rb"))
    return results, rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    default_policies = REPO / "policies" if (REPO / "policies" / "vocabulary.yaml").exists() \
        else REPO / "tests" / "data" / "clean"
    ap.add_argument("--policies", type=Path, default=default_policies)
    ap.add_argument("--duration", type=float, default=10.0, help="seconds per run (at most 30)")
    ap.add_argument("--rates", default="", help="extra paced single-decision rates, req/s (e.g. 1000,2000)")
    ap.add_argument("--batch-rate", type=float, default=150.0, help="paced batches (of 100) per second")
    ap.add_argument("--connections", type=int, default=16, help="wrk connections for single decisions")
    ap.add_argument("--batch-connections", type=int, default=8, help="wrk connections for batches")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--threads", type=int, default=4, help="threads per gthread worker")
    ap.add_argument("--worker-class", default="gevent,gthread",
                    help="gunicorn worker classes to measure, in turn (KTI_WORKER_CLASS)")
    ap.add_argument("--no-decision-log", action="store_true")
    ap.add_argument("--facts-cache-size", type=int, default=None,
                    help="KTI_FACTS_CACHE_SIZE for the server (default: the service's; 0: every "
                         "decision reads its subject's events, as after a new event anywhere)")
    ap.add_argument("--pg", metavar="URL", help="PostgreSQL instead of SQLite (a fresh schema per server), "
                    "e.g. postgresql://postgres@127.0.0.1:5432/test")
    ap.add_argument("--as-of", action="store_true",
                    help="keep the workload's past `at` (facts read as of then); default: facts now")
    ap.add_argument("--only", choices=["wrk", "paced"], default=None, help="run only one kind")
    ap.add_argument("--warm", action="store_true",
                    help="before measuring, every worker decides every body once (its match cache "
                         "then knows every question shape: the steady state of recurring questions)")
    ap.add_argument("-n", type=int, default=20_000, help="distinct bodies in the workload")
    ap.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args = ap.parse_args(argv)
    duration = min(args.duration, MAX_DURATION)

    vocab = load_policy_set(str(args.policies)).vocabulary
    items = generate(args.n, vocab=vocab)
    bodies = [b if args.as_of else {k: v for k, v in b.items() if k != "at"} for b, _ in items]
    singles = [json.dumps(b, separators=(",", ":")).encode() for b in bodies]
    batches = [json.dumps({"operations": bodies[i:i + BATCH]}, separators=(",", ":")).encode()
               for i in range(0, len(items) - BATCH + 1, BATCH)]
    info = machine()
    print(describe(info))
    classes = [c.strip() for c in args.worker_class.split(",") if c.strip()]
    print(f"server: gunicorn {args.workers} workers ({', '.join(classes)}; gthread with {args.threads} threads), "
          f"{'PostgreSQL' if args.pg else 'SQLite'}, decision log {'off' if args.no_decision_log else 'on'}, "
          f"facts cache {'default' if args.facts_cache_size is None else args.facts_cache_size}, "
          f"match caches {'warmed with every body' if args.warm else 'warmed for 2 s'}, policies {args.policies}")

    results: dict[str, Any] = {"machine": info, "duration_s": duration, "policies": str(args.policies),
                               "servers": {}}
    with tempfile.TemporaryDirectory(prefix="kti-http-bench-") as tmp:
        work = Path(tmp)
        single_file, batch_file = work / "single.jsonl", work / "batch.jsonl"
        single_file.write_bytes(b"\n".join(singles) + b"\n")
        batch_file.write_bytes(b"\n".join(batches) + b"\n")
        tables = []
        for cls in classes:
            r, rows = bench_server(args, cls, work, single_file, batch_file, items, duration)
            results["servers"][cls] = r
            tables.append((cls, r, rows))
    for cls, r, rows in tables:
        print()
        print(f"worker class {cls}:")
        print_table(rows)
        for note in r.get("notes", []):
            print(f"note: {note}")
        if "single_vs_floor" in r:
            half = r["paced_single_half_floor"]
            ok_rate = r["single_vs_floor"] >= 0.75
            ok_p99 = half["p99_us"] < 10_000 and half["errors"] == 0
            print(f"target: single decisions at {r['single_vs_floor']:.0%} of the floor's rate (>= 75%: "
                  f"{'met' if ok_rate else 'NOT met'}); at half the floor's rate p99 {half['p99_us'] / 1000:.1f} ms "
                  f"(< 10 ms: {'met' if ok_p99 else 'NOT met'})")
    print()
    print(f"load average at end: {os.getloadavg()[0]:.2f} (figures are preliminary on a shared machine)")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=2, default=str) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
