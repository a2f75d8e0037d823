"""Scale-out on existing engines: sharded sweeps on Ray, torch DDP for training.

- :mod:`~neurodeploy.scale.shards`: the task plan (grid point × chunk of sample indices) and
  the per-task seed;
- :mod:`~neurodeploy.scale.runner`: :func:`run_sharded` (serial loop or Ray tasks, per-shard
  checkpoints, resume, results in task order);
- :mod:`~neurodeploy.scale.ray_pool`: optional Ray (local instance or a cluster);
- :mod:`~neurodeploy.scale.certify`, :mod:`~neurodeploy.scale.robustness`: the sharded
  certify and attack evaluations with their merges;
- :mod:`~neurodeploy.scale.lava`: Lava replays as separate tasks (one process tree per shard);
- :mod:`~neurodeploy.scale.ddp`: process groups, gradient all-reduce and rank rules for
  ``torchrun``;
- :mod:`~neurodeploy.scale.cli`: ``--workers``, ``--ray-address``, ``--shard-size``.
"""

from neurodeploy.scale.runner import run_sharded
from neurodeploy.scale.shards import DEFAULT_SHARD_SIZE, Shard, make_shards

__all__ = ["DEFAULT_SHARD_SIZE", "Shard", "make_shards", "run_sharded"]
