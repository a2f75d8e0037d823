#!/usr/bin/env bash
# GPU check (issue 16, point 4): the CUDA tests and the GPU benchmarks, in under 8 minutes.
#
#   bash benchmarks/gpu_check.sh            # from the repository root, on a machine with CUDA
#   PYTHON=/path/to/python bash benchmarks/gpu_check.sh
#
# Python: $PYTHON, else .venv/bin/python, else python3 — it needs a CUDA build of torch and
# this package's dependencies; neurodeploy itself is installed from this tree (--no-deps,
# offline) when it is not importable. Without CUDA it prints SKIP and exits 0: nothing is
# measured and nothing is written.
#
# Steps (each with its own time cap; the caps add up to 7 min 30 s):
#   1. the CUDA tests: every test under tests/ whose name says cuda/nccl/gpu (emulator
#      CPU == CUDA spikes, training on CUDA, 2-GPU NCCL data-parallel when there are 2 GPUs)
#      — cap 180 s;
#   2. benchmarks/bench_gpu.py: training epoch, attack throughput and emulator throughput,
#      CPU vs CUDA in one run, emulator spikes CPU == CUDA — cap 240 s;
#   3. torchrun data-parallel training on all local GPUs (NCCL) when there are >= 2 — cap 30 s.
# Numbers: benchmarks/results/gpu_check.json (bench_gpu's record) and the whole log in
# benchmarks/results/gpu_check.log; the table is printed at the end.
set -uo pipefail
cd "$(dirname "$0")/.."
start=$SECONDS
PY=${PYTHON:-}
if [ -z "$PY" ]; then
  if [ -x .venv/bin/python ]; then PY=.venv/bin/python; else PY=python3; fi
fi
RES=benchmarks/results
JSON=$RES/gpu_check.json
LOG=$RES/gpu_check.log

cuda=$("$PY" -c "import torch; print(torch.cuda.device_count() if torch.cuda.is_available() else 0)" 2>/dev/null)
if [ -z "$cuda" ]; then
  echo "SKIP: $PY cannot import torch; set PYTHON to an interpreter with a CUDA build of torch"
  exit 0
fi
if [ "$cuda" = 0 ]; then
  echo "SKIP: no CUDA device ($PY: torch $("$PY" -c 'import torch; print(torch.__version__)'), torch.cuda.is_available() is False); nothing measured"
  exit 0
fi
if ! "$PY" -c "import neurodeploy.sims.emulator" 2>/dev/null; then
  echo "installing neurodeploy from this tree (no dependencies, offline)"
  "$PY" -m pip install --quiet --no-deps --no-build-isolation -e . || {
    echo "error: neurodeploy is not importable with $PY and could not be installed"; exit 2; }
fi
mkdir -p "$RES"
: > "$LOG"
say() { echo "$@" | tee -a "$LOG"; }
fail=0
say "== gpu_check $(date -u '+%Y-%m-%d %H:%M:%S UTC') on $(hostname); $cuda CUDA device(s)"
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version \
  --format=csv,noheader 2>&1 | tee -a "$LOG"
"$PY" -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda)" | tee -a "$LOG"

say "== 1. CUDA tests (cap 180 s)"
export NEURODEPLOY_QUIET=1
timeout 180 "$PY" -m pytest -q -p no:cacheprovider -rs -k "cuda or nccl or gpu" tests/ \
  2>&1 | tail -n 25 | tee -a "$LOG"
rc=${PIPESTATUS[0]}
say "tests exit code: $rc"
[ "$rc" = 0 ] || fail=1

say "== 2. benchmarks: training epoch, attack, emulator; CPU vs CUDA (cap 240 s)"
timeout 240 "$PY" benchmarks/bench_gpu.py --devices cpu,cuda --out "$JSON" 2>&1 | tee -a "$LOG"
rc=${PIPESTATUS[0]}
say "benchmark exit code: $rc"
[ "$rc" = 0 ] || fail=1

if [ "$cuda" -ge 2 ]; then
  say "== 3. torchrun data-parallel training on $cuda GPUs (NCCL, cap 30 s)"
  tmp=$(mktemp -d)
  timeout 30 "$PY" -m torch.distributed.run --standalone --nproc_per_node "$cuda" \
    -m neurodeploy train --data digits --arch FC256-FC10 --epochs 2 --device cuda \
    --out "$tmp/ddp" -q 2>&1 | tail -n 5 | tee -a "$LOG"
  rc=${PIPESTATUS[0]}
  say "torchrun exit code: $rc"
  [ "$rc" = 0 ] || fail=1
  rm -rf "$tmp"
else
  say "== 3. torchrun NCCL check skipped: needs >= 2 GPUs ($cuda here)"
fi

say "== summary ($((SECONDS - start)) s)"
[ -f "$JSON" ] && "$PY" -c "import json,sys; print('\n'.join(json.load(open(sys.argv[1]))['table']))" "$JSON" | tee -a "$LOG"
say "numbers: $JSON   log: $LOG"
exit $fail
