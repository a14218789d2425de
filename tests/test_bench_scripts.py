"""The benches README "Measured" quotes still run (tiny sizes, no timing asserted): a bench that
broke with a refactor would leave the README's figures without a command to reproduce them."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize(
    ("script", "args", "expect"),
    [
        ("engine_bench.py", ["-n", "300", "--rounds", "1"], "uncached decision / durable-rules alone"),
        ("app_profile.py", ["-n", "300", "--rounds", "1", "--profile", ""], "target 3: batch decision"),
        ("app_profile.py", ["-n", "300", "--rounds", "1", "--profile", "", "--facts-cache-size", "0"],
         "target 2: single"),
    ],
)
def test_bench_runs(script: str, args: list[str], expect: str) -> None:
    proc = subprocess.run([sys.executable, str(REPO / "bench" / script), *args], cwd=REPO,
                          capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert expect in proc.stdout and "machine:" in proc.stdout
