"""The audit's sharded work: attack evaluations and Lava replays as shards (serial or on Ray).

With ``AuditConfig.shard_size`` set (``neurodeploy audit --shard-size K``, ``--workers N`` or
``--ray-address ADDR``) the audit runs

- every known-draw evaluation (per side) and every escalation round through
  :func:`neurodeploy.scale.robustness.evaluate_robustness_sharded`: shards of ``K`` samples,
  each attacked with the engine seeded from its own sample indices (:meth:`Shard.seed`), so
  the numbers depend on ``K`` (recorded, and part of the audit's state fingerprint) but never
  on the number of workers: ``--shard-size K`` alone runs the same shards in a loop and gives
  the same report as ``--workers N --shard-size K``;
- the Lava replay through :func:`neurodeploy.scale.lava.replay_lava_sharded`: one ``run_lava``
  subprocess (one Lava process tree) per shard, on the shard's worker.

Finished shards checkpoint under the evaluation's state folder
(``OUT/state/<fingerprint>/<side>_<threat>.shards/``, ``lava.shards/``), so a killed audit
resumes without redoing them. The unknown draw's select-then-evaluate attacks
(:mod:`neurodeploy.audit.unknown_draw`, resumable from their selection file), the
gradient-masking checks (a fixed ``masking_samples`` subset), certification, efficiency blocks
and per-layer fidelity stay in the driver process.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from neurodeploy.scale.cli import ScaleOptions
from neurodeploy.scale.robustness import SEED_RULE

#: what the report says runs as shards (and what does not)
SHARDED_WORK = ("known-draw attack evaluations per side and escalation round; the Lava "
                "replay (one Lava process tree per shard). In the driver: the unknown draw's "
                "select-then-evaluate attacks (resumable), masking checks, certification, "
                "efficiency, per-layer fidelity")


@dataclass(frozen=True)
class AuditShards(ScaleOptions):
    """Where the audit's shards run: ``workers``/``address`` None means a serial loop here."""

    def record(self) -> dict[str, Any]:
        """The ``meta.sharding`` block of the report."""
        return {**self.to_dict(), "seed_rule": SEED_RULE, "sharded": SHARDED_WORK,
                "identical_to": f"any run with shard_size={self.shard_size}, whatever the "
                                f"number of workers"}

    def engine(self, clf: Any, x: torch.Tensor, y: torch.Tensor, specs: list[Any],
               eps: list[float], seed: int, draws: int, eot: int | None,
               state_dir: Path, quiet: bool) -> Any:
        """The engine's :class:`RobustnessResult` for ``(x, y)``, shard by shard."""
        from neurodeploy.runtime import progress
        from neurodeploy.scale.robustness import evaluate_robustness_sharded

        bar = progress(total=int(y.shape[0]), desc=f"shards {state_dir.stem}", quiet=quiet)
        try:
            return evaluate_robustness_sharded(
                clf, x, y, specs, eps, seed=seed, draws=draws, eot_iter=eot,
                shard_size=self.shard_size, workers=self.workers, address=self.address,
                state_dir=state_dir, progress=bar.update)
        finally:
            bar.close()

    def lava_layers(self, plan: Any, spikes: torch.Tensor, timeout_s: float,
                    state_dir: Path) -> list[torch.Tensor]:
        """Every layer's Lava spikes (float, CPU) on host ``spikes`` ``[T, B, …]``: one
        ``run_lava`` subprocess per shard of samples, concatenated in sample order."""
        from neurodeploy.scale.lava import replay_lava_sharded

        x = spikes.detach().cpu().numpy().astype(np.uint8)
        res = replay_lava_sharded(plan, x, self.shard_size, record_layers=True,
                                  workers=self.workers, address=self.address,
                                  state_dir=state_dir, timeout_s=timeout_s)
        return [torch.from_numpy(np.ascontiguousarray(s)).float() for s in res["layer_spikes"]]
