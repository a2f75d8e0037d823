"""Sharded robustness evaluation: the attack engine per shard of samples, merged in task order.

Each task runs :func:`neurodeploy.attacks.engine.evaluate_robustness` on its samples with the
task's own seed (:meth:`Shard.seed`) for every ε and draw, so the per-example worst case
(robust flags, adversarial examples, ``broken_by``) of a sample does not depend on the number
of workers or on the run order. Merge: flags and adversarial examples concatenated in sample
order; accuracies recomputed from the merged flags; the per-attack cumulative accuracies
summed from the tasks' counts. Numbers depend on the shard size (part of the recorded
configuration), exactly as the unsharded engine's depend on ``batch_size``.
"""

from __future__ import annotations

import json
import os
from typing import Any

import torch

from neurodeploy.scale.runner import run_sharded
from neurodeploy.scale.shards import Shard, make_shards

SEED_RULE = ("per shard: sha256([seed, 'shard', None, n, sha256(indices)]) is the engine's "
             "base seed for that shard's samples")


def _robustness_task(shard: Shard, p: dict[str, Any]) -> dict[str, Any]:
    from neurodeploy.attacks.base import select_rows
    from neurodeploy.attacks.engine import evaluate_robustness

    bd = p["batch_dim"]
    idx = torch.tensor(shard.indices, dtype=torch.long)
    device = torch.device(p["device"])
    clf = select_rows(p["classifier"], idx)  # known-draw maps follow the shard's samples
    if hasattr(clf, "to"):
        clf = clf.to(device)
    x = p["x"].index_select(bd, idx).to(device)
    y = p["y"][idx].to(device)
    res = evaluate_robustness(clf, x, y, p["attacks"], p["eps_list"], seed=shard.seed(p["seed"]),
                              draws=p["draws"], state_path=None, quiet=True,
                              batch_size=p["batch_size"], eot_iter=p["eot_iter"])
    n = len(shard.indices)
    keys = [repr(float(e)) for e in res.eps_list]
    return {
        "eps": [float(e) for e in res.eps_list],
        "names": list(res.attack_names),
        "configs_json": json.dumps(res.attack_configs, default=str),
        "clean_correct": [round(a * n) for a in res.clean_accuracy],
        "robust": {k: res.robust[e].cpu() for k, e in zip(keys, res.eps_list, strict=True)},
        "adversarial": {k: res.adversarial[e].detach().cpu()
                        for k, e in zip(keys, res.eps_list, strict=True)},
        "broken_by": {k: list(res.broken_by[e]) for k, e in zip(keys, res.eps_list, strict=True)},
        "cumulative_count": {
            k: {a: [round(v * n) for v in vals] for a, vals in res.cumulative[e].items()}
            for k, e in zip(keys, res.eps_list, strict=True)},
        "stochastic": bool(res.stochastic),
        "domain": str(res.domain),
        "eot_iter": res.eot_iter,
        "seconds": {k: float(v) for k, v in res.seconds.items()},
    }


def evaluate_robustness_sharded(
    classifier: Any,
    x: torch.Tensor,
    y: torch.Tensor,
    attacks: list[Any],
    eps_list: list[float],
    *,
    seed: int = 0,
    draws: int = 1,
    batch_size: int | None = None,
    eot_iter: int | None = None,
    shard_size: int,
    workers: int | None = None,
    address: str | None = None,
    state_dir: str | os.PathLike | None = None,
    device: str = "cpu",
    progress: Any = None,
) -> Any:
    """A :class:`~neurodeploy.attacks.engine.RobustnessResult` over all samples, computed
    shard by shard (module docstring). ``classifier`` must be picklable (cloudpickle) for Ray;
    ``attacks`` as for the engine (``(name, params)`` pairs travel best)."""
    from neurodeploy.attacks.base import batch_dim
    from neurodeploy.attacks.engine import RobustnessResult

    bd = batch_dim(classifier)
    n = int(y.shape[0])
    if x.shape[bd] != n:
        from neurodeploy.errors import DataError

        raise DataError(f"{x.shape[bd]} inputs but {n} labels")
    payload = {"classifier": classifier, "x": x.detach().cpu(), "y": y.detach().cpu().long(),
               "attacks": list(attacks), "eps_list": [float(e) for e in eps_list],
               "seed": int(seed), "draws": int(draws), "batch_size": batch_size,
               "eot_iter": eot_iter, "batch_dim": bd, "device": str(device)}
    model = getattr(classifier, "model", classifier)
    state = list(model.state_dict().values()) if hasattr(model, "state_dict") else []
    fp = ["robustness", {k: v for k, v in payload.items() if k not in ("classifier", "x", "y")},
          payload["x"], payload["y"], *state, type(classifier).__name__]
    gpus = 0.0
    if str(device).startswith("cuda"):
        gpus = 1.0 / workers if workers else 1.0
    results = run_sharded(_robustness_task, n, shard_size, payload=payload, workers=workers,
                          address=address, state_dir=state_dir, fingerprint=fp,
                          progress=progress, gpus_per_task=gpus)
    shards = make_shards(n, shard_size)
    first = results[0]
    eps_values, names = first["eps"], first["names"]
    keys = [repr(e) for e in eps_values]
    clean = [sum(r["clean_correct"][d] for r in results) / n for d in range(draws)]
    robust, adversarial, broken_by, robust_acc, cumulative = {}, {}, {}, {}, {}
    for k, e in zip(keys, eps_values, strict=True):
        flags = torch.cat([r["robust"][k] for r in results], dim=1)
        robust[e] = flags
        robust_acc[e] = [float(f.float().mean()) for f in flags]
        adversarial[e] = torch.cat([r["adversarial"][k] for r in results], dim=bd).to(x.device)
        broken_by[e] = [b for r in results for b in r["broken_by"][k]]
        cumulative[e] = {a: [sum(r["cumulative_count"][k][a][d] for r in results) / n
                             for d in range(draws)] for a in names}
    seconds: dict[str, float] = {}
    for r in results:
        for a, v in r["seconds"].items():
            seconds[a] = seconds.get(a, 0.0) + v
    return RobustnessResult(
        clean_accuracy=clean,
        eps_list=eps_values,
        attack_names=names,
        attack_configs=json.loads(first["configs_json"]),
        robust_accuracy=robust_acc,
        cumulative=cumulative,
        robust=robust,
        adversarial=adversarial,
        broken_by=broken_by,
        seeds={"seed": int(seed), "rule": SEED_RULE, "shard_size": shard_size,
               "shards": len(shards)},
        draws=draws,
        stochastic=first["stochastic"],
        n_examples=n,
        domain=first["domain"],
        eot_iter=first["eot_iter"],
        seconds=seconds,
    )
