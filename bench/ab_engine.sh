#!/usr/bin/env bash
# A/B of the engine: OLD_REV's code against the working tree's, alternating, on one pack.
#   bench/ab_engine.sh OLD_REV [ROUNDS] [PACK_REV]
# Both sides run the working tree's bench/engine_bench.py (it imports either layout), decide the
# same workload with the policies of PACK_REV (default: the working tree's policies/), so only the
# code differs. Prints each run's table; compare the best of the rounds per side.
set -euo pipefail
cd "$(dirname "$0")/.."
old_rev=${1:?usage: bench/ab_engine.sh OLD_REV [ROUNDS] [PACK_REV]}
rounds=${2:-3}
pack_rev=${3:-}
tmp=$(mktemp -d)
trap 'git worktree remove --force "$tmp/old" >/dev/null 2>&1 || true; rm -rf "$tmp"' EXIT
git worktree add --detach "$tmp/old" "$old_rev" >/dev/null
if [ -n "$pack_rev" ]; then git archive "$pack_rev" policies | tar -x -C "$tmp"; else cp -r policies "$tmp/policies"; fi
py=.venv/bin/python
for i in $(seq "$rounds"); do
  echo "== round $i: old ($old_rev)"
  PYTHONPATH="$tmp/old/src" "$py" bench/engine_bench.py --policies "$tmp/policies" --rounds 1 | tail -9
  echo "== round $i: new (working tree)"
  PYTHONPATH="$PWD/src" "$py" bench/engine_bench.py --policies "$tmp/policies" --rounds 1 | tail -9
done
