#!/usr/bin/env bash
# One-command setup of both neurodeploy environments (idempotent, fast on re-run).
#
#   .venv       main environment: Python >= 3.11, torch 2.13.0, snntorch, nir, ... (editable install)
#   .venv-lava  Lava environment: Python 3.10, lava-nc 0.10.0, numpy < 2, neurodeploy without deps
#
# Environment variables:
#   NEURODEPLOY_PYTHON       interpreter for the main environment (default: python3, must be >= 3.11)
#   NEURODEPLOY_LAVA_PYTHON  interpreter for the Lava environment (default: python3.10 found on PATH or pyenv)
#   NEURODEPLOY_SKIP_LAVA=1  do not create the Lava environment
#   NEURODEPLOY_SKIP_LAVA_DL=1  do not install lava-dl (netx/SLAYER) into the Lava environment
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

say() { printf '[setup] %s\n' "$*"; }

stamp_of() {  # hash of the files that decide what an environment needs
  cat pyproject.toml scripts/setup.sh | sha256sum | cut -c1-16
}
want=$(stamp_of)

# ---------------------------------------------------------------- main environment
main_py=${NEURODEPLOY_PYTHON:-python3}
if ! "$main_py" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)' 2>/dev/null; then
  echo "[setup] error: $main_py is missing or older than Python 3.11 (set NEURODEPLOY_PYTHON)" >&2
  exit 2
fi
if [ -f .venv/.neurodeploy-stamp ] && [ "$(cat .venv/.neurodeploy-stamp)" = "$want" ]; then
  say "main environment .venv is up to date"
else
  say "creating main environment .venv with $("$main_py" --version)"
  [ -x .venv/bin/python ] || "$main_py" -m venv .venv
  # torch first and pinned: an unpinned torch would pull the newest CUDA build.
  .venv/bin/pip install --quiet "torch==2.13.0"
  .venv/bin/pip install --quiet -e ".[dev]"
  # sinabs (a NIR producer for the interop tests) pins nir<=1.0.4 and its chip driver samna;
  # neither is needed to write NIR, so it goes in without its dependencies. Optional: a failure
  # only skips the sinabs tests.
  .venv/bin/pip install --quiet --no-deps "sinabs==3.1.3" "pbr>=5" \
    || say "warning: sinabs not installed; its NIR interop tests will be skipped"
  echo "$want" > .venv/.neurodeploy-stamp
  say "main environment ready"
fi

# ---------------------------------------------------------------- Lava environment
if [ "${NEURODEPLOY_SKIP_LAVA:-0}" = "1" ]; then
  say "NEURODEPLOY_SKIP_LAVA=1: skipping the Lava environment"
  exit 0
fi
find_py310() {
  if [ -n "${NEURODEPLOY_LAVA_PYTHON:-}" ]; then echo "$NEURODEPLOY_LAVA_PYTHON"; return; fi
  if command -v python3.10 >/dev/null 2>&1 && python3.10 -c 'import sys' >/dev/null 2>&1; then
    command -v python3.10; return
  fi
  if command -v pyenv >/dev/null 2>&1; then
    for p in "$(pyenv root)"/versions/3.10.*/bin/python3.10; do
      [ -x "$p" ] && { echo "$p"; return; }
    done
  fi
  echo ""
}
lava_py=$(find_py310)
if [ -z "$lava_py" ] || ! "$lava_py" -c 'import sys; sys.exit(0 if sys.version_info[:2] == (3, 10) else 1)' 2>/dev/null; then
  cat >&2 <<'MSG'
[setup] warning: no Python 3.10 found, so the Lava environment was NOT created.
[setup]          Lava 0.10 (lava-nc) runs only on Python 3.10. Install one, e.g.
[setup]            pyenv install 3.10.13     or     apt-get install python3.10 python3.10-venv
[setup]          and re-run, or point NEURODEPLOY_LAVA_PYTHON at it.
[setup]          Everything except the Lava backend works without it.
MSG
  exit 0
fi
if [ -f .venv-lava/.neurodeploy-stamp ] && [ "$(cat .venv-lava/.neurodeploy-stamp)" = "$want" ]; then
  say "Lava environment .venv-lava is up to date"
else
  say "creating Lava environment .venv-lava with $("$lava_py" --version)"
  [ -x .venv-lava/bin/python ] || "$lava_py" -m venv .venv-lava
  .venv-lava/bin/pip install --quiet "lava-nc==0.10.0" "numpy<2"
  .venv-lava/bin/pip install --quiet --no-deps -e .
  echo "$want" > .venv-lava/.neurodeploy-stamp
  say "Lava environment ready"
fi

# ---------------------------------------------------------------- lava-dl in the Lava environment
# lava-dl 0.6.0 (netx: HDF5 networks in and out; SLAYER: its exporter) pins lava-nc 0.10.0 and
# torch 2.3.x. netx imports SLAYER, which imports torch, torchvision, cv2, matplotlib and h5py
# at import time, so all of those are needed; ninja, pytest and unittest2 (also declared) are
# not. lava-dl goes in with --no-deps plus exactly those. torch 2.3.1 from PyTorch's CPU index
# (+cpu, ~0.7 GB installed) when that index is reachable; else PyPI's build, which is a CUDA
# build that does not import without its nvidia-* libraries (~5 GB in all; CPU use only).
# Optional: a failure only skips the lava-dl tests (tests/test_netx*.py), with a message.
lava_dl_ok() { .venv-lava/bin/python -c "import lava.lib.dl.netx, lava.lib.dl.slayer" >/dev/null 2>&1; }
if [ "${NEURODEPLOY_SKIP_LAVA_DL:-0}" = "1" ]; then
  say "NEURODEPLOY_SKIP_LAVA_DL=1: lava-dl not installed (its tests will be skipped)"
elif lava_dl_ok; then
  say "lava-dl is in .venv-lava"
else
  t0=$SECONDS
  lpip() { .venv-lava/bin/python -m pip install --quiet "$@"; }
  say "installing lava-dl 0.6.0 into .venv-lava (CPU only)"
  if lpip --timeout 20 --retries 0 --extra-index-url https://download.pytorch.org/whl/cpu \
       "torch==2.3.1+cpu" "torchvision==0.18.1+cpu" "numpy<2" 2>/dev/null; then
    say "torch 2.3.1+cpu from PyTorch's CPU index"
  else
    say "PyTorch's CPU index is not reachable: torch 2.3.1 from PyPI (CUDA build, ~5 GB)"
    lpip "torch==2.3.1" "torchvision==0.18.1" "numpy<2" || true
  fi
  lpip --no-deps "lava-dl==0.6.0" || true
  lpip "lava-nc==0.10.0" "numpy<2" "h5py>=3.7,<4" "matplotlib>=3.5.2,<4" "pillow>=10.0.1,<11" \
       "opencv-python-headless>=4.8.1.78,<5" || true
  if lava_dl_ok; then
    say "lava-dl ready in $((SECONDS - t0)) s; .venv-lava is $(du -sh .venv-lava | cut -f1)"
  else
    say "warning: lava-dl did not install; the netx/lava-dl tests will be skipped"
  fi
fi
