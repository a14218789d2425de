#!/usr/bin/env bash
# A/B of bench/engine_bench.py: OLD_REV's code against the working tree's, alternating, on one pack.
#   bench/ab_engine.sh OLD_REV [ROUNDS] [PACK_REV]
# Both sides decide the same workload with the policies of PACK_REV (default OLD_REV), so only the
# code differs. Prints each run's table; compare the best of the rounds per side.
set -euo pipefail
cd "$(dirname "$0")/.."
old_rev=${1:?usage: bench/ab_engine.sh OLD_REV [ROUNDS] [PACK_REV]}
rounds=${2:-3}
pack_rev=${3:-$old_rev}
tmp=$(mktemp -d)
trap 'git worktree remove --force "$tmp/old" >/dev/null 2>&1 || true; rm -rf "$tmp"' EXIT
git worktree add --detach "$tmp/old" "$old_rev" >/dev/null
git archive "$pack_rev" policies | tar -x -C "$tmp"
py=.venv/bin/python
for i in $(seq "$rounds"); do
  echo "== round $i: old ($old_rev)"
  PYTHONPATH="$tmp/old/src" "$py" "$tmp/old/bench/engine_bench.py" --policies "$tmp/policies" | tail -6
  echo "== round $i: new (working tree)"
  "$py" bench/engine_bench.py --policies "$tmp/policies" | tail -6
done
