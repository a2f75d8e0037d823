"""Data-parallel training under ``torchrun`` (gloo on CPU, NCCL on GPU).

``torchrun --nproc_per_node N -m neurodeploy train …`` starts N processes with ``RANK``,
``WORLD_SIZE``, ``LOCAL_RANK`` and ``MASTER_ADDR/PORT`` set; the trainer then runs one replica
per process:

- every rank draws the same global permutation (same shuffle seed) and takes the strided slice
  ``batch[rank::N]`` of each global batch (so the global batches are those of a 1-process run);
- after ``loss.backward()`` the gradients are all-reduced as the mean over the global batch,
  ``g = Σ_r (n_r / n) g_r`` (one flattened buffer, one collective), *before* clipping and the
  optimizer step, so every replica applies the same update;
- the encoder / neuron-noise streams are per rank (rank 0 keeps the run's seed);
- rank 0 alone evaluates, writes checkpoints and metrics; the RNG states of every rank are
  gathered into ``last.pt`` so that ``--resume`` under the same world size continues exactly.

Why not ``DistributedDataParallel``: its reducer hooks are armed by the wrapped module's
``forward``, but the defenses call the network in other ways (S-IBP/S-CROWN bounds walk the
layers, adversarial training attacks the classifier first, HoSNN reads membrane traces), so
one explicit all-reduce after the defense's loss serves every defense the same way. After
every epoch the replicas compare a digest of their state dicts; a difference stops
the run (it would be a bug).
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist

from neurodeploy.errors import ConfigError


def launched_distributed() -> bool:
    """True inside a torchrun launch with more than one process."""
    try:
        return int(os.environ.get("WORLD_SIZE", "1")) > 1
    except ValueError as exc:
        raise ConfigError(f"WORLD_SIZE={os.environ.get('WORLD_SIZE')!r} is not an integer") from exc


@dataclass
class Replicas:
    """The process group as the trainer sees it; ``world == 1`` means a plain run (every
    method is then a no-op, so the trainer calls them unconditionally)."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0
    backend: str | None = None
    owns_group: bool = False

    @property
    def active(self) -> bool:
        return self.world > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def describe(self) -> dict[str, Any]:
        return {"world_size": self.world, "backend": self.backend,
                "gradient_sync": "all-reduce of the global-batch mean gradient"}

    # -------------------------------------------------------------- lifecycle

    @classmethod
    def from_env(cls, device: torch.device) -> Replicas:
        """Join (or create) the process group of a torchrun launch; a plain run otherwise."""
        if not launched_distributed() and not (dist.is_available() and dist.is_initialized()):
            return cls()
        if not dist.is_available():
            raise ConfigError("torch.distributed is not available in this torch build")
        owns = False
        if not dist.is_initialized():
            backend = "nccl" if device.type == "cuda" else "gloo"
            if device.type == "cuda":
                torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
            dist.init_process_group(backend)
            owns = True
        return cls(dist.get_rank(), dist.get_world_size(),
                   int(os.environ.get("LOCAL_RANK", "0")), dist.get_backend(), owns)

    def device(self, device: torch.device) -> torch.device:
        """One GPU per local rank; CPU stays CPU."""
        if self.active and device.type == "cuda":
            return torch.device("cuda", self.local_rank)
        return device

    def close(self) -> None:
        if self.owns_group and dist.is_initialized():
            dist.destroy_process_group()
            self.owns_group = False

    # -------------------------------------------------------------- data and seeds

    def local_batch(self, idx: torch.Tensor) -> torch.Tensor:
        """This rank's strided slice of a global batch of indices."""
        return idx[self.rank :: self.world] if self.active else idx

    def rank_seed(self, seed: int) -> int:
        """Rank 0 keeps ``seed``; other ranks get their own stream."""
        return int(seed) if self.rank == 0 else int(seed) + 1_000_003 * self.rank

    # -------------------------------------------------------------- collectives

    def _dev(self, like: torch.Tensor | None = None) -> torch.device:
        if self.backend == "nccl":
            return torch.device("cuda", torch.cuda.current_device())
        return torch.device("cpu") if like is None else like.device

    def broadcast_module(self, module: torch.nn.Module) -> None:
        """Copy rank 0's state (parameters and persistent buffers) to every rank. Transient
        buffers (snntorch's membrane ``mem``, not in the state dict) are per-batch state."""
        if not self.active:
            return
        with torch.no_grad():
            for t in module.state_dict().values():
                dist.broadcast(t, src=0)

    def all_finite(self, value: torch.Tensor) -> bool:
        """True when ``value`` is finite on every rank (collective)."""
        ok = bool(torch.isfinite(value).all())
        if not self.active:
            return ok
        flag = torch.tensor([1.0 if ok else 0.0], device=self._dev())
        dist.all_reduce(flag, op=dist.ReduceOp.MIN)
        return bool(flag.item() > 0)

    def average_gradients(self, params: list[torch.nn.Parameter], weight: float) -> None:
        """``p.grad ← Σ_ranks weight_r · p.grad_r`` (weight = local/global batch size).

        Parameters without a gradient on this rank contribute zeros (and get the reduced
        gradient), so every rank issues the same collective."""
        if not self.active:
            return
        grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
        flat = torch.cat([g.reshape(-1) for g in grads]) * float(weight)
        dist.all_reduce(flat, op=dist.ReduceOp.SUM)
        off = 0
        for p in params:
            k = p.numel()
            p.grad = flat[off : off + k].view_as(p).clone()
            off += k

    def mean_of(self, sums: dict[str, float]) -> dict[str, float]:
        """The mean over ranks of each value (keys sorted; every rank must have the same)."""
        if not self.active or not sums:
            return sums
        keys = sorted(sums)
        gathered = self.gather_objects(keys)
        if any(g != keys for g in gathered):
            raise ConfigError(f"ranks report different metrics: {gathered}")
        v = torch.tensor([float(sums[k]) for k in keys], dtype=torch.float64, device=self._dev())
        dist.all_reduce(v, op=dist.ReduceOp.SUM)
        return {k: float(x) / self.world for k, x in zip(keys, v.tolist(), strict=True)}

    def gather_objects(self, obj: Any) -> list[Any]:
        if not self.active:
            return [obj]
        out: list[Any] = [None] * self.world
        dist.all_gather_object(out, obj)
        return out

    def broadcast_object(self, obj: Any) -> Any:
        if not self.active:
            return obj
        box = [obj]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def barrier(self) -> None:
        if self.active:
            dist.barrier()

    def check_in_sync(self, module: torch.nn.Module) -> str:
        """Digest of the state dict; raises when the replicas differ (collective)."""
        h = hashlib.sha256()
        for t in module.state_dict().values():
            h.update(t.detach().cpu().contiguous().numpy().tobytes())
        digest = h.hexdigest()
        if self.active:
            all_d = self.gather_objects(digest)
            if len(set(all_d)) != 1:
                from neurodeploy.training.trainer import TrainingError

                raise TrainingError(f"data-parallel replicas diverged (parameter digests "
                                    f"{[d[:12] for d in all_d]}); this is a bug")
        return digest
