#!/usr/bin/env bash
# Issue 14's before and after in one sitting: OLD_REV's code against the working tree's, each
# measured by the working tree's benches (they import either package layout), on the working
# tree's pack, alternating where it matters.
#   bench/ab_issue14.sh OLD_REV [OUT_DIR]
# Writes OUT_DIR/{old,new}-{engine,app,app-asof,events,http}.txt (default: bench/results/ab-<date>).
# About 15 minutes on 2 cores; needs wrk for the HTTP runs.
set -euo pipefail
cd "$(dirname "$0")/.."
old_rev=${1:?usage: bench/ab_issue14.sh OLD_REV [OUT_DIR]}
out=${2:-bench/results/ab-$(date +%Y%m%d-%H%M)}
mkdir -p "$out"
tmp=$(mktemp -d)
trap 'git worktree remove --force "$tmp/old" >/dev/null 2>&1 || true; rm -rf "$tmp"' EXIT
git worktree add --detach "$tmp/old" "$old_rev" >/dev/null
py=.venv/bin/python
run() {  # side name, then the bench command
  local side=$1 name=$2; shift 2
  local src=$PWD/src
  [ "$side" = old ] && src=$tmp/old/src
  echo "== $side: $name"
  KTI_BENCH_SRC=$src PYTHONPATH=$src "$py" "$@" 2>&1 | tee "$out/$side-$name.txt" | tail -12
}
for side in old new old new; do
  run "$side" engine bench/engine_bench.py --rounds 1
done
for side in old new; do
  run "$side" app bench/app_profile.py -n 2000 --rounds 3 --profile ""
  run "$side" app-asof bench/app_profile.py -n 2000 --rounds 3 --profile "" --as-of
  run "$side" events bench/events_bench.py
done
for side in old new; do
  run "$side" http bench/http_bench.py --duration 8 --batch-rate 60
done
echo "results in $out"
