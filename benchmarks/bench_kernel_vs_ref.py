"""Side-by-side speed of the emulator and twin against their versions at a git ref (issue 12's
"no benchmark slower by more than 5 %" check for the one-kernel refactor).

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_kernel_vs_ref.py [--ref 9c712e2] [--rounds 15]

The old ``sims/emulator.py`` and ``sims/twin.py`` are read with ``git show REF:…`` and imported
as separate modules; both sides run alternately (ABBA order) on the same plans and inputs, one
thread, and their spikes are checked equal first. Reported: min and median wall time per side
and the new/old ratios. Plans: random FC 784-512-256-10 (B = 500, T = 10), conv 2×16×16 → C8 →
pool → FC10 (B = 200), the FC plan with TA-LIF hidden layers (emulator), and the twin's
forward + backward on the FC plan (B = 64). On a shared machine, read the ratios (the paired
per-round median above all), not the times.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]


def _load(name: str, source: str, folder: Path):
    path = folder / f"{name}.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod
    spec.loader.exec_module(mod)
    return mod


def _time(fns, rounds: int) -> list[list[float]]:
    ts: list[list[float]] = [[] for _ in fns]
    for r in range(rounds):
        for i in (range(len(fns)) if r % 2 == 0 else reversed(range(len(fns)))):
            t0 = time.perf_counter()
            fns[i]()
            ts[i].append(time.perf_counter() - t0)
    return ts


def _row(name: str, t_old: list[float], t_new: list[float]) -> str:
    """min / median per side, their ratios, and the median of the per-round ratios (the two
    calls of a round run back to back, so they share the machine's load)."""
    to, tn = sorted(t_old), sorted(t_new)
    paired = sorted(n / o for o, n in zip(t_old, t_new, strict=True))
    m = len(to) // 2
    return (f"{name}: old min {to[0] * 1e3:.1f} med {to[m] * 1e3:.1f} ms | new min "
            f"{tn[0] * 1e3:.1f} med {tn[m] * 1e3:.1f} ms | new/old min {tn[0] / to[0]:.3f} "
            f"med {tn[m] / to[m]:.3f} paired-median {paired[m]:.3f}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--ref", default="9c712e2")
    ap.add_argument("--rounds", type=int, default=15)
    args = ap.parse_args()
    torch.set_num_threads(1)
    from neurodeploy.exporters.profiles import LAVA_0_10
    from neurodeploy.sims.emulator import Emulator, random_conv_plan, random_fc_plan
    from neurodeploy.sims.lava_runner import TALIFFixed
    from neurodeploy.sims.twin import HardwareTwin

    def show(path: str) -> str:
        return subprocess.run(["git", "show", f"{args.ref}:{path}"], cwd=REPO, check=True,
                              capture_output=True, text=True).stdout

    with tempfile.TemporaryDirectory() as tmp:
        old = _load("old_emulator", show("sims/emulator.py"), Path(tmp))
        old.TALIFFixed = type("OldTALIF", (), {"from_layer": staticmethod(
            lambda L: TALIFFixed.from_layer(L, LAVA_0_10))})  # its one-argument signature
        twin_src = show("sims/twin.py").replace("from neurodeploy.sims.emulator import",
                                                "from old_emulator import")
        old_twin = _load("old_twin", twin_src, Path(tmp))
        rng = np.random.default_rng(0)
        fc = random_fc_plan(rng, (784, 512, 256, 10), num_steps=10, weight_scale=12.0,
                            dv=3072, vth=60, bias_max=0)
        x_fc = torch.as_tensor(np.random.default_rng(1).random((10, 500, 784)) < 0.3
                               ).to(torch.uint8)
        conv = random_conv_plan(np.random.default_rng(2), (2, 16, 16), 8, (3, 3), (1, 1),
                                (1, 1), 2, 10, num_steps=10)
        x_conv = torch.as_tensor(np.random.default_rng(3).random((10, 200, 2, 16, 16)) < 0.3
                                 ).to(torch.uint8)

        def talif(L):
            n = L.out_size
            return dataclasses.replace(L, neuron="talif", neuron_params={
                "theta_v_shift": 12, "theta_bits": 24}, neuron_arrays={
                "theta_v": rng.integers(0, 400, n).astype(np.int32),
                "nds": rng.integers(-3000, 3000, (10, n)).astype(np.int32)})

        tal = dataclasses.replace(fc, layers=tuple(talif(L) if i < 2 else L
                                                   for i, L in enumerate(fc.layers)))
        for name, plan, x in (("emulator FC 784-512-256-10 B=500 T=10", fc, x_fc),
                              ("emulator conv 2x16x16-C8-pool-FC10 B=200 T=10", conv, x_conv),
                              ("emulator TA-LIF FC (2 TA-LIF layers) B=500 T=10", tal, x_fc)):
            eo, en = old.Emulator(plan), Emulator(plan)
            a, b = eo.run(x), en.run(x)
            assert all(torch.equal(p, q) for p, q in zip(a.layer_spikes, b.layer_spikes,
                                                          strict=True))
            to, tn = _time([lambda eo=eo, x=x: eo.run(x, record=False),
                            lambda en=en, x=x: en.run(x, record=False)], args.rounds)
            print(_row(name, to, tn), flush=True)
        xs = x_fc[:, :64].double()
        tw_old = old_twin.HardwareTwin(fc, encoding="spikes")
        tw_new = HardwareTwin(fc, encoding="spikes")
        assert all(torch.equal(p, q) for p, q in zip(tw_old.run(xs).spikes,
                                                      tw_new.run(xs).spikes, strict=True))

        def fwd_bwd(tw):
            xx = xs.clone().requires_grad_(True)
            sum(s.sum() for s in tw.run(xx).spikes).backward()

        to, tn = _time([lambda: fwd_bwd(tw_old), lambda: fwd_bwd(tw_new)], args.rounds)
        print(_row("twin FC forward+backward B=64 T=10", to, tn), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
