"""Shards: fixed groups of sample indices (× grid points), each with its own seed.

A sharded job is the list of tasks ``[(grid point g, sample indices I)]`` for every grid point
``g`` (e.g. a random draw, an ε) and every consecutive chunk ``I`` of ``shard_size`` sample
indices. The plan depends only on ``(indices, shard_size, grid)``, never on the number of
workers, and every task's random stream is seeded from its own content::

    seed(task) = sha256([base_seed, "shard", g, |I|, sha256(I)])[:8]   (63 bits)

so a task computes the same thing wherever and whenever it runs. The serial path runs the same
tasks in a loop: serial and parallel results are identical by construction (tested), and a
resumed run skips finished tasks without changing any number.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Hashable, Sequence
from dataclasses import dataclass

from neurodeploy.errors import ConfigError

DEFAULT_SHARD_SIZE = 100


def _digest(obj: object) -> str:
    return hashlib.sha256(json.dumps(obj, default=str).encode()).hexdigest()


@dataclass(frozen=True)
class Shard:
    """One task: a grid point and a tuple of sample indices.

    Attributes
    ----------
    number : position in the job's task list (also the checkpoint file name).
    grid : the grid point (JSON-able; ``None`` when the job has no grid).
    indices : sample indices, in the caller's order.
    """

    number: int
    grid: Hashable
    indices: tuple[int, ...]

    @property
    def size(self) -> int:
        return len(self.indices)

    def seed(self, base_seed: int) -> int:
        """63-bit seed of this task (independent of ``number``, workers and run order)."""
        ident = [int(base_seed), "shard", self.grid, len(self.indices), _digest(self.indices)]
        h = hashlib.sha256(json.dumps(ident, default=str).encode()).digest()
        return int.from_bytes(h[:8], "little") & ((1 << 63) - 1)

    @property
    def name(self) -> str:
        return f"shard-{self.number:06d}"


def make_shards(
    indices: Sequence[int] | int,
    shard_size: int = DEFAULT_SHARD_SIZE,
    grid: Sequence[Hashable] = (None,),
) -> list[Shard]:
    """The task list: for each grid point, consecutive chunks of ``shard_size`` indices.

    ``indices`` may be an int ``n`` (meaning ``range(n)``).
    """
    idx = list(range(indices)) if isinstance(indices, int) else [int(i) for i in indices]
    if isinstance(shard_size, bool) or not isinstance(shard_size, int) or shard_size < 1:
        raise ConfigError(f"shard size must be an integer >= 1, got {shard_size!r}")
    if not idx:
        raise ConfigError("nothing to shard: the index list is empty")
    if len(set(idx)) != len(idx):
        raise ConfigError("sample indices must be distinct")
    grid = list(grid)
    if not grid:
        raise ConfigError("the grid is empty")
    out: list[Shard] = []
    for g in grid:
        for s in range(0, len(idx), shard_size):
            out.append(Shard(len(out), g, tuple(idx[s:s + shard_size])))
    return out


def plan_digest(shards: Sequence[Shard]) -> str:
    """A digest of the task list (grid points and indices, in order)."""
    return _digest([[s.grid, list(s.indices)] for s in shards])
