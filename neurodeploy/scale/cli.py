"""The scale-out options every sharded command spells the same way.

``--workers N`` (local Ray, started and stopped by the command), ``--ray-address ADDR`` (an
existing cluster) and ``--shard-size K``. Any of them selects the sharded path; ``--shard-size``
alone runs the same shards serially (identical numbers to a Ray run with that shard size).
Without them the command's serial path is unchanged.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

from neurodeploy.errors import ConfigError
from neurodeploy.scale.ray_pool import check_ray_address, ray_available, require_ray
from neurodeploy.scale.shards import DEFAULT_SHARD_SIZE


@dataclass(frozen=True)
class ScaleOptions:
    """``workers``/``address`` None: the shards run serially in this process."""

    shard_size: int
    workers: int | None = None
    address: str | None = None

    @property
    def parallel(self) -> bool:
        return self.workers is not None or self.address is not None

    def to_dict(self) -> dict[str, object]:
        return {"shard_size": self.shard_size, "workers": self.workers,
                "ray_address": self.address,
                "engine": "ray" if self.parallel else "serial loop over the same shards"}


def add_scale_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("scale-out (Ray; pip install 'neurodeploy[scale]')")
    g.add_argument("--workers", type=int, default=None, metavar="N",
                   help="run the shards on a local Ray instance with N workers (started and "
                        "stopped by this command); results are identical to the serial run "
                        "with the same --shard-size")
    g.add_argument("--ray-address", default=None, metavar="ADDR",
                   help="run the shards on an existing Ray cluster (auto, host:port, "
                        "ray://host:10001); neurodeploy must be installed on its nodes")
    g.add_argument("--shard-size", type=int, default=None, metavar="K",
                   help=f"samples per shard (default {DEFAULT_SHARD_SIZE} when sharded); alone, "
                        "runs the shards serially. Shards checkpoint beside --out and a killed "
                        "run resumes without redoing finished ones")


def scale_options(args: argparse.Namespace) -> ScaleOptions | None:
    """The options of ``args``, validated; None when no scale-out option was given."""
    workers = getattr(args, "workers", None)
    address = getattr(args, "ray_address", None)
    size = getattr(args, "shard_size", None)
    if workers is None and address is None and size is None:
        return None
    if workers is not None and address is not None:
        raise ConfigError("give --workers (a local Ray instance) or --ray-address (a cluster), "
                          "not both")
    if workers is not None and workers < 1:
        raise ConfigError(f"--workers must be >= 1, got {workers}")
    if size is not None and size < 1:
        raise ConfigError(f"--shard-size must be >= 1, got {size}")
    if (workers is not None or address is not None) and not ray_available():
        require_ray()  # raises ConfigError with the install command
    if address is not None:
        address = check_ray_address(address)  # parses and answers, or exit 2 within seconds
    return ScaleOptions(size or DEFAULT_SHARD_SIZE, workers, address)


def shard_dir_for(out: str | None) -> Path | None:
    """Where a command with ``--out FILE`` keeps its shard checkpoints: ``FILE.shards/``."""
    if not out:
        return None
    p = Path(out)
    return p.with_name(p.name + ".shards")
