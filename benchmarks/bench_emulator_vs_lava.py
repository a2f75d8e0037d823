"""Throughput of the bit-exact emulator vs the Lava runner on the same plan and inputs.

    .venv/bin/python benchmarks/bench_emulator_vs_lava.py [--samples 500] [--threads 2]
                                                          [--record benchmarks/RESULTS_deploy_b2.md]

Plan: the certify_snn MNIST FC 784-512-256-10 reference (``../shared``, compiled for loihi2 by
``neurodeploy.exporters.compiler.compile_model``), or a random-weight 784-512-256-10 plan when
the shared files or the compiler are absent. T = 10. Inputs: the first N MNIST test images (or
uniform random images), Bernoulli-encoded once with seed 0 — the same uint8 spike tensor goes
to both backends. One run each:

- Lava: ``run_lava`` (subprocess; one compile, all N samples in one long run with staggered
  LIFReset). Reported per sample: steady state (the ``run`` phase only) and everything
  (interpreter start, build, compile, runtime init, run, read, stop: the subprocess wall time).
- Emulator: one warm-up call, then the best of 3 timed calls on all N samples (record=False).

Mismatches: output spikes of every sample at every step, emulator vs Lava (must be 0).
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import sys
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("NEURODEPLOY_SHARED", REPO.parent / "shared"))


def make_plan_and_images(n: int):
    """(plan, images [N,1,28,28], description)."""
    ckpt = SHARED / "reference_models/certify_snn/mnist_FC.pth.tar"
    try:
        from neurodeploy.exporters.compiler import compile_model
        from neurodeploy.models import ModelConfig, import_state_dict
        have = ckpt.is_file() and (SHARED / "data/mnist").is_dir()
    except ImportError:
        have = False
    if have:
        from neurodeploy.data.core import load_dataset

        model = import_state_dict(ckpt, ModelConfig("FC512-FC256-FC10", (1, 28, 28),
                                                    readout="rate"))
        plan = compile_model(model, profile="loihi2")
        x = load_dataset(SHARED / "data/mnist").test.x[:n]
        return plan, x, "certify_snn mnist_FC (784-512-256-10) compiled for loihi2; MNIST test"
    from neurodeploy.sims.emulator import random_fc_plan

    rng = np.random.default_rng(0)
    plan = random_fc_plan(rng, (784, 512, 256, 10), num_steps=10, weight_scale=12.0,
                          dv=3072, vth=60, bias_max=0)
    x = torch.rand(n, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    return plan, x.reshape(n, 784), "random-weight 784-512-256-10 plan; uniform random images"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--samples", type=int, default=500)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--record", default=None, help="append a Markdown entry to this file")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    from neurodeploy.encoding import BernoulliEncoder
    from neurodeploy.sims.emulator import Emulator
    from neurodeploy.sims.lava_env import run_lava

    plan, x, desc = make_plan_and_images(args.samples)
    T, N = plan.num_steps, args.samples
    spikes = BernoulliEncoder(T)(x, torch.Generator().manual_seed(0)).to(torch.uint8)
    spikes = spikes.reshape(T, N, *plan.input_shape)
    spikes_np = spikes.numpy()

    ru0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    lava = run_lava(plan, spikes_np, timeout_s=3600)
    ru1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu_lava = (ru1.ru_utime - ru0.ru_utime) + (ru1.ru_stime - ru0.ru_stime)
    tl = lava.meta["timings_s"]

    emu = Emulator(plan)
    emu.run(spikes[:, : min(N, 64)], record=False)  # warm-up
    times, cpus = [], []
    for _ in range(3):
        t0, c0 = time.perf_counter(), time.process_time()
        res = emu.run(spikes, record=False)
        times.append(time.perf_counter() - t0)
        cpus.append(time.process_time() - c0)
    t_emu, cpu_emu = min(times), min(cpus)

    mism = int((res.out_spikes.numpy() != lava.out_spikes).sum())
    sps_emu = N / t_emu
    sps_lava_run = N / tl["run"]
    sps_lava_all = N / lava.wall_s
    ms_lava_run = 1000 * tl["run"] / N
    ms_lava_all = 1000 * lava.wall_s / N
    lines = [
        f"### Emulator vs Lava runner — {time.strftime('%Y-%m-%d %H:%M')}",
        "",
        f"- Command: `.venv/bin/python benchmarks/bench_emulator_vs_lava.py --samples {N} "
        f"--threads {args.threads}`",
        f"- Machine: {platform.processor() or platform.machine()}, {os.cpu_count()} vCPU, CPU "
        f"only, shared with other jobs at the time (load average {os.getloadavg()[0]:.1f}); "
        f"torch {torch.__version__}, {args.threads} torch threads; Lava 0.10.0 multiprocessing "
        f"runtime (one OS process per Lava process).",
        f"- Plan / inputs: {desc}; T = {T}, N = {N}, Bernoulli seed 0, identical uint8 spikes.",
        "",
        "| backend | seconds | samples/s | ms/sample |",
        "|---|---:|---:|---:|",
        f"| Lava runner, steady state (run phase, {lava.meta['total_steps']} steps) "
        f"| {tl['run']:.2f} | {sps_lava_run:.1f} | {ms_lava_run:.1f} |",
        f"| Lava runner, everything (subprocess wall: start-up {lava.wall_s - tl['total']:.2f}, "
        f"build {tl['build']:.2f}, compile {tl['compile']:.2f}, init {tl['runtime_init']:.2f}, "
        f"read {tl['read']:.2f}, stop {tl['stop']:.2f}) | {lava.wall_s:.2f} | "
        f"{sps_lava_all:.1f} | {ms_lava_all:.1f} |",
        f"| emulator (CPU, best of 3) | {t_emu:.3f} | {sps_emu:.0f} | {1000 * t_emu / N:.3f} |",
        "",
        f"- CPU seconds (user + sys, all processes; robust to the shared machine's load): Lava "
        f"everything {cpu_lava:.2f} s ({1000 * cpu_lava / N:.1f} ms/sample, all Lava worker "
        f"processes included), emulator {cpu_emu:.3f} s ({1000 * cpu_emu / N:.3f} ms/sample) → "
        f"CPU-time ratio **{cpu_lava / cpu_emu:.0f}×**.",
        f"- Ratio emulator / Lava: **{sps_emu / sps_lava_run:.0f}×** (steady state), "
        f"**{sps_emu / sps_lava_all:.0f}×** (everything). Target ≥ 100×.",
        f"- Lava steady state **{ms_lava_run:.1f} ms/sample** (target ≤ 30 ms on 2 cores).",
        f"- Mismatched output spikes emulator vs Lava: **{mism}** of "
        f"{res.out_spikes.numel()} (all samples, all steps). Accuracy on the labels is not "
        f"computed here (see `neurodeploy simulate`).",
        "",
    ]
    text = "\n".join(lines)
    print(text)
    if args.record:
        with open(args.record, "a") as fh:
            fh.write(text + "\n")
    return 0 if mism == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
