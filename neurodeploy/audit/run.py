"""The hardware robustness audit: attack the float model and the deployed model side by side.

For a model and a hardware profile the audit

1. compiles the model (NIR → fixed-point plan) and builds the two **sides**: the float model and
   the **deployed** model — the bit-exact emulator of the plan, with gradients from the
   differentiable hardware twin (BPDA, :mod:`neurodeploy.audit.deployed`). Every example gets
   the host's uniform map (:func:`neurodeploy.encoding.host_uniform`, one seeding rule), so both
   sides and every replay see the spikes the chip is fed;
2. evaluates both **threat models** on both sides with the attack engine
   (:func:`neurodeploy.attacks.engine.evaluate_robustness`: per-example worst case over the
   attack cascade, run only on still-robust points, every success replayed):

   - *known draw* — the attacker knows each example's host map (what the chip is fed);
     deterministic, so one evaluation; the known-draw attacks (spike-set search) apply;
   - *unknown draw* — fresh Bernoulli draws at evaluation, EoT over draws while crafting;
     ``draws`` (≥ 5) independent evaluations, mean with a 95 % t-interval.

   The cascade is ``config.attacks``: a preset (``auto``, expanded by
   :func:`neurodeploy.attacks.presets.preset`; ``preset_budget = "demo"`` selects the small
   ``auto-demo`` budget) and/or single attacks. Each (side, threat model) evaluation keeps a
   resumable state file under ``OUT/state/<fingerprint>/``: an interrupted audit resumes with
   identical results;
3. runs the **gradient-masking checks** on both sides (known draw). When a check fails on a
   side, the audit **escalates** by itself, up to ``escalation_rounds`` rounds: both sides are
   attacked again with :func:`~neurodeploy.attacks.presets.escalation` (stronger specs: other
   surrogates, more iterations and restarts; both sides, so the comparison stays symmetric), the
   per-example worst case absorbs the new successes, and the failing side's checks are re-run
   with the next gradient of the presets' escalation sweep (:func:`check_gradient`) and twice
   the iterations. Every round is
   recorded in the report;
4. compares float and deployed **on the same samples**: exact McNemar test and a seeded paired
   bootstrap interval of Δ accuracy (:mod:`neurodeploy.audit.stats`);
5. replays the clean inputs and the deployed side's adversarial inputs on **Lava** for the first
   ``lava_samples`` examples and reports the emulator ≡ Lava replay agreement (not accuracy);
6. adds certification (plain LIF models), per-layer spike agreement and quantization error,
   TA-LIF threshold traces and the resource map, and writes the
   :class:`~neurodeploy.audit.report.AuditReport` (JSON + Markdown + HTML). Verdicts
   (:func:`~neurodeploy.audit.report.verdicts`) say "survived" only when every check passed on
   both sides.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os
import subprocess
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from neurodeploy.audit.report import (
    AccuracyRow,
    AuditReport,
    Check,
    LayerRow,
    ThresholdTrace,
    checks_summary,
)
from neurodeploy.audit.sharding import AuditShards
from neurodeploy.classifier import SNNClassifier
from neurodeploy.encoding import (  # noqa: F401 - host_spikes re-exported
    HOST_SEED_STRIDE,
    BernoulliEncoder,
    KnownDrawEncoder,
    host_spikes,
    host_uniform,
)
from neurodeploy.errors import ConfigError, EnvironmentMissingError
from neurodeploy.jsonable import jsonable as _plain
from neurodeploy.models import SpikingNet, library_versions

SIDES = ("float", "deployed")
THREAT_MODELS = {"known": "known draw", "unknown": "unknown draw"}
PRESETS = ("auto", "auto-demo")
BUDGETS = ("full", "demo")
MAX_ESCALATION_ROUNDS = 5

#: test hook: called with a stage name after every finished stage (see tests/test_audit_run.py)
_STAGE_HOOK: Callable[[str], None] | None = None


@dataclass(frozen=True)
class AuditConfig:
    """What to attack, how hard, and on how many samples.

    ``attacks``: preset names (``auto``; ``auto-demo``), single configurations of a preset
    (``auto-demo:apgd-ce``: the preset's spec with that label) and/or single attack names, run
    as one cascade; ``unknown_attacks``: the cascade under the unknown draw when it should differ
    (empty: ``attacks``; each evaluation there costs ``draws × eot`` times the known draw's);
    ``preset_budget``: ``full`` or ``demo`` (``auto`` then means ``auto-demo``);
    ``attack_steps``: iterations of single gradient attacks; ``square_queries``: queries of a
    single ``square`` attack and of the masking checks' Square;
    ``threat_models``: ``known`` and/or ``unknown``; ``draws``: independent evaluations under
    the unknown draw (≥ 5 for the interval); ``eot``: EoT draws per gradient under the unknown
    draw; ``escalation_rounds``: at most this many escalation rounds when a check fails;
    ``lava_samples``: how many samples are replayed on Lava (``None`` = all; 0 = skip Lava);
    ``masking_samples``: samples for the gradient-masking checks;
    ``shard_size``: run the attack evaluations and the Lava replay as shards of this many
    samples (:mod:`neurodeploy.audit.sharding`; ``None``: unsharded). The numbers depend on it,
    not on how many workers run the shards.
    """

    eps: tuple[float, ...] = (0.05, 0.1)
    attacks: tuple[str, ...] = ("auto",)
    unknown_attacks: tuple[str, ...] = ()
    preset_budget: str = "full"
    attack_steps: int = 20
    eot: int = 4
    draws: int = 5
    threat_models: tuple[str, ...] = ("known", "unknown")
    square_queries: int = 200
    samples: int = 100
    lava_samples: int | None = 50
    seed: int = 0
    certify: bool = True
    cert_eps: float | None = None
    masking_checks: bool = True
    masking_samples: int = 64
    escalation_rounds: int = 2
    lava_timeout_s: float = 600.0
    shard_size: int | None = None

    def __post_init__(self) -> None:
        if not self.eps or any(not (0 < e <= 1) for e in self.eps):
            raise ConfigError(f"audit eps must be in (0, 1], got {self.eps}")
        if self.samples < 1:
            raise ConfigError("audit samples must be >= 1")
        if not self.attacks:
            raise ConfigError("audit attacks is empty (default: ['auto'])")
        if self.preset_budget not in BUDGETS:
            raise ConfigError(f"audit preset_budget must be one of {BUDGETS}, got "
                              f"{self.preset_budget!r}")
        bad = [t for t in self.threat_models if t not in THREAT_MODELS]
        if bad or not self.threat_models:
            raise ConfigError(f"audit threat_models must be a non-empty subset of "
                              f"{sorted(THREAT_MODELS)}, got {list(self.threat_models)}")
        if "unknown" in self.threat_models and self.draws < 2:
            raise ConfigError("audit draws must be >= 2 for the unknown-draw interval (use 5+)")
        if not 0 <= self.escalation_rounds <= MAX_ESCALATION_ROUNDS:
            raise ConfigError(f"audit escalation_rounds must be in [0, {MAX_ESCALATION_ROUNDS}], "
                              f"got {self.escalation_rounds}")
        if self.attack_steps < 1 or self.eot < 1 or self.masking_samples < 1:
            raise ConfigError("audit attack_steps, eot and masking_samples must be >= 1")
        if self.shard_size is not None and (isinstance(self.shard_size, bool)
                                            or int(self.shard_size) < 1):
            raise ConfigError(f"audit shard_size must be an integer >= 1, got {self.shard_size!r}")


def git_sha() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                             text=True, timeout=5, cwd=Path(__file__).resolve().parent)
        return out.stdout.strip() or "unknown"
    except Exception:  # noqa: BLE001 - not a git checkout (installed wheel)
        return "unknown"


# ---------------------------------------------------------------------- attack specs

Spec = tuple[str, dict[str, Any], str]


def _traits(threat: str) -> dict[str, Any]:
    """Preset traits, the same for both sides (so both get the same cascade): Bernoulli-coded
    spiking classifiers exposing the output membrane; the known draw holds the host maps."""
    return {"bernoulli": True, "spiking": True, "membrane": True}


def preset_name(config: AuditConfig, name: str) -> str:
    return "auto-demo" if (name == "auto" and config.preset_budget == "demo") else name


def attack_specs(config: AuditConfig, stochastic: bool, threat: str = "known"
                 ) -> tuple[list[Spec], str]:
    """The cascade of ``config.attacks`` as ``(attack, params, label)`` specs, and its label.

    Preset names expand through :func:`neurodeploy.attacks.presets.preset` (the known draw adds
    the spike-set search); single attacks get ``attack_steps`` iterations (gradient attacks) or
    ``square_queries`` queries (Square)."""
    from neurodeploy.attacks.base import attack_fields
    from neurodeploy.attacks.presets import preset

    specs: list[Spec] = []
    labels: list[str] = []
    names = config.attacks
    if threat == "unknown" and config.unknown_attacks:
        names = config.unknown_attacks
    for a in names:
        head, _, sel = a.partition(":")
        if head in PRESETS:
            name = preset_name(config, head)
            got = [(n, dict(p), lab) for n, p, lab in preset(
                name, eps_kind="box", stochastic=stochastic, known_draw=threat == "known",
                seed=config.seed, **_traits(threat))]
            if sel:  # one configuration of the preset, by its label
                pick = [g for g in got if g[2] == sel]
                if not pick:
                    raise ConfigError(f"attack {a!r}: preset {name!r} has no configuration "
                                      f"{sel!r}; its labels: {[g[2] for g in got]}")
                got = pick
                name = f"{name}:{sel}"
            specs += got
            labels.append(name)
        else:
            fields = attack_fields(a)  # raises ConfigError for an unknown name
            params: dict[str, Any] = {}
            if "n_iter" in fields:
                params["n_iter"] = config.attack_steps
            if "n_queries" in fields:
                params["n_queries"] = config.square_queries
            specs.append((a, params, a))
            labels.append(a)
    return specs, "+".join(labels)


def escalation_specs(config: AuditConfig, level: int, threat: str) -> list[Spec]:
    """Stronger specs for escalation round ``level`` (:func:`neurodeploy.attacks.presets.escalation`)."""
    from neurodeploy.attacks.presets import BUDGETS, escalation

    base = next((preset_name(config, a) for a in config.attacks if a in PRESETS), "auto")
    return [(n, dict(p), lab) for n, p, lab in escalation(
        level, base=base if base in BUDGETS else "auto", seed=config.seed, **_traits(threat))]


def check_gradient(config: AuditConfig, level: int) -> dict[str, Any]:
    """The gradient the masking checks test in round ``level``: round 0 the one the evaluation
    relied on (the preset's main APGD gradient; the model's own surrogate for single attacks),
    round r ≥ 1 the r-th configuration of the presets' escalation sweep (other surrogates)."""
    from neurodeploy.attacks.presets import ESCALATION_SWEEP, MAIN

    if level == 0:
        if any(a in PRESETS for a in config.attacks):
            return dict(MAIN)
        return {"grad_mode": "bptt"}
    _, grad, ig, lo = ESCALATION_SWEEP[(level - 1) % len(ESCALATION_SWEEP)]
    return {"grad_mode": grad, "input_grad": ig, "loss_on": lo}


def deployed_specs(specs: list[Spec]) -> tuple[list[Any], list[str]]:
    """The specs as the deployed classifier runs them: the spike-set search on the emulator with
    the twin's gradient; BPTR/RGA (defined on the float neurons) left out and listed."""
    from neurodeploy.audit.deployed import TWIN_GRAD_MODES, deployed_spike_set

    keep: list[Any] = []
    dropped: list[str] = []
    for n, p, lab in specs:
        mode = str(p.get("grad_mode", "bptt")).split(":")[0]
        if mode not in TWIN_GRAD_MODES:
            dropped.append(f"{lab} ({p.get('grad_mode')}: not defined on the twin)")
        elif n == "spike-set":
            keep.append(deployed_spike_set(p, lab))
        else:
            keep.append((n, p, lab))
    return keep, dropped


def nir_float_specs(specs: list[Spec]) -> tuple[list[Spec], list[str]]:
    """The specs as a NIR model's float side runs them (:mod:`neurodeploy.audit.nir_model`):
    BPTR/RGA (defined on SpikingNet neurons) left out and listed; the fused LIF kernels (for
    SpikingNets) off."""
    keep: list[Spec] = []
    dropped: list[str] = []
    for n, p, lab in specs:
        mode = str(p.get("grad_mode", "bptt")).split(":")[0]
        if mode != "bptt":
            dropped.append(f"{lab} ({p.get('grad_mode')}: not defined on the NIR interpreter)")
        else:
            keep.append((n, {**p, "fused": False} if n == "spike-set" else p, lab))
    return keep, dropped


def _spec_record(specs: list[Any]) -> list[Any]:
    out = []
    for sp in specs:
        if hasattr(sp, "to_dict"):
            d = sp.to_dict()
            out.append([d.get("attack", d["name"]), _plain(d["config"]), d["name"]])
        else:
            out.append(_plain(list(sp)))
    return out


# ---------------------------------------------------------------------- backends


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


def _correct(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Correct = the true class is the argmax (torch's first-index tie-breaking), the same
    rule the attack engine uses."""
    return logits.argmax(1).cpu() == y.cpu()


def _agreement(a: list[torch.Tensor], b: list[torch.Tensor]) -> list[float]:
    return [float((x == y).float().mean()) for x, y in zip(a, b, strict=True)]


def _fingerprint(model: SpikingNet, plan: Any, config: AuditConfig, x: torch.Tensor,
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


def _now() -> tuple[float, float]:
    return time.perf_counter(), time.process_time()


def _since(t0: tuple[float, float]) -> tuple[float, float]:
    """(wall, CPU) seconds since ``t0``: the CPU time of this process (all its threads) is what
    a stage would take on a quiet machine at one core, whatever the load while it ran."""
    return time.perf_counter() - t0[0], time.process_time() - t0[1]


def _stage_done(name: str) -> None:
    if _STAGE_HOOK is not None:
        _STAGE_HOOK(name)


# ---------------------------------------------------------------------- the audit


@dataclass
class _Eval:
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


def _engine(clf: Any, x: torch.Tensor, y: torch.Tensor, specs: list[tuple[str, dict]],
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


def run_audit(
    model: SpikingNet,
    x: torch.Tensor,
    y: torch.Tensor,
    profile: str,
    config: AuditConfig,
    out_dir: str | Path,
    model_info: dict[str, Any] | None = None,
    quiet: bool = False,
    plan: Any = None,
    workers: int | None = None,
    address: str | None = None,
) -> AuditReport:
    """Run the whole audit (see module docstring) and write the report into ``out_dir``.

    ``workers`` (a local Ray instance) or ``address`` (a Ray cluster) run the shards of
    ``config.shard_size`` samples (default :data:`~neurodeploy.scale.DEFAULT_SHARD_SIZE`) in
    parallel (:mod:`neurodeploy.audit.sharding`); the report is the same as the serial one."""
    from neurodeploy.exporters.compiler import compile_model

    t_audit = _now()
    config, shards = audit_shards(config, workers, address)
    stage_seconds: dict[str, tuple[float, float]] = {}
    if model.config.encoding != "bernoulli":
        raise ConfigError(f"the audit needs Bernoulli-coded image inputs (the host encodes them "
                          f"for the chip); the model's encoding is {model.config.encoding!r}")
    out_dir = Path(out_dir)
    if not isinstance(model, SpikingNet):  # a NIR graph's interpreter: images in its Input shape
        x = model.fit_images(x)
    n = min(config.samples, len(y))
    x, y = x[:n].float().cpu(), y[:n].long().cpu()
    idx = torch.arange(n)
    T = model.config.num_steps
    model = model.eval()
    if plan is None:
        if not isinstance(model, SpikingNet):
            raise ConfigError("a NIR model is audited with its plan: load both with "
                              "neurodeploy.audit.nir_model.load_nir_model")
        plan = compile_model(model, profile=profile)
    lava_ok = config.lava_samples != 0
    lava_skipped: str | None = None  # why Lava was asked for but not run (said in the report)
    if lava_ok:
        try:
            from neurodeploy.sims.lava_env import find_lava_python

            find_lava_python()
        except EnvironmentMissingError as exc:
            lava_ok, lava_skipped = False, str(exc)
    sides = Sides(model, plan, lava_ok, config.lava_timeout_s)
    sides.shards = shards
    n_lava = n if config.lava_samples is None else min(n, config.lava_samples)
    fp = _fingerprint(model, plan, config, x, y)
    state_dir = out_dir / "state" / fp
    state_dir.mkdir(parents=True, exist_ok=True)
    sides.state_dir = state_dir
    u = host_uniform(idx, config.seed, T, tuple(x.shape[1:]))

    # --- clean: identical host spikes to every backend
    t0 = _now()
    spikes = (x.unsqueeze(0) > u).float()
    f_layers, e_layers = sides.float_layers(spikes), sides.emulator_layers(spikes)
    clean_ok = {"float": _correct(f_layers[-1].sum(0), y),
                "deployed": _correct(e_layers[-1].sum(0), y)}
    stage_seconds["clean"] = _since(t0)

    # --- robustness: the engine per (side, threat model)
    evals: dict[tuple[str, str], _Eval] = {}
    attack_seconds: dict[str, Any] = {}
    specs_used: dict[str, Any] = {}
    budget_labels: dict[str, str] = {}
    for threat in config.threat_models:
        for side in SIDES:
            t0 = _now()
            clf = sides.classifier(side, threat, u, config.seed)
            stoch = bool(clf.stochastic)
            specs, budget_labels[threat] = attack_specs(config, stoch, threat)
            dropped: list[str] = []
            if side == "deployed":
                specs, dropped = deployed_specs(specs)
            elif not isinstance(model, SpikingNet):  # a NIR graph's interpreter
                specs, dropped = nir_float_specs(specs)
            draws = config.draws if stoch else 1
            res, rec = _engine(clf, x, y, specs, list(config.eps), config.seed, draws,
                               config.eot if stoch else None,
                               state_dir / f"{side}_{threat}.pt", quiet, shards)
            ev = _Eval(flags={e: res.robust[e].cpu().clone() for e in res.eps_list},
                       adversarial={e: res.adversarial[e].cpu().clone() for e in res.eps_list},
                       clean=list(res.clean_accuracy), records=[], draws=draws)
            ev.records.append({"round": 0, "not_applicable": dropped, **rec["record"]})
            attack_seconds[f"{side}/{threat}"] = _plain(rec["seconds"])
            evals[(side, threat)] = ev
            specs_used[f"{side}/{threat}"] = {"attacks": _spec_record(specs), "draws": draws,
                                              "eot_iter": config.eot if stoch else None,
                                              "not_applicable": dropped}
            stage_seconds[f"attack {side}/{THREAT_MODELS[threat]}"] = _since(t0)
            _stage_done(f"{side}/{threat}")

    # --- gradient-masking checks (known draw: what the chip is fed), escalation
    checks: list[Check] = []
    escalation: list[dict[str, Any]] = []
    if config.masking_checks:
        t0 = _now()
        m = min(n, config.masking_samples)
        latest: dict[str, list[Check]] = {}
        for side in SIDES:
            latest[side] = _masking(sides, side, u, x, y, m, config, 0, state_dir)
        stage_seconds["masking checks"] = _since(t0)
        _stage_done("checks/0")
        for level in range(1, config.escalation_rounds + 1):
            failing = [s for s in SIDES if any(not c.passed for c in latest[s])]
            if not failing:
                break
            t0 = _now()
            rnd: dict[str, Any] = {
                "round": level, "trigger": {s: [c.name for c in latest[s] if not c.passed]
                                            for s in failing},
                "check_gradient": check_gradient(config, level),
                "check_iterations": _check_iters(config, level), "robust_accuracy": {},
            }
            for threat in config.threat_models:
                for side in SIDES:
                    ev = evals[(side, threat)]
                    clf = sides.classifier(side, threat, u, config.seed)
                    stoch = bool(clf.stochastic)
                    specs = escalation_specs(config, level, threat)
                    dropped = []
                    if side == "deployed":
                        specs, dropped = deployed_specs(specs)
                    elif not isinstance(model, SpikingNet):
                        specs, dropped = nir_float_specs(specs)
                    before = {e: float(ev.flags[e].float().mean()) for e in ev.flags}
                    rows = ev.still_robust()
                    if specs and rows.numel():
                        res, rec = _engine(clf.select(rows), x[rows], y[rows], specs,
                                           list(config.eps), config.seed + 7919 * level,
                                           ev.draws, config.eot if stoch else None,
                                           state_dir / f"{side}_{threat}_esc{level}.pt", quiet,
                                           shards)
                        ev.absorb(res, rows, {"round": level, "rows": rows.tolist(),
                                              "not_applicable": dropped, **rec["record"]})
                    after = {e: float(ev.flags[e].float().mean()) for e in ev.flags}
                    rnd["robust_accuracy"][f"{side}/{threat}"] = {
                        "attacks": _spec_record(specs), "not_applicable": dropped,
                        "before": _plain(before), "after": _plain(after)}
            for side in failing:
                latest[side] = _masking(sides, side, u, x, y, m, config, level, state_dir)
            rnd["checks_after"] = {s: [asdict(c) for c in latest[s]] for s in failing}
            escalation.append(rnd)
            stage_seconds[f"escalation round {level}"] = _since(t0)
            _stage_done(f"checks/{level}")
        for side in SIDES:
            checks += latest[side]

    # --- Lava: replay agreement with the emulator (clean + the deployed side's adversarials)
    t0 = _now()
    replay: dict[str, Any] = {"lava_samples": n_lava if lava_ok else 0}
    if lava_skipped is not None:
        replay["lava_skipped"] = lava_skipped
    l_layers = None
    if lava_ok:
        known = evals.get(("deployed", "known"))
        batches = [("clean", spikes[:, :n_lava])]
        if known is not None:
            for e in config.eps:
                xa = known.adversarial[float(e)][:n_lava]
                batches.append((f"eps={e:g}", (xa.unsqueeze(0) > u[:, :n_lava]).float()))
        big = torch.cat([b for _, b in batches], dim=1)
        lav_all = sides.lava_layers(big)
        emu_all = sides.emulator_layers(big)
        agree_per = torch.ones(big.shape[1], dtype=torch.bool)
        mism = 0
        for a, b in zip(emu_all, lav_all, strict=True):
            diff = (a != b).flatten(2).transpose(0, 1).flatten(1)
            agree_per &= ~diff.any(1)
            mism += int(diff.sum())
        l_layers = [s[:, :n_lava] for s in lav_all]
        per_batch = {}
        for j, (name, _) in enumerate(batches):
            sl = agree_per[j * n_lava:(j + 1) * n_lava]
            per_batch[name] = {"agree": int(sl.sum()), "replays": int(sl.numel())}
        replay.update({
            "replays": int(agree_per.numel()), "agree": int(agree_per.sum()),
            "lava_vs_emulator_spike_mismatches": mism, "per_input": per_batch,
            "what": "clean inputs and the deployed side's known-draw adversarial inputs of "
                    "the first lava_samples examples, host spikes, all layers compared",
        })
    else:
        replay["lava_vs_emulator_spike_mismatches"] = None
    stage_seconds["lava replay"] = _since(t0)

    # --- certification
    t0 = _now()
    certified: dict[str, Any] = {}
    if config.certify and model.config.neuron == "lif":
        from neurodeploy.bounds.certify import certify

        ceps = config.cert_eps if config.cert_eps is not None else min(config.eps)
        best = None
        for method in ("ibp", "crown"):
            res = certify(model, x, y, ceps, method=method, seed=config.seed)
            err = 1.0 - float(res.verified.float().mean())
            certified[f"{method}_verified_error"] = err
            best = err if best is None else min(best, err)
        certified.update({"eps": ceps, "verified_error": best, "method": "best of S-IBP, S-CROWN"})
    stage_seconds["certify"] = _since(t0)

    # --- deployed certificate (integer S-IBP on the plan, float bounds on the same host-map
    # boxes) and efficiency / chip cost on clean and worst-case inputs (issue 15)
    from neurodeploy.efficiency import audit_blocks

    ceps_d = None
    if config.certify:
        ceps_d = config.cert_eps if config.cert_eps is not None else min(config.eps)
    e_adv = max(config.eps) if config.eps else None
    ev_d = evals.get(("deployed", "known"))
    adv = ev_d.adversarial.get(float(e_adv)) if ev_d is not None and e_adv is not None else None
    # a NIR interpreter has no SpikingNet layers: deployed certificate and chip metrics only
    net = model if isinstance(model, SpikingNet) else None
    dep_cert, efficiency = audit_blocks(net, plan, x, y, idx, config.seed, ceps_d,
                                        adversarial=adv, profile=profile)
    if dep_cert:
        certified["deployed"] = dep_cert["deployed"]
        certified["deployed_verdict"] = dep_cert["verdict"]
        certified["deployed_threat_model"] = dep_cert["threat_model"]
        certified.setdefault("eps", dep_cert["eps"])
        if "float" in dep_cert:
            certified["float_known_draw"] = dep_cert["float"]
    if adv is not None:
        efficiency["adversarial_eps"] = float(e_adv)

    # --- rows and paired comparisons (every number on the same n samples)
    from neurodeploy.audit.stats import paired_change

    summary = checks_summary(checks) if config.masking_checks else {}
    rows: list[AccuracyRow] = []
    comparisons: list[dict[str, Any]] = []
    for side in SIDES:
        rows.append(AccuracyRow(side, "clean", 0.0, float(clean_ok[side].float().mean()), n,
                                threat_model="known draw", preset="–", checks="–"))
    ch = paired_change(clean_ok["float"], clean_ok["deployed"], seed=config.seed)
    comparisons.append({"threat_model": "known draw", "eps": 0.0, **ch.to_dict(),
                        "words": ch.words})
    for threat in config.threat_models:
        tm = THREAT_MODELS[threat]
        for e in config.eps:
            e = float(e)
            per = {}
            for side in SIDES:
                ev = evals[(side, threat)]
                fl = ev.flags[e].float()
                per_draw = fl.mean(1).tolist()
                from neurodeploy.audit.stats import t_interval

                mean, ci = t_interval(per_draw)
                state = summary.get(side)
                # a failed (or missing) check on either side makes every robust accuracy an
                # upper bound: the verdicts say so too
                upper = any(s not in summary or not summary[s]["passed"] for s in SIDES)
                rows.append(AccuracyRow(
                    side, "worst", e, mean, n, ci95=list(ci) if ci else None,
                    threat_model=tm, preset=budget_labels[threat], draws=ev.draws,
                    checks=state["words"] if state else "not run", upper_bound=upper))
                per[side] = fl.mean(0)  # per-example robust fraction over draws
            ch = paired_change(per["float"], per["deployed"], seed=config.seed)
            comparisons.append({"threat_model": tm, "eps": e, **ch.to_dict(), "words": ch.words})
    _stage_done("rows")

    # --- per-layer fidelity, thresholds, resources
    quant = plan.quantization or {}
    layers = []
    ag_e = _agreement(f_layers, e_layers)
    ag_l = _agreement([s[:, :n_lava] for s in f_layers], l_layers) if l_layers else None
    for k, L in enumerate(plan.layers):
        q = quant.get(L.name, {}) if isinstance(quant, dict) else {}
        layers.append(LayerRow(
            L.name, L.out_size, ag_e[k], ag_l[k] if ag_l else None,
            float(f_layers[k].mean()), float(e_layers[k].mean()),
            _first(q, ("weight_max_abs_err_rel",)), _first(q, ("threshold_err_rel",)),
            cores=_cores(plan.resources, k),
        ))
    thresholds = _threshold_traces(model, sides, spikes)
    stage_seconds["total"] = _since(t_audit)
    load = os.getloadavg() if hasattr(os, "getloadavg") else None
    report = AuditReport(
        meta={"created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
              "git_sha": git_sha(), "seed": config.seed, "samples": n,
              "versions": library_versions(), "config": _plain(asdict(config)),
              "budget": _budget_words(budget_labels), "state_dir": str(state_dir),
              "escalation_budget": (
                  f"at most {config.escalation_rounds} round(s), only while a check fails; round "
                  f"r re-attacks both sides with presets.escalation(r) (2^r × the iterations, "
                  f"more restarts, other surrogates) and re-runs the failing side's checks with "
                  f"2^r × {max(50, config.attack_steps)} iterations and the r-th escalation "
                  f"gradient"),
              "stage_seconds": {k: round(v[0], 2) for k, v in stage_seconds.items()},
              "stage_cpu_seconds": {k: round(v[1], 2) for k, v in stage_seconds.items()},
              "attack_seconds": attack_seconds,
              "load_average": list(load) if load else None,
              "threat_models": [THREAT_MODELS[t] for t in config.threat_models],
              "sharding": shards.record() if shards is not None else None},
        model={**model.config.to_dict(), **(model_info or {})},
        profile={"name": profile, "display_name": _display(profile)},
        accuracy=rows, certified=certified, layers=layers, thresholds=thresholds,
        checks=checks, resources=_plain(plan.resources), attacks=[specs_used], replay=replay,
        comparisons=comparisons, escalation=escalation,
        efficiency=_plain(efficiency),
        robustness=_plain({f"{s}/{t}": ev.records for (s, t), ev in evals.items()}),
    )
    report.save(out_dir)
    return report


def audit_shards(config: AuditConfig, workers: int | None, address: str | None
                 ) -> tuple[AuditConfig, AuditShards | None]:
    """The config with its shard size (the default one when workers or a cluster were given
    without it) and where the shards run; ``None`` for the unsharded audit."""
    from dataclasses import replace

    from neurodeploy.scale import DEFAULT_SHARD_SIZE

    if workers is not None and address is not None:
        raise ConfigError("give workers (a local Ray instance) or a Ray address, not both")
    if workers is not None and workers < 1:
        raise ConfigError(f"workers must be >= 1, got {workers}")
    if config.shard_size is None and workers is None and address is None:
        return config, None
    if config.shard_size is None:
        config = replace(config, shard_size=DEFAULT_SHARD_SIZE)
    return config, AuditShards(int(config.shard_size), workers, address)


def _budget_words(labels: dict[str, str]) -> str:
    if len(set(labels.values())) <= 1:
        return next(iter(labels.values()), "")
    return "; ".join(f"{THREAT_MODELS[t]}: {v}" for t, v in labels.items())


def _check_iters(config: AuditConfig, level: int) -> int:
    return max(50, config.attack_steps) * 2**level


def _masking(sides: Sides, side: str, u: torch.Tensor, x: torch.Tensor, y: torch.Tensor,
             m: int, config: AuditConfig, level: int, state_dir: Path) -> list[Check]:
    """The checks of one side on the first ``m`` samples (known draw) at escalation ``level``;
    cached in the state folder so a resumed audit does not run them twice."""
    from neurodeploy.attacks.masking import run_masking_checks
    from neurodeploy.training.metrics import write_text_atomic

    cache = state_dir / f"checks_{side}_{level}.json"
    if cache.is_file():
        return [Check(**c) for c in json.loads(cache.read_text())]
    rows = torch.arange(m)
    clf = sides.classifier(side, "known", u, config.seed).select(rows)
    src = sides.classifier("float", "known", u, config.seed).select(rows) \
        if side == "deployed" else None
    grad = check_gradient(config, level)
    results = run_masking_checks(
        clf, x[:m], y[:m], max(config.eps), n_iter=_check_iters(config, level),
        square_queries=max(100, config.square_queries) * 2**level, seed=config.seed + level,
        attack_params=grad, source_classifier=src)
    mode = ", ".join(f"{k}={v}" for k, v in grad.items())
    out = [Check(c.name, bool(c.passed), c.message, _plain(c.numbers), side, round=level,
                 grad_mode=mode) for c in results]
    write_text_atomic(cache, json.dumps([asdict(c) for c in out]))
    return out


def _first(d: dict[str, Any], keys: tuple[str, ...]) -> float | None:
    for k in keys:
        if k in d and d[k] is not None:
            return float(d[k])
    return None


def _cores(resources: dict[str, Any], k: int) -> int | None:
    layers = resources.get("layers") or []
    return int(layers[k]["cores"]) if k < len(layers) and "cores" in layers[k] else None


def _display(profile: str) -> str:
    return {"loihi2": "Loihi 2", "loihi1": "Loihi 1"}.get(profile, profile)


def _threshold_traces(model: SpikingNet, sides: Sides, spikes: torch.Tensor) -> list[ThresholdTrace]:
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
