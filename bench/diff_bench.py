"""Impact-analysis speed: ``kti-policy diff`` over a large decision log, end to end.

    python bench/diff_bench.py [--policies policies] [-n 100000] [--seed 2026] [--keep DIR]

Writes ``n`` decision-log lines exactly as the service does (the seeded ``bench/workload.py`` mix,
plus a twentieth of data subject requests so obligations are replayed too; decided by ``Decider``,
pseudonymised, written by ``DecisionLog``), makes a copy of the policy folder with two edits
(``purposes.register`` no longer permits ``partner_marketing``; ``requests.rights`` answers data
subject requests in 14 business days instead of a month), then runs
``kti-policy diff OLD NEW --log FILE --format json`` as a separate process and times it.
Target: 100,000 lines in under 60 s.
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from machine import describe, machine  # noqa: E402
from workload import AT, generate  # noqa: E402

from kti_policy.api.decision_log import DecisionLog  # noqa: E402
from kti_policy.decide.decision import Decider  # noqa: E402
from kti_policy.decide.operation import parse_operation  # noqa: E402
from kti_policy.policy.loader import load_policy_set  # noqa: E402
from kti_policy.store.pseudonym import Pseudonymizer  # noqa: E402

TARGET_SECONDS = 60.0
REQUEST_TYPES = ["access", "inquiry", "rectification", "erasure", "objection"]

# The edits made to the copy: (file, text, replacement). Each must be found exactly once.
# purposes.register no longer permits partner_marketing (the rest of register_purposes stays);
# requests.rights answers in 14 business days instead of a month.
EDITS = [
    ("purposes.yaml", "      purpose: {in_list: register_purposes}\n    reason:",
     "      purpose: {in_list: register_purposes}\n    unless: {purpose: partner_marketing}\n    reason:"),
    ("requests.yaml", "      - respond_by: {months: 1}\n", "      - respond_by: {business_days: 14}\n"),
]


def workload(n: int, seed: int, vocab: Any) -> list[tuple[dict[str, Any], Any]]:
    """The shared workload, with one item in twenty turned into a data subject request."""
    items = generate(n, seed, vocab)
    rng = random.Random(seed + 1)
    types = [t for t in REQUEST_TYPES if vocab.knows("request_type", t)]
    for i, (body, facts) in enumerate(items):
        if types and rng.random() < 0.05:
            received = body["at"]
            written = rng.random() < 0.8
            items[i] = ({"operation": "subject_request", "subject": body["subject"], "at": received,
                         "request": {"type": rng.choice(types), "received_at": received,
                                     "written": written, "signed": written and rng.random() < 0.9}}, facts)
    return items


def write_log(policies: Path, path: Path, n: int, seed: int) -> float:
    ps = load_policy_set(policies)
    decider = Decider(ps)
    pseudonyms = Pseudonymizer("bench-pseudonym-key")
    log = DecisionLog.open(str(path))
    start = time.perf_counter()
    batch = []
    for body, facts in workload(n, seed, ps.vocabulary):
        op = parse_operation(body, ps.vocabulary)
        decision = decider.decide(op, facts, op.at or AT)  # as if decided when it happened
        batch.append(decision.log_record(pseudonyms.subject_key(op.subject_id) if op.subject_id else None))
        if len(batch) == 5000:
            log.write_many(batch)
            batch = []
    log.write_many(batch)
    log.close()
    return time.perf_counter() - start


def edited_copy(policies: Path, target: Path) -> None:
    shutil.copytree(policies, target)
    for name, old, new in EDITS:
        f = target / name
        text = f.read_text(encoding="utf-8")
        if text.count(old) != 1:
            raise SystemExit(f"bench edit not applicable: {old!r} is not in {f} exactly once")
        f.write_text(text.replace(old, new), encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--policies", default="policies")
    ap.add_argument("-n", type=int, default=100_000)
    ap.add_argument("--seed", type=int, default=2026)
    ap.add_argument("--keep", metavar="DIR", help="Keep the log and the edited copy here.")
    args = ap.parse_args(argv)

    work = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="kti-diff-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        log_path, new_dir = work / "decisions.jsonl", work / "policies-edited"
        log_path.unlink(missing_ok=True)
        shutil.rmtree(new_dir, ignore_errors=True)
        print(describe(machine()))
        gen = write_log(Path(args.policies), log_path, args.n, args.seed)
        edited_copy(Path(args.policies), new_dir)
        print(f"wrote {args.n} log lines ({log_path.stat().st_size / 1e6:.1f} MB) in {gen:.1f} s")

        cmd = [sys.executable, "-c", "from kti_policy.tools.cli import main; main()", "diff", args.policies, str(new_dir),
               "--log", str(log_path), "--no-cases", "--format", "json"]
        start = time.perf_counter()
        res = subprocess.run(cmd, capture_output=True, text=True, check=False)
        seconds = time.perf_counter() - start
        if res.returncode not in (0, 1):
            print(res.stderr, file=sys.stderr)
            return 2
        summary = json.loads(res.stdout)["summary"]
        groups = json.loads(res.stdout)["groups"]
        print(f"diff: {summary['log_lines']} lines replayed, {summary['changed']} changed "
              f"{summary['transitions']}, groups: {', '.join(g['rule'] for g in groups)}")
        print(f"diff: {seconds:.2f} s total (process start to exit), {summary['log_lines'] / seconds:,.0f} lines/s")
        ok = seconds < TARGET_SECONDS * args.n / 100_000
        print(f"target (100,000 lines < {TARGET_SECONDS:.0f} s, scaled to n): {'met' if ok else 'NOT met'}")
        return 0 if ok else 1
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())
