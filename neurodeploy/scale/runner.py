"""``run_sharded``: run a function over the shards of a job, serially or on Ray, with checkpoints.

::

    results = run_sharded(fn, indices, shard_size, payload=data, grid=draws,
                          workers=2, state_dir="out/job.shards", fingerprint=config)

``fn(shard, payload) -> result`` is called once per :class:`~neurodeploy.scale.shards.Shard`;
it must be a pure function of (shard, payload) — seed its randomness with
``shard.seed(base_seed)`` — and return plain data (dicts/lists of tensors, numbers, strings,
None), which is what the checkpoints store. The results come back in task order whatever
the order of completion, so a merge over them is deterministic.

- serial (``workers`` and ``address`` None): the same tasks in a loop in this process;
- Ray (``workers=N``: local instance with N one-task-per-CPU workers, started and stopped
  here; ``address``: an existing cluster): one Ray task per shard, the payload stored once in
  the object store. Each task runs with ``threads`` torch threads, and so does the serial
  loop, so float reductions are the same in both (identical results, not merely close).

Checkpoints (``state_dir``): ``manifest.json`` (fingerprint of the caller's config and of the
task plan) and one ``shard-NNNNNN.pt`` per finished task, written atomically as soon as it
finishes. A run with the same fingerprint loads finished tasks instead of recomputing them; a
different fingerprint is refused (delete the folder or choose another).
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Hashable, Sequence
from pathlib import Path
from typing import Any

import torch

from neurodeploy.errors import ConfigError, DataError
from neurodeploy.scale.shards import DEFAULT_SHARD_SIZE, Shard, make_shards, plan_digest

MANIFEST_FORMAT = "neurodeploy-shards"
MANIFEST_VERSION = 1


def fingerprint_of(*parts: Any) -> str:
    """sha256 over tensors (their bytes, dtype and shape) and JSON-able config values."""
    h = hashlib.sha256()
    for p in parts:
        if isinstance(p, torch.Tensor):
            t = p.detach().cpu().contiguous()
            h.update(f"{t.dtype}{tuple(t.shape)}".encode())
            h.update(t.numpy().tobytes() if t.dtype != torch.bfloat16 else t.float().numpy().tobytes())
        else:
            h.update(json.dumps(p, sort_keys=True, default=str).encode())
    return h.hexdigest()


class ShardStore:
    """Finished-task results of one job in a folder (see the module docstring)."""

    def __init__(self, folder: str | os.PathLike, fingerprint: str, shards: Sequence[Shard]):
        from neurodeploy.training.metrics import write_json_atomic

        self.folder = Path(folder)
        self.shards = list(shards)
        manifest = {"format": MANIFEST_FORMAT, "version": MANIFEST_VERSION,
                    "fingerprint": fingerprint, "plan": plan_digest(self.shards),
                    "tasks": len(self.shards)}
        mpath = self.folder / "manifest.json"
        if mpath.is_file():
            from neurodeploy.safeload import load_json

            old = load_json(mpath, f"shard manifest (delete {self.folder} to start over)")
            if not isinstance(old, dict) or old.get("format") != MANIFEST_FORMAT:
                raise DataError(f"{mpath}: not a neurodeploy shard manifest")
            if old.get("fingerprint") != fingerprint or old.get("plan") != manifest["plan"]:
                raise ConfigError(
                    f"{self.folder}: holds shards of a different job (inputs, options or shard "
                    f"size differ); delete it to start over, or write elsewhere")
        else:
            write_json_atomic(mpath, manifest)

    def path(self, shard: Shard) -> Path:
        return self.folder / f"{shard.name}.pt"

    def load(self, shard: Shard) -> tuple[bool, Any]:
        """``(True, result)`` for a finished task, ``(False, None)`` otherwise."""
        p = self.path(shard)
        if not p.is_file():
            return False, None
        from neurodeploy.safeload import load_torch

        # data only (a pickle payload is refused); a torn file cannot happen (atomic writes)
        rec = load_torch(p, "shard checkpoint (delete it to recompute that shard)", DataError)
        if (not isinstance(rec, dict) or list(rec.get("indices", ())) != list(shard.indices)
                or rec.get("grid") != _jsonable(shard.grid)):
            raise DataError(f"{p}: does not belong to task {shard.number} of this job")
        return True, rec["result"]

    def save(self, shard: Shard, result: Any) -> None:
        from neurodeploy.models import atomic_torch_save

        atomic_torch_save({"grid": _jsonable(shard.grid), "indices": list(shard.indices),
                           "result": result}, self.path(shard))


def _jsonable(g: Hashable) -> Any:
    return json.loads(json.dumps(g, default=str))


def _call(fn: Callable[[Shard, Any], Any], shard: Shard, payload: Any, threads: int) -> Any:
    """Run one task with ``threads`` torch threads (restored afterwards)."""
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        return fn(shard, payload)
    finally:
        torch.set_num_threads(before)


def _ray_task(fn: Callable[[Shard, Any], Any], shard: Shard, payload: Any, threads: int) -> Any:
    os.environ.setdefault("NEURODEPLOY_QUIET", "1")  # one progress bar: the driver's
    return _call(fn, shard, payload, threads)


def run_sharded(
    fn: Callable[[Shard, Any], Any],
    indices: Sequence[int] | int,
    shard_size: int = DEFAULT_SHARD_SIZE,
    *,
    payload: Any = None,
    grid: Sequence[Hashable] = (None,),
    workers: int | None = None,
    address: str | None = None,
    state_dir: str | os.PathLike | None = None,
    fingerprint: Any = None,
    threads: int = 1,
    gpus_per_task: float = 0.0,
    progress: Callable[[int], None] | None = None,
) -> list[Any]:
    """Results of ``fn`` for every task of ``make_shards(indices, shard_size, grid)``, in
    task order (module docstring). ``progress(k)`` is called with the number of samples of
    each finished (or reloaded) task."""
    if threads < 1:
        raise ConfigError(f"threads per task must be >= 1, got {threads}")
    if workers is not None and address is not None:
        raise ConfigError("give --workers (a local Ray instance) or --ray-address (a cluster), "
                          "not both")
    shards = make_shards(indices, shard_size, grid)
    store = None
    if state_dir is not None:
        store = ShardStore(state_dir, fingerprint_of(fingerprint), shards)
    results: list[Any] = [None] * len(shards)
    todo: list[Shard] = []
    for s in shards:
        found, res = store.load(s) if store is not None else (False, None)
        if found:
            results[s.number] = res
            if progress is not None:
                progress(s.size)
        else:
            todo.append(s)

    def finish(s: Shard, res: Any) -> None:
        results[s.number] = res
        if store is not None:
            store.save(s, res)
        if progress is not None:
            progress(s.size)

    if workers is None and address is None:
        for s in todo:
            finish(s, _call(fn, s, payload, threads))
        return results

    from neurodeploy.scale.ray_pool import ray_session

    with ray_session(workers, address, threads) as ray:
        remote = ray.remote(num_cpus=threads, num_gpus=gpus_per_task, max_retries=0)(_ray_task)
        if todo:
            fn_ref = ray.put(fn)
            payload_ref = ray.put(payload)
            pending = {remote.remote(fn_ref, s, payload_ref, threads): s for s in todo}
            try:
                while pending:
                    ready, _ = ray.wait(list(pending), num_returns=1)
                    for ref in ready:
                        s = pending.pop(ref)
                        finish(s, _ray_get(ray, ref, s))
            finally:
                for ref in pending:  # interrupted or failed: do not leave tasks running
                    ray.cancel(ref, force=True)
    return results


def _ray_get(ray: Any, ref: Any, shard: Shard) -> Any:
    """``ray.get`` that re-raises a task's own NeurodeployError (keeping its exit code)."""
    from neurodeploy.errors import NeurodeployError

    try:
        return ray.get(ref)
    except ray.exceptions.RayTaskError as exc:
        cause = getattr(exc, "cause", None)
        if isinstance(cause, NeurodeployError):
            raise cause from None
        raise RuntimeError(f"task {shard.number} (samples {shard.indices[0]}…"
                           f"{shard.indices[-1]}) failed on a Ray worker: {exc}") from exc
