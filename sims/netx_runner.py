"""Run a netx HDF5 file with lava-dl's own loader (``lava.lib.dl.netx.hdf5.Network``) in Lava.

The Lava side (Python 3.10 environment with lava-dl)::

    python -m neurodeploy.sims.netx_runner --net NET.net --inputs IN.npz --out OUT.npz

``IN.npz`` holds ``spikes`` uint8 ``[T, B, *input_shape]`` (PyTorch layout); ``OUT.npz`` holds
``layer<k>`` ``[T, B, *shape_k]`` for every block netx built (PyTorch layout: Lava's (W, H, C)
reversed back), and ``meta`` (JSON: netx's block table, timings).

Many samples run through one compiled network as in :mod:`neurodeploy.sims.lava_runner`: the
samples follow each other with period ``T`` in one source buffer and netx's own reset
(``Network(reset_interval=T, reset_offset=1)``: block k, 0-indexed, is a ``LIFReset`` with
offset ``k + 2``) zeroes block k's u and v just before sample i's first input reaches it,
which is the runner's :class:`~neurodeploy.sims.lava_runner.Schedule` (depth d = k + 1 resets at
``d + 1``). Its first block receives the input as netx expects it: a Dense block flat in
PyTorch order, a Conv block in Lava's (W, H, C) layout.

The main side (:func:`run_netx`) writes the inputs, runs that command with the Lava
environment's Python and reads the result; :func:`netx_available` says whether lava-dl imports
there. This module imports only numpy at the top; lava and lava-dl inside the Lava-side
functions.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

#: what netx passes as ``Network(reset_offset=…)`` so that block k resets at ``k + 2``
NETX_RESET_OFFSET = 1


# ----------------------------------------------------------------------------- Lava side


def _first_block_input(block: Any, spikes_t: np.ndarray) -> np.ndarray:
    """Global train ``[total, *S]`` (PyTorch layout) → netx's first block input
    ``[*shape, total]`` int32: flat for Dense, (W, H, C) for Conv."""
    from neurodeploy.sims.lava_runner import to_lava_layout

    shape = tuple(block.inp.shape)
    total = spikes_t.shape[0]
    if len(shape) == 1:
        x = spikes_t.reshape(total, -1)
    else:
        x = to_lava_layout(spikes_t, spikes_t.ndim - 1)
    if tuple(x.shape[1:]) != shape:
        raise ValueError(f"netx's first block takes {shape}, the inputs give {x.shape[1:]}")
    return np.ascontiguousarray(np.moveaxis(x, 0, -1)).astype(np.int32)


def run_file(net_path: str, spikes: np.ndarray) -> tuple[dict[int, np.ndarray], dict[str, Any]]:
    """Load ``net_path`` with netx, run ``spikes [T, B, …]``; per-block spikes ``[T, B, …]``."""
    from lava.lib.dl import netx
    from lava.magma.core.run_conditions import RunSteps
    from lava.magma.core.run_configs import Loihi2SimCfg
    from lava.proc.io.sink import RingBuffer as Sink
    from lava.proc.io.source import RingBuffer as Source

    from neurodeploy.sims.lava_runner import Schedule, to_lava_layout

    T, B = spikes.shape[:2]
    t0 = time.perf_counter()
    net = netx.hdf5.Network(net_config=net_path, reset_interval=T,
                            reset_offset=NETX_RESET_OFFSET)
    sched = Schedule(T, T, B, len(net.layers))
    src = Source(data=_first_block_input(net.layers[0], sched.source_train(spikes)))
    src.s_out.connect(net.inp)
    sinks = []
    for blk in net.layers:
        sink = Sink(shape=blk.out.shape, buffer=sched.total_steps)
        blk.out.connect(sink.a_in)
        sinks.append(sink)
    t1 = time.perf_counter()
    net.run(condition=RunSteps(num_steps=sched.total_steps),
            run_cfg=Loihi2SimCfg(select_tag="fixed_pt"))
    try:
        data = [np.asarray(s.data.get()) for s in sinks]
    finally:
        net.stop()
    t2 = time.perf_counter()
    out = {}
    for k, d in enumerate(data):
        train = np.moveaxis(d, -1, 0)  # [total, *lava shape]
        train = to_lava_layout(train, train.ndim - 1)
        out[k] = sched.window(train, k + 1).astype(np.uint8)
    meta = {"blocks": str(net), "build_s": t1 - t0, "run_s": t2 - t1, "T": T, "B": B}
    return out, meta


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m neurodeploy.sims.netx_runner")
    p.add_argument("--net", required=True)
    p.add_argument("--inputs", required=True)
    p.add_argument("--out", required=True)
    a = p.parse_args(argv)
    spikes = np.load(a.inputs)["spikes"]
    layers, meta = run_file(a.net, spikes)
    np.savez(a.out, meta=np.array(json.dumps(meta)),
             **{f"layer{k}": v for k, v in layers.items()})
    return 0


# ----------------------------------------------------------------------------- main side


def netx_available() -> str | None:
    """None when lava-dl's netx imports in the Lava environment, else the reason."""
    from neurodeploy.sims.lava_env import find_lava_python, lava_missing_reason

    why = lava_missing_reason()
    if why:
        return why
    r = subprocess.run([find_lava_python(), "-c", "import lava.lib.dl.netx"],
                       capture_output=True, text=True, timeout=300)
    if r.returncode != 0:
        tail = (r.stderr.strip().splitlines() or ["?"])[-1]
        return f"lava-dl's netx does not import in the Lava environment ({tail})"
    return None


def run_netx(net_path: str | os.PathLike, spikes: np.ndarray, timeout_s: float = 600.0
             ) -> tuple[list[np.ndarray], dict[str, Any]]:
    """Run a netx file on ``spikes [T, B, *input_shape]`` in the Lava environment; returns
    every block's spikes ``[T, B, *shape]`` (PyTorch layout) and the runner's meta.

    Raises
    ------
    LavaRunError
        The runner failed or timed out (its stderr's last line in the message).
    """
    from neurodeploy.sims.lava_env import LavaRunError, find_lava_python

    with tempfile.TemporaryDirectory(prefix="neurodeploy-netx-") as tmp:
        inp, out = Path(tmp) / "in.npz", Path(tmp) / "out.npz"
        np.savez(inp, spikes=np.asarray(spikes).astype(np.uint8))
        cmd = [find_lava_python(), "-m", "neurodeploy.sims.netx_runner", "--net",
               str(net_path), "--inputs", str(inp), "--out", str(out)]
        try:
            r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s)
        except subprocess.TimeoutExpired as exc:
            raise LavaRunError(f"netx runner timed out after {timeout_s:g} s") from exc
        if r.returncode != 0:
            tail = (r.stderr.strip().splitlines() or ["?"])[-1]
            raise LavaRunError(f"netx runner failed (exit {r.returncode}): {tail}")
        with np.load(out) as z:
            n = len([k for k in z.files if k.startswith("layer")])
            return [z[f"layer{k}"] for k in range(n)], json.loads(str(z["meta"]))


if __name__ == "__main__":
    sys.exit(main())
