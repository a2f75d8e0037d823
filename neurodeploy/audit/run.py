"""The hardware robustness audit: attack the float model and the deployed model side by side.

For a model and a hardware profile the audit (stages in :mod:`neurodeploy.audit.flow`)

1. compiles the model (NIR → fixed-point plan) and builds the two **sides**: the float model and
   the **deployed** model — the bit-exact emulator of the plan, with gradients from the
   differentiable hardware twin (BPDA, :mod:`neurodeploy.audit.deployed`). Every example gets
   the host's uniform map (:func:`neurodeploy.encoding.host_uniform`, one seeding rule), so both
   sides and every replay see the spikes the chip is fed;
2. evaluates both **threat models** on both sides:

   - *known draw* — the attacker knows each example's host map (what the chip is fed);
     deterministic: the attack engine's per-example worst case over the cascade
     (:func:`neurodeploy.attacks.engine.evaluate_robustness`, run only on still-robust points,
     every success replayed), k of n robust with a Clopper–Pearson interval;
   - *unknown draw* — each example's adversarial input is *selected* on ``select_draws``
     attack-time draws and *evaluated* on ``draws`` held-out draws no attack saw
     (:mod:`neurodeploy.audit.unknown_draw`); robust accuracy is the mean held-out survival
     rate with an interval over examples × draws (Wilson on the effective sample size).

   The cascade is ``config.attacks``: a preset (``auto``, expanded by
   :func:`neurodeploy.attacks.presets.preset`; ``preset_budget = "demo"`` selects the small
   ``auto-demo`` budget) and/or single attacks. Every evaluation keeps a resumable state file
   under ``OUT/state/<fingerprint>/``: an interrupted audit resumes with identical results;
3. runs the **gradient-masking checks** per (side, threat model, ε) — the unknown draw with EoT
   — so every row of the table is backed by checks that ran on it. When a check fails the
   audit **escalates**, up to ``escalation_rounds`` rounds: both sides are attacked again with
   :func:`~neurodeploy.attacks.presets.escalation` under the failing threat models, the worst
   case absorbs the new successes, and the failing checks are re-run with the next gradient
   of the presets' escalation sweep (:func:`check_gradient`) and twice the iterations;
4. **transfer**: each side's worst case also tries the other side's final adversarial inputs;
5. compares float and deployed **on the same samples** with an equivalence verdict: the
   paired 95 % interval of Δ and a margin δ (``margin``, default 5 points;
   :mod:`neurodeploy.audit.verdict`);
6. replays the clean inputs and the deployed side's adversarial inputs on **Lava** for the first
   ``lava_samples`` examples and reports the emulator ≡ Lava replay agreement (not accuracy);
7. adds certification (plain LIF models), per-layer spike agreement and quantization error,
   TA-LIF threshold traces and the resource map, and writes the
   :class:`~neurodeploy.audit.report.AuditReport` (JSON + Markdown + HTML); with ``exact``
   the exact verifier decides every example per ε and side under the known draw first
   (:mod:`neurodeploy.audit.exact`: certified ≤ exact ≤ attack, the attacks' completeness).
   Verdicts
   (:func:`~neurodeploy.audit.report.verdicts`) say "survived" only when every check ran and
   passed on both sides for that row.
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from neurodeploy.audit.report import AuditReport
from neurodeploy.audit.sharding import AuditShards
from neurodeploy.audit.sides import SIDES, THREAT_MODELS, Sides  # noqa: F401 - re-exported
from neurodeploy.audit.verdict import DEFAULT_MARGIN
from neurodeploy.encoding import host_spikes  # noqa: F401 - re-exported
from neurodeploy.errors import ConfigError
from neurodeploy.models import SpikingNet

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
    ``threat_models``: ``known`` and/or ``unknown``; ``draws``: held-out evaluation draws per
    example under the unknown draw (no attack sees them); ``select_draws``: attack-time draws
    on which each example's adversarial input is selected; ``eot``: EoT draws per gradient
    under the unknown draw; ``margin``: δ of the equivalence verdicts (a fraction, default
    0.05 = 5 points); ``escalation_rounds``: at most this many escalation rounds when a check fails;
    ``lava_samples``: how many samples are replayed on Lava (``None`` = all; 0 = skip Lava);
    ``masking_samples``: samples for the gradient-masking checks;
    ``shard_size``: run the attack evaluations and the Lava replay as shards of this many
    samples (:mod:`neurodeploy.audit.sharding`; ``None``: unsharded). The numbers depend on it,
    not on how many workers run the shards.
    ``exact``: run the exact verifier per ε under the known draw on both sides
    (:mod:`neurodeploy.audit.exact`: certified ≤ exact ≤ attack, the attacks' completeness;
    the exact robust accuracy replaces the attack's upper bound where every example is
    decided); ``exact_timeout``: solver seconds per example (a timeout is "unknown").
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
    select_draws: int = 8
    margin: float = DEFAULT_MARGIN
    exact: bool = False
    exact_timeout: float = 10.0

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
        if self.select_draws < 1:
            raise ConfigError(f"audit select_draws must be >= 1, got {self.select_draws}")
        if not 0 < self.margin < 1:
            raise ConfigError(f"audit margin must be in (0, 1) (a fraction: 0.05 = 5 points), "
                              f"got {self.margin}")
        if self.attack_steps < 1 or self.eot < 1 or self.masking_samples < 1:
            raise ConfigError("audit attack_steps, eot and masking_samples must be >= 1")
        if not isinstance(self.exact, bool):
            raise ConfigError(f"audit exact must be true or false, got {self.exact!r}")
        if (isinstance(self.exact_timeout, bool) or not isinstance(self.exact_timeout, int | float)
                or not 0 < self.exact_timeout < float("inf")):
            raise ConfigError(f"audit exact_timeout must be a number of seconds > 0, got "
                              f"{self.exact_timeout!r}")
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
    spiking classifiers exposing the output membrane; the known draw holds the host maps; the
    bound-guided beam is listed on both sides and acts where an integer plan is (the deployed
    side, :mod:`neurodeploy.verify.beam_attack`)."""
    return {"bernoulli": True, "spiking": True, "membrane": True, "plan": True}


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
        level, base=base if base in BUDGETS else "auto", seed=config.seed,
        known_draw=threat == "known", **_traits(threat))]  # flip searches need the host map


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



# ---------------------------------------------------------------------- the audit


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
    """Run the whole audit (module docstring) and write the report into ``out_dir``.

    The audit is :func:`~neurodeploy.audit.flow.prepare` followed by the named stages of
    :data:`neurodeploy.audit.flow.STAGES` over one :class:`~neurodeploy.audit.flow.AuditRun`;
    :func:`~neurodeploy.audit.flow.finish` renders it. ``workers`` (a local Ray instance) or
    ``address`` (a Ray cluster) run the known draw's shards of ``config.shard_size`` samples
    in parallel (:mod:`neurodeploy.audit.sharding`); the report is the same as the serial one."""
    from neurodeploy.audit import flow

    t_audit = flow.now()
    config, shards = audit_shards(config, workers, address)
    run = flow.prepare(model, x, y, profile, config, Path(out_dir), plan, shards, quiet,
                       model_info)
    for stage in flow.STAGES:
        stage(run)
    return flow.finish(run, t_audit)


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


