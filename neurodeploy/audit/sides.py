"""The two sides of the audit and the pieces every stage shares.

:class:`Sides` holds the float model, the emulator, the twin and (optionally) Lava for one
plan, all fed host spikes; :class:`Eval` is one known-draw evaluation (per-ε flags, the
adversarial inputs, the engine records); :func:`engine` runs the attack engine (sharded or
not); :func:`masking` runs one side's gradient-masking checks for one threat model and ε.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from neurodeploy.audit.report import Check, ThresholdTrace
from neurodeploy.audit.sharding import AuditShards
from neurodeploy.classifier import SNNClassifier
from neurodeploy.encoding import BernoulliEncoder, KnownDrawEncoder
from neurodeploy.jsonable import jsonable as _plain
from neurodeploy.models import SpikingNet

SIDES = ("float", "deployed")
THREAT_MODELS = {"known": "known draw", "unknown": "unknown draw"}

def spec_record(specs: list[Any]) -> list[Any]:
    out = []
    for sp in specs:
        if hasattr(sp, "to_dict"):
            d = sp.to_dict()
            out.append([d.get("attack", d["name"]), _plain(d["config"]), d["name"]])
        else:
            out.append(_plain(list(sp)))
    return out


class Sides:
    """The float model, emulator, twin and (optionally) Lava for one plan, all fed host spikes.

    ``shards`` (set by :func:`run_audit`): Lava replays as shards checkpointed in
    ``state_dir``."""

    shards: AuditShards | None = None
    state_dir: Path = Path(".")

    def __init__(self, model: SpikingNet, plan: Any, lava: bool, timeout_s: float) -> None:
        from neurodeploy.sims.emulator import Emulator
        from neurodeploy.sims.twin import HardwareTwin

        self.model = model
        self.plan = plan
        self.emulator = Emulator(plan)
        self.twin = HardwareTwin(plan, encoding=model.config.encoding,
                                 surrogate=model.config.surrogate)
        self.lava = lava
        self.timeout_s = timeout_s

    def classifier(self, side: str, threat: str, u: torch.Tensor, seed: int) -> Any:
        from neurodeploy.audit.deployed import DeployedClassifier

        T = self.model.config.num_steps
        enc = KnownDrawEncoder(T, u) if threat == "known" else BernoulliEncoder(T)
        if side == "float":
            return SNNClassifier(self.model, enc, seed=seed)
        return DeployedClassifier(self.emulator, self.twin, enc, seed=seed)

    def layers(self, backend: str, spikes: torch.Tensor) -> list[torch.Tensor]:
        """Every layer's spikes (float, CPU) of ``backend`` (float / emulator / lava) on host
        ``spikes``, through the one backend contract (:mod:`neurodeploy.trace`)."""
        from neurodeploy.sims.backends import LavaBackend

        runner = {"float": self.model, "emulator": self.emulator,
                  "lava": LavaBackend(self.plan, timeout_s=self.timeout_s)}[backend]
        with torch.no_grad():
            trace = runner.run(spikes, record=True)
        return [s.detach().cpu().float() for s in trace.spikes]

    def float_layers(self, spikes: torch.Tensor) -> list[torch.Tensor]:
        return self.layers("float", spikes)

    def emulator_layers(self, spikes: torch.Tensor) -> list[torch.Tensor]:
        return self.layers("emulator", spikes)

    def lava_layers(self, spikes: torch.Tensor) -> list[torch.Tensor]:
        if self.shards is not None:  # one run_lava subprocess per shard, checkpointed
            return self.shards.lava_layers(self.plan, spikes, self.timeout_s,
                                           self.state_dir / "lava.shards")
        return self.layers("lava", spikes)


def correct(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Correct = the true class is the argmax (torch's first-index tie-breaking), the same
    rule the attack engine uses."""
    return logits.argmax(1).cpu() == y.cpu()


def agreement(a: list[torch.Tensor], b: list[torch.Tensor]) -> list[float]:
    return [float((x == y).float().mean()) for x, y in zip(a, b, strict=True)]


def fingerprint(model: SpikingNet, plan: Any, config: Any, x: torch.Tensor,
                 y: torch.Tensor) -> str:
    """Hash of everything an audit's numbers depend on: weights, plan, config, data."""
    h = hashlib.sha256()
    for k, v in sorted(model.state_dict().items()):
        h.update(k.encode())
        h.update(v.detach().cpu().contiguous().numpy().tobytes())
    for L in plan.layers:
        h.update(np.ascontiguousarray(np.asarray(L.weights)).tobytes())
        h.update(np.ascontiguousarray(np.asarray(L.bias_mant)).tobytes())
        h.update(repr((L.name, L.kind, L.weight_exp, L.du, L.dv, L.vth, L.bias_exp, L.neuron,
                       float(L.scale), list(L.skip_from))).encode())
        for k, v in sorted(L.neuron_arrays.items()):  # TA-LIF, W_rec, per-neuron decays
            h.update(k.encode())
            h.update(np.ascontiguousarray(np.asarray(v)).tobytes())
        h.update(repr(sorted(L.neuron_params.items())).encode())  # v_min, graded_bits, TA-LIF
        if L.weights_lo is not None:  # a second synapse group (plan version 3)
            h.update(np.ascontiguousarray(np.asarray(L.weights_lo)).tobytes())
        for w in L.skip_weights:
            h.update(np.ascontiguousarray(np.asarray(w)).tobytes())
    h.update(json.dumps(_plain(asdict(config)), sort_keys=True).encode())
    h.update(x.detach().cpu().contiguous().numpy().tobytes())
    h.update(y.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


def now() -> tuple[float, float]:
    return time.perf_counter(), time.process_time()


def since(t0: tuple[float, float]) -> tuple[float, float]:
    """(wall, CPU) seconds since ``t0``: the CPU time of this process (all its threads) is what
    a stage would take on a quiet machine at one core, whatever the load while it ran."""
    return time.perf_counter() - t0[0], time.process_time() - t0[1]




@dataclass
class Eval:
    """One (side, threat model) result: per-ε robust flags ``[draws, N]`` (worst case over every
    round so far), adversarial examples (first draw that broke a point) and the engine records."""

    flags: dict[float, torch.Tensor]
    adversarial: dict[float, torch.Tensor]
    clean: list[float]
    records: list[dict[str, Any]]
    draws: int

    def still_robust(self) -> torch.Tensor:
        """Examples robust in some draw at some ε (the only ones worth attacking again)."""
        return torch.stack([f.any(0) for f in self.flags.values()]).any(0).nonzero()[:, 0]

    def absorb(self, res: Any, rows: torch.Tensor, record: dict[str, Any]) -> None:
        """Worst case with an escalation result ``res`` computed on examples ``rows``."""
        for e in self.flags:
            new = res.robust[e].cpu()
            old = self.flags[e][:, rows]
            # the stored example is the one that first broke a point: take the new one only
            # where no earlier round had broken the point in any draw
            take = old.all(0) & ~new.all(0)
            self.flags[e][:, rows] = old & new
            self.adversarial[e][rows[take]] = res.adversarial[e].cpu()[take]
        self.records.append(record)


def engine(clf: Any, x: torch.Tensor, y: torch.Tensor, specs: list[tuple[str, dict]],
            eps: list[float], seed: int, draws: int, eot: int | None, state: Path,
            quiet: bool, shards: AuditShards | None = None) -> tuple[Any, dict[str, Any]]:
    """The engine on ``(x, y)``; with ``shards``, shard by shard with the shards' checkpoints
    in ``<state>.shards/`` instead of the engine's state file ``state``."""
    from neurodeploy.attacks.engine import evaluate_robustness

    if shards is not None:
        res = shards.engine(clf, x, y, specs, eps, seed, draws, eot, state.with_suffix(".shards"),
                            quiet)
    else:
        res = evaluate_robustness(clf, x, y, specs, eps, seed=seed, draws=draws,
                                  state_path=state, quiet=quiet, eot_iter=eot)
    rec = res.to_dict()
    seconds = rec.pop("seconds", {})
    return res, {"record": rec, "seconds": seconds}


def masking(sides: Sides, side: str, threat: str, eps: float, u: torch.Tensor,
            x: torch.Tensor, y: torch.Tensor, m: int, config: Any, level: int,
            state_dir: Path) -> list[Check]:
    """The checks of one side on the first ``m`` samples under ``threat`` at ``eps`` and
    escalation ``level`` (the unknown draw with EoT over ``config.eot`` draws per gradient);
    cached in the state folder so a resumed audit does not run them twice."""
    from neurodeploy.attacks.masking import run_masking_checks
    from neurodeploy.audit import run as R
    from neurodeploy.safeload import load_records
    from neurodeploy.training.metrics import write_text_atomic

    cache = state_dir / f"checks_{side}_{threat}_{eps:g}_{level}.json"
    if cache.is_file():
        return load_records(cache, Check, "masking-check cache")  # data only, keys checked
    rows = torch.arange(m)
    clf = sides.classifier(side, threat, u, config.seed).select(rows)
    src = sides.classifier("float", threat, u, config.seed).select(rows) \
        if side == "deployed" else None
    grad = R.check_gradient(config, level)
    results = run_masking_checks(
        clf, x[:m], y[:m], float(eps), n_iter=R._check_iters(config, level),
        square_queries=max(100, config.square_queries) * 2**level, seed=config.seed + level,
        attack_params=grad, source_classifier=src,
        eot_iter=config.eot if threat == "unknown" else None)
    mode = ", ".join(f"{k}={v}" for k, v in grad.items())
    out = [Check(c.name, bool(c.passed), c.message, _plain(c.numbers), side, round=level,
                 grad_mode=mode, threat_model=THREAT_MODELS[threat], eps=float(eps))
           for c in results]
    write_text_atomic(cache, json.dumps([asdict(c) for c in out]))
    return out


def threshold_traces(model: SpikingNet, sides: Sides, spikes: torch.Tensor) -> list[ThresholdTrace]:
    """Mean θ per step for TA-LIF layers, float vs fixed point (θ_int in float units)."""
    if model.config.neuron != "talif":
        return []
    with torch.no_grad():
        tr = model.run(spikes, record=True)
    res = sides.emulator.run(spikes, record=True)
    fixed = getattr(res, "layer_theta", None) or []
    out = []
    for k, L in enumerate(sides.plan.layers):
        if L.neuron != "talif" or k >= len(fixed) or fixed[k] is None:
            continue
        f = tr.thetas[k].flatten(2).mean(dim=(1, 2)).tolist()
        q = (torch.as_tensor(np.asarray(fixed[k])).double()
             / sides.plan.fixed_point.v_per_float(L.scale))
        out.append(ThresholdTrace(L.name, f, q.flatten(2).mean(dim=(1, 2)).tolist()))
    return out



def first_of(d: dict[str, Any], keys: tuple[str, ...]) -> float | None:
    """The first of ``keys`` that ``d`` holds (not None), as a float."""
    for k in keys:
        if k in d and d[k] is not None:
            return float(d[k])
    return None


def layer_cores(resources: dict[str, Any], k: int) -> int | None:
    """Cores of layer ``k`` in the plan's resource map."""
    layers = resources.get("layers") or []
    return int(layers[k]["cores"]) if k < len(layers) and "cores" in layers[k] else None
