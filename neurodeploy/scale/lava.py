"""Lava replays as separate tasks: one Lava process tree per shard of samples.

``run_lava`` already compiles the plan once and runs all its samples in one long Lava run;
samples do not interact (the runner resets every layer between samples — tested in
``tests/test_lava_equivalence.py``), so the samples can be cut into shards, each replayed by
its own ``run_lava`` subprocess (on a Ray worker, or in a loop), and the per-sample spikes
concatenated in sample order equal one long run's.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import torch

from neurodeploy.scale.runner import run_sharded
from neurodeploy.scale.shards import Shard


def _replay_task(shard: Shard, p: dict[str, Any]) -> dict[str, Any]:
    from neurodeploy.sims.lava_env import run_lava

    res = run_lava(p["plan"], p["spikes"][:, list(shard.indices)], timeout_s=p["timeout_s"],
                   record_layers=p["record_layers"])
    return {"out": torch.from_numpy(np.ascontiguousarray(res.out_spikes)),
            "layers": [torch.from_numpy(np.ascontiguousarray(s)) for s in res.layer_spikes],
            "wall_s": float(res.wall_s)}


def replay_lava_sharded(
    plan: Any,
    spikes: np.ndarray,
    shard_size: int,
    *,
    record_layers: bool = False,
    workers: int | None = None,
    address: str | None = None,
    state_dir: str | os.PathLike | None = None,
    timeout_s: float = 600.0,
) -> dict[str, Any]:
    """``out_spikes`` ``[T, B, …]`` (and ``layer_spikes`` with ``record_layers``) of ``plan``
    replayed on Lava shard by shard; ``wall_s`` summed over the shards' subprocesses."""
    if getattr(plan, "readout", "count") == "membrane":
        from neurodeploy.errors import ConfigError

        raise ConfigError("a membrane read-out plan (last layer li): the sharded Lava replay "
                          "returns output spikes only; run it unsharded (LavaBackend, "
                          "simulate --backend lava)")
    spikes = np.asarray(spikes, dtype=np.uint8)
    n = int(spikes.shape[1])
    payload = {"plan": plan, "spikes": spikes, "timeout_s": float(timeout_s),
               "record_layers": bool(record_layers)}
    # the plan's arrays and the inputs decide the result (a changed plan is another job)
    fp = ["lava-replay", bool(record_layers), torch.from_numpy(spikes),
          *(torch.from_numpy(np.ascontiguousarray(L.weights)) for L in plan.layers),
          *(torch.from_numpy(np.ascontiguousarray(L.bias_mant)) for L in plan.layers),
          [(L.name, L.kind, L.vth, L.du, L.dv, L.weight_exp, L.bias_exp, L.neuron,
            list(L.skip_from)) for L in plan.layers],
          *(torch.from_numpy(np.ascontiguousarray(v)) for L in plan.layers
            for _, v in sorted(L.neuron_arrays.items())),
          *(torch.from_numpy(np.ascontiguousarray(w)) for L in plan.layers
            for w in L.skip_weights),
          # plan version 3: v floor / graded spikes (neuron_params), second synapse groups
          repr([sorted(L.neuron_params.items()) for L in plan.layers]),
          *(torch.from_numpy(np.ascontiguousarray(L.weights_lo)) for L in plan.layers
            if L.weights_lo is not None)]
    results = run_sharded(_replay_task, n, shard_size, payload=payload, workers=workers,
                          address=address, state_dir=state_dir, fingerprint=fp)
    out = {"out_spikes": np.concatenate([r["out"].numpy() for r in results], axis=1),
           "wall_s": sum(r["wall_s"] for r in results), "shards": len(results)}
    if record_layers:
        out["layer_spikes"] = [np.concatenate([r["layers"][k].numpy() for r in results], axis=1)
                               for k in range(len(results[0]["layers"]))]
    return out
