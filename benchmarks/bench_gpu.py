"""GPU vs CPU throughput of the three heavy paths, measured in one run (``gpu_check.sh``).

    python benchmarks/bench_gpu.py [--quick] [--out benchmarks/results/gpu_check.json]
                                   [--devices cpu,cuda]

1. training: one epoch of BPTT (``neurodeploy.training.trainer.train``, no defense) of an
   FC 784-512-256-10 SNN, T = 10, batch 256, on synthetic 28×28 images with random labels
   (throughput only; nothing is learned or claimed) → samples / s;
2. attack: PGD (10 iterations, ℓ∞ ε = 0.1, EoT 1) against the same model's classifier →
   samples / s (one sample = one full attack);
3. emulator: the bit-exact emulator (``neurodeploy.sims.emulator.Emulator``, record=False) on
   a random 784-512-256-10 plan, T = 10 → samples / s; the CPU and GPU spike outputs are
   compared (must be equal: the emulator is exact on both).

Each figure is the best of ``--repeats`` timed runs after one warm-up; CUDA timings are
synchronised. The CPU side uses fewer samples (the ``cpu_samples`` columns) so that the whole
check stays under a few minutes; rates are per sample, so they compare directly.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _best(fn, device: torch.device, repeats: int) -> float:
    fn()  # warm-up (CUDA context, kernels, allocator)
    _sync(device)
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        _sync(device)
        best = min(best, time.perf_counter() - t0)
    return best


def _model(device: torch.device):
    from neurodeploy.classifier import SNNClassifier
    from neurodeploy.models import ModelConfig, build_model

    torch.manual_seed(0)
    model = build_model(ModelConfig("FC512-FC256-FC10", (1, 28, 28), num_steps=10,
                                    readout="rate"))
    return SNNClassifier(model.to(device), seed=0)


def bench_training(device: torch.device, n: int, repeats: int) -> dict[str, Any]:
    from neurodeploy.data.core import Dataset, DatasetSplit
    from neurodeploy.training.trainer import TrainConfig, train

    g = torch.Generator().manual_seed(0)
    x = torch.rand(n, 1, 28, 28, generator=g)
    y = torch.randint(0, 10, (n,), generator=g)
    split = DatasetSplit(Dataset(x, y, "synthetic"), Dataset(x[:0], y[:0], "empty"),
                         "synthetic 28x28, random labels (throughput only)")
    cfg = TrainConfig(epochs=1, batch_size=256, lr=1e-3, seed=0, device=str(device))

    def once() -> None:
        train(_model(device), split, cfg, quiet=True)

    sec = _best(once, device, repeats)
    return {"samples": n, "seconds": sec, "samples_per_s": n / sec}


def bench_attack(device: torch.device, n: int, repeats: int) -> dict[str, Any]:
    from neurodeploy.attacks.base import make_attack

    clf = _model(device).eval()
    g = torch.Generator().manual_seed(1)
    x = torch.rand(n, 1, 28, 28, generator=g).to(device)
    y = torch.randint(0, 10, (n,), generator=g).to(device)
    atk = make_attack("pgd", n_iter=10, eot_iter=1)

    def once() -> None:
        atk.perturb(clf, x, y, 0.1, torch.Generator().manual_seed(2))

    sec = _best(once, device, repeats)
    return {"samples": n, "seconds": sec, "samples_per_s": n / sec, "attack": "pgd n_iter=10"}


def bench_emulator(device: torch.device, n: int, repeats: int, spikes: np.ndarray
                   ) -> tuple[dict[str, Any], torch.Tensor]:
    from neurodeploy.sims.emulator import Emulator, random_fc_plan

    plan = random_fc_plan(np.random.default_rng(0), (784, 512, 256, 10), num_steps=10)
    emu = Emulator(plan, device)
    x = torch.as_tensor(spikes[:, :n])
    out: list[torch.Tensor] = []

    def once() -> None:
        out[:] = [emu.run(x, record=False).out_spikes]

    sec = _best(once, device, repeats)
    return {"samples": n, "seconds": sec, "samples_per_s": n / sec}, out[0].cpu()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="small sizes (a smoke test)")
    ap.add_argument("--devices", default="cpu,cuda", help="devices to measure, in order")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--out", default=str(REPO / "benchmarks/results/gpu_check.json"))
    args = ap.parse_args(argv)
    devices = [torch.device(d) for d in args.devices.split(",") if d]
    for d in devices:
        if d.type == "cuda" and not torch.cuda.is_available():
            print("SKIP: CUDA requested but torch.cuda.is_available() is False", file=sys.stderr)
            return 3
    sizes = {  # (cpu samples, gpu samples)
        "training": (256, 4096) if not args.quick else (64, 128),
        "attack": (64, 1024) if not args.quick else (16, 32),
        "emulator": (256, 4096) if not args.quick else (32, 64),
    }
    rng = np.random.default_rng(3)
    n_emu = max(sizes["emulator"])
    spikes = (rng.random((10, n_emu, 784)) < 0.2).astype(np.uint8)
    record: dict[str, Any] = {
        "when": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
        "torch": torch.__version__, "python": platform.python_version(),
        "cpu_threads": torch.get_num_threads(),
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "cuda": torch.version.cuda, "quick": args.quick, "results": {},
    }
    emu_out: dict[str, torch.Tensor] = {}
    for d in devices:
        k = 0 if d.type == "cpu" else 1
        r: dict[str, Any] = {}
        r["training"] = bench_training(d, sizes["training"][k], args.repeats)
        r["attack"] = bench_attack(d, sizes["attack"][k], args.repeats)
        r["emulator"], emu_out[d.type] = bench_emulator(d, sizes["emulator"][k], args.repeats,
                                                         spikes)
        record["results"][str(d)] = r
    if "cpu" in emu_out and "cuda" in emu_out:
        m = min(emu_out["cpu"].shape[1], emu_out["cuda"].shape[1])
        record["emulator_cpu_equals_cuda_spikes"] = bool(
            torch.equal(emu_out["cpu"][:, :m], emu_out["cuda"][:, :m]))
    names = list(record["results"])
    lines = [f"{'path':<10}" + "".join(f"{n + ' samples/s':>22}" for n in names)
             + ("   speed-up" if len(names) == 2 else "")]
    for part in ("training", "attack", "emulator"):
        v = [record["results"][n][part]["samples_per_s"] for n in names]
        row = f"{part:<10}" + "".join(f"{x:>22.1f}" for x in v)
        if len(v) == 2:
            row += f"   {v[1] / v[0]:8.1f}x"
        lines.append(row)
    if "emulator_cpu_equals_cuda_spikes" in record:
        lines.append(f"emulator spikes CPU == CUDA: {record['emulator_cpu_equals_cuda_spikes']}")
    record["table"] = lines
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(record, indent=1) + "\n")
    print("\n".join(lines))
    print(f"wrote {out}")
    ok = record.get("emulator_cpu_equals_cuda_spikes", True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
