"""Sharded certification: ``certify_many`` per (draw, shard of samples), merged in task order.

Each task certifies its samples for every method with one generator seeded from the task
(:meth:`Shard.seed`), so all methods see the same random draw (a paired comparison, as in the
serial command) and the merged numbers do not depend on the number of workers. They do
depend on the shard size (the draw of a sample depends on its shard's seed), which is part of
the recorded configuration.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from neurodeploy.scale.runner import run_sharded
from neurodeploy.scale.shards import Shard

SEED_RULE = "per task: sha256([seed, 'shard', draw, n, sha256(indices)]); every method uses it"


def _certify_task(shard: Shard, p: dict[str, Any]) -> dict[str, Any]:
    from neurodeploy.bounds.certify import certify_many
    from neurodeploy.encoding import make_generator

    device = torch.device(p["device"])
    idx = torch.tensor(shard.indices, dtype=torch.long)
    x = p["x"].index_select(1 if p["spikes"] else 0, idx).to(device)
    y = p["y"][idx].to(device)
    model = p["model"].to(device)
    out: dict[str, Any] = {}
    for m in p["methods"]:
        t0 = time.perf_counter()
        gen = make_generator(shard.seed(p["seed"]), device)
        res = certify_many(model, x, y, p["eps"], p["cert_steps"], (m,), gen,
                           batch_size=p["batch_size"], method_options=p["method_options"])[m]
        out[m] = {"verified": res.verified.cpu(), "clean_correct": res.clean_correct.cpu(),
                  "margin_lb": res.margin_lb.cpu(),
                  "unstable": float(res.extra.get("unstable_input_fraction", 0.0)),
                  "seconds": time.perf_counter() - t0}
    return out


@dataclass
class ShardedCertification:
    """Merged result. ``per_method[m]``: lists over draws of ``verified_error``,
    ``clean_accuracy``, ``seconds`` (summed task time), ``unstable_input_fraction``;
    ``samples[m]``: per-sample tensors ``verified`` ``[draws, N]``, ``clean_correct``
    ``[draws, N]`` and ``margin_lb`` ``[draws, N, K−1]``, in sample order."""

    per_method: dict[str, dict[str, list[float]]]
    samples: dict[str, dict[str, torch.Tensor]]


def certify_sharded(
    model: Any,
    x: torch.Tensor,
    y: torch.Tensor,
    eps: float,
    cert_steps: int | None,
    methods: tuple[str, ...],
    *,
    seed: int = 0,
    draws: int = 1,
    batch_size: int = 500,
    method_options: dict[str, Any] | None = None,
    shard_size: int,
    workers: int | None = None,
    address: str | None = None,
    state_dir: str | Path | None = None,
    device: str = "cpu",
    progress: Callable[[int], None] | None = None,
) -> ShardedCertification:
    """Certify ``(x, y)`` shard by shard (module docstring); ``per_method`` holds the same
    lists the serial command builds. ``x``: images ``[N, …]`` or time-first spikes
    ``[T, N, …]``."""
    spikes = model.config.encoding == "spikes"
    n = int(y.shape[0])
    payload = {"model": model.cpu(), "x": x.detach().cpu(), "y": y.detach().cpu(),
               "spikes": spikes, "eps": float(eps), "cert_steps": cert_steps,
               "methods": tuple(methods), "seed": int(seed), "batch_size": int(batch_size),
               "method_options": method_options or {}, "device": str(device)}
    fp = ["certify", {k: v for k, v in payload.items() if k not in ("model", "x", "y")},
          payload["x"], payload["y"], *model.state_dict().values(), str(model.config)]
    results = run_sharded(_certify_task, n, shard_size, payload=payload, grid=list(range(draws)),
                          workers=workers, address=address, state_dir=state_dir,
                          fingerprint=fp, progress=progress,
                          gpus_per_task=_gpus_per_task(device, workers))
    from neurodeploy.scale.shards import make_shards

    shards = make_shards(n, shard_size, list(range(draws)))
    per: dict[str, dict[str, list[float]]] = {
        m: {"verified_error": [], "clean_accuracy": [], "seconds": [],
            "unstable_input_fraction": []} for m in methods}
    samples: dict[str, dict[str, list[torch.Tensor]]] = {
        m: {"verified": [], "clean_correct": [], "margin_lb": []} for m in methods}
    for d in range(draws):
        mine = [(s, results[s.number]) for s in shards if s.grid == d]
        for m in methods:
            for key in samples[m]:
                samples[m][key].append(torch.cat([r[m][key] for _, r in mine]))
            per[m]["verified_error"].append(1.0 - float(samples[m]["verified"][-1].float().mean()))
            per[m]["clean_accuracy"].append(float(samples[m]["clean_correct"][-1].float().mean()))
            per[m]["seconds"].append(sum(r[m]["seconds"] for _, r in mine))
            per[m]["unstable_input_fraction"].append(
                sum(r[m]["unstable"] * s.size for s, r in mine) / n)
    stacked = {m: {k: torch.stack(v) for k, v in d.items()} for m, d in samples.items()}
    return ShardedCertification(per, stacked)


def _gpus_per_task(device: str, workers: int | None) -> float:
    """CUDA tasks share the GPUs: a local instance with N workers gives each 1/N of one."""
    if not str(device).startswith("cuda"):
        return 0.0
    return 1.0 / workers if workers else 1.0
