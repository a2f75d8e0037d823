"""The hardware robustness audit: attack the float model and the deployed model side by side.

For a model and a hardware profile the audit

1. compiles the model (NIR → fixed-point plan) and builds the backends: the float model, the
   bit-exact emulator, the differentiable hardware twin and (when its environment exists) Lava;
2. generates Bernoulli input spikes **on the host** with a fixed per-example seed
   (:func:`host_spikes`) and feeds the identical spikes to every backend;
3. runs the attack suite: (a) white-box on the float model, (b) white-box on the hardware twin,
   (c) transfer of (a) to the hardware and of (b) to the float model, (d) Square on the exact
   emulator and on the float model (gradient-free). The threat model is symmetric: each side
   is attacked by its own white-box attacks, the other side's adversarial inputs and Square,
   so a drop from float to hardware is not an artefact of attacking one side harder;
4. **replays** every adversarial input found on every backend with the fixed host spikes — a
   point counts as broken on a backend only if the replay fools that backend; Lava replays a
   configurable sample (all of it when small), and the emulator↔Lava replay agreement is
   reported;
5. adds certification (plain LIF models), gradient-masking checks, per-layer spike agreement
   and quantization error, TA-LIF threshold traces and the resource map, and writes the
   :class:`~neurodeploy.audit.report.AuditReport` (JSON + Markdown + HTML).

Attacks on stochastic (Bernoulli-coded) models use EoT over encoder draws while crafting; the
accuracy reported for every backend is the replay accuracy under the fixed host spikes, so all
rows are computed the same way and differ only in the model that classifies.
"""

from __future__ import annotations

import datetime as _dt
import subprocess
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from neurodeploy.audit.report import AccuracyRow, AuditReport, Check, LayerRow, ThresholdTrace
from neurodeploy.classifier import SNNClassifier
from neurodeploy.errors import ConfigError, EnvironmentMissingError
from neurodeploy.models import SpikingNet, library_versions

HOST_SEED_STRIDE = 1_000_003


@dataclass(frozen=True)
class AuditConfig:
    """What to attack, how hard, and on how many samples.

    ``attacks``: white-box attack names of the attack suite run on the float model and on the
    twin; ``square_queries``: query budget of Square on the float model and on the emulator
    (0 disables it);
    ``lava_samples``: how many samples are replayed on Lava (``None`` = all; 0 = skip Lava);
    ``square_samples``: Square runs one example at a time (each query needs that example's
    host spikes), so it may be limited to the first N samples (``None`` = all);
    ``masking_samples``: how many samples the gradient-masking checks use (they run many
    attacks, so they get a subset).
    """

    eps: tuple[float, ...] = (0.05, 0.1)
    attacks: tuple[str, ...] = ("pgd", "apgd-ce")
    attack_steps: int = 20
    eot: int = 4
    square_queries: int = 200
    square_samples: int | None = None
    samples: int = 100
    lava_samples: int | None = 50
    seed: int = 0
    certify: bool = True
    cert_eps: float | None = None
    masking_checks: bool = True
    masking_samples: int = 64
    lava_timeout_s: float = 600.0

    def __post_init__(self) -> None:
        if not self.eps or any(not (0 < e <= 1) for e in self.eps):
            raise ConfigError(f"audit eps must be in (0, 1], got {self.eps}")
        if self.samples < 1:
            raise ConfigError("audit samples must be >= 1")


def git_sha() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                             text=True, timeout=5, cwd=Path(__file__).resolve().parent)
        return out.stdout.strip() or "unknown"
    except Exception:  # noqa: BLE001 - not a git checkout (installed wheel)
        return "unknown"


def host_spikes(x: torch.Tensor, index: torch.Tensor, seed: int, num_steps: int) -> torch.Tensor:
    """Bernoulli spikes ``1[x_i > u_i]`` with ``u_i`` drawn from a generator seeded by
    ``seed·1000003 + index_i``: the same example gets the same uniform map on every backend and
    in every replay, whatever batch it is in. Returns float32 ``[T, B, *shape]`` in {0, 1}."""
    out = torch.empty((num_steps, *x.shape), dtype=torch.float32)
    xc = x.detach().float().cpu()
    for j, i in enumerate(index.tolist()):
        g = torch.Generator().manual_seed(int(seed) * HOST_SEED_STRIDE + int(i))
        u = torch.rand((num_steps, *x.shape[1:]), generator=g)
        out[:, j] = (xc[j].unsqueeze(0) > u).float()
    return out


# ---------------------------------------------------------------------- backends


class Backends:
    """The float model, emulator, twin and (optionally) Lava for one plan, all fed spikes."""

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

    def float_layers(self, spikes: torch.Tensor) -> list[torch.Tensor]:
        with torch.no_grad():
            return [s.cpu() for s in self.model.run(spikes, record=True).spikes]

    def emulator_layers(self, spikes: torch.Tensor) -> list[torch.Tensor]:
        res = self.emulator.run(spikes, record=True)
        return [torch.as_tensor(np.asarray(s)).float() for s in res.layer_spikes]

    def lava_layers(self, spikes: torch.Tensor) -> list[torch.Tensor]:
        from neurodeploy.sims.lava_env import run_lava

        res = run_lava(self.plan, spikes.numpy().astype(np.uint8), timeout_s=self.timeout_s,
                       record_layers=True)
        return [torch.as_tensor(np.asarray(s)).float() for s in res.layer_spikes]

    def logits(self, backend: str, spikes: torch.Tensor) -> torch.Tensor:
        layers = getattr(self, f"{backend}_layers")(spikes)
        return layers[-1].sum(0)


def _correct(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Correct = the true class is the argmax (torch's first-index tie-breaking), the same
    rule the attack engine uses."""
    return logits.argmax(1).cpu() == y.cpu()


def _agreement(a: list[torch.Tensor], b: list[torch.Tensor]) -> list[float]:
    return [float((x == y).float().mean()) for x, y in zip(a, b, strict=True)]


# ---------------------------------------------------------------------- the audit


@dataclass
class _Candidates:
    """Adversarial inputs per (source, eps): ``x`` of shape [N, …]."""

    by_key: dict[tuple[str, float], torch.Tensor] = field(default_factory=dict)


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
) -> AuditReport:
    """Run the whole audit (see module docstring) and write the report into ``out_dir``."""
    from neurodeploy.attacks import make_attack
    from neurodeploy.attacks.base import attack_fields
    from neurodeploy.exporters.compiler import compile_model

    if model.config.encoding == "direct":
        raise ConfigError("the audit needs a spiking input encoding (bernoulli or spikes); "
                          "direct current coding cannot be deployed to the chip")
    out_dir = Path(out_dir)
    n = min(config.samples, len(y))
    x, y = x[:n].float(), y[:n]
    idx = torch.arange(n)
    T = model.config.num_steps
    model = model.eval()
    if plan is None:
        plan = compile_model(model, profile=profile)
    lava_ok = config.lava_samples != 0
    if lava_ok:
        try:
            from neurodeploy.sims.lava_env import find_lava_python

            find_lava_python()
        except EnvironmentMissingError:
            lava_ok = False
    be = Backends(model, plan, lava_ok, config.lava_timeout_s)
    n_lava = n if config.lava_samples is None else min(n, config.lava_samples)
    bar = tqdm(total=5, desc="audit", disable=quiet)

    # --- clean: identical host spikes to every backend
    spikes = host_spikes(x, idx, config.seed, T)
    f_layers, e_layers = be.float_layers(spikes), be.emulator_layers(spikes)
    rows: list[AccuracyRow] = [
        AccuracyRow("float", "clean", 0.0, float(_correct(f_layers[-1].sum(0), y).float().mean()), n),
        AccuracyRow("emulator", "clean", 0.0, float(_correct(e_layers[-1].sum(0), y).float().mean()), n),
    ]
    l_layers = None
    replay: dict[str, Any] = {"lava_samples": n_lava if lava_ok else 0}
    if lava_ok:
        l_layers = be.lava_layers(spikes[:, :n_lava])
        rows.append(AccuracyRow("lava", "clean", 0.0,
                                float(_correct(l_layers[-1].sum(0), y[:n_lava]).float().mean()), n_lava))
        replay["clean_lava_equals_emulator"] = all(
            torch.equal(a[:, :n_lava], b) for a, b in zip(e_layers, l_layers, strict=True))
    bar.update()

    # --- craft adversarial inputs
    float_clf = SNNClassifier(model, seed=config.seed)
    cands = _Candidates()
    attack_cfgs = []
    for name in config.attacks:
        params: dict[str, Any] = {"seed": config.seed}
        if "n_iter" in attack_fields(name):  # single-step attacks have no iterations
            params["n_iter"] = config.attack_steps
        if float_clf.stochastic:
            params["eot_iter"] = config.eot
        attack_cfgs.append({"name": name, **params})
        atk = make_attack(name, **params)
        for eps in config.eps:
            g = torch.Generator().manual_seed(config.seed)
            cands.by_key[(f"float:{name}", eps)] = atk.perturb(float_clf, x, y, eps, generator=g).detach()
            be.twin.reseed(config.seed)
            cands.by_key[(f"twin:{name}", eps)] = atk.perturb(be.twin, x, y, eps,
                                                              generator=g).detach()
    bar.update()
    if config.square_queries > 0:
        # Gradient-free Square on each side's exact forward (the float model and the bit-exact
        # emulator), one example at a time so each query sees that example's host spikes.
        sq = make_attack("square", n_queries=config.square_queries, seed=config.seed)
        for target in ("float", "emulator"):
            n_sq = n if config.square_samples is None else min(n, config.square_samples)
            attack_cfgs.append({"name": "square", "n_queries": config.square_queries,
                                "target": target, "samples": n_sq})
            for eps in config.eps:
                advs = []
                for i in range(n_sq):
                    def fn(xb: torch.Tensor, i: int = i, target: str = target) -> torch.Tensor:
                        sp = host_spikes(xb, torch.full((xb.shape[0],), i), config.seed, T)
                        return be.logits(target, sp)

                    g = torch.Generator().manual_seed(config.seed + i)
                    advs.append(sq.perturb(fn, x[i:i + 1], y[i:i + 1], eps, generator=g).detach())
                advs.append(x[n_sq:])  # samples beyond square_samples: not attacked by Square
                cands.by_key[(f"{target}:square", eps)] = torch.cat(advs)
    bar.update()

    # --- replay every candidate on every backend with the fixed host spikes
    # Symmetric threat model: each side gets its own white-box attacks, the other side's
    # (transfer), and Square on its own exact forward pass.
    sources = {
        "float": [k for k in cands.by_key if k[0] != "emulator:square"],
        "emulator": [k for k in cands.by_key if k[0] != "float:square"],
    }
    correct_after: dict[tuple[str, str, float], torch.Tensor] = {}
    emu_layers: dict[tuple[str, float], list[torch.Tensor]] = {}
    cand_spikes: dict[tuple[str, float], torch.Tensor] = {}
    for (src, eps), xa in cands.by_key.items():
        sp = host_spikes(xa, idx, config.seed, T)
        cand_spikes[(src, eps)] = sp
        correct_after[("float", src, eps)] = _correct(be.logits("float", sp), y)
        emu_layers[(src, eps)] = be.emulator_layers(sp)
        correct_after[("emulator", src, eps)] = _correct(emu_layers[(src, eps)][-1].sum(0), y)
    lava_mismatch = 0
    if lava_ok and cand_spikes:
        # One Lava run for every replay: compile once, all candidates back to back.
        keys = list(cand_spikes)
        big = torch.cat([cand_spikes[k][:, :n_lava] for k in keys], dim=1)
        lav_all = be.lava_layers(big)
        for j, (src, eps) in enumerate(keys):
            lav = [s[:, j * n_lava:(j + 1) * n_lava] for s in lav_all]
            correct_after[("lava", src, eps)] = _correct(lav[-1].sum(0), y[:n_lava])
            lava_mismatch += sum(int((a[:, :n_lava] != b).sum())
                                 for a, b in zip(emu_layers[(src, eps)], lav, strict=True))
    replay["lava_vs_emulator_spike_mismatches"] = lava_mismatch if lava_ok else None
    bar.update()
    backends = ["float", "emulator"] + (["lava"] if lava_ok else [])
    for b in backends:
        m = n_lava if b == "lava" else n
        clean_ok = _correct(
            {"float": f_layers, "emulator": e_layers, "lava": l_layers}[b][-1].sum(0), y[:m])
        for eps in config.eps:
            keys = [k for k in (sources["float"] if b == "float" else sources["emulator"]) if k[1] == eps]
            worst = clean_ok.clone()
            for src, _ in keys:
                ok = correct_after[(b, src, eps)]
                rows.append(AccuracyRow(b, src, eps, float((clean_ok & ok).float().mean()), m))
                worst &= ok
            rows.append(AccuracyRow(b, "worst", eps, float(worst.float().mean()), m))

    # --- certification, masking checks
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
    checks: list[Check] = []
    if config.masking_checks:
        from neurodeploy.attacks.masking import run_masking_checks

        eps0 = max(config.eps)
        for backend, clf in (("float", float_clf), ("twin", be.twin)):
            m = min(n, config.masking_samples)
            results = run_masking_checks(
                clf, x[:m], y[:m], eps0, draws=2 if clf.stochastic else None,
                n_iter=max(50, config.attack_steps),
                square_queries=max(100, config.square_queries),
                eot_iter=config.eot if clf.stochastic else None, seed=config.seed,
                source_classifier=float_clf if backend == "twin" else None)
            for c in results:
                checks.append(Check(c.name, bool(c.passed), c.message, _plain(c.numbers), backend))
    bar.update()
    bar.close()

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
    thresholds = _threshold_traces(model, be, spikes)
    report = AuditReport(
        meta={"created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
              "git_sha": git_sha(), "seed": config.seed, "samples": n,
              "versions": library_versions(), "config": _plain(asdict(config))},
        model={**model.config.to_dict(), **(model_info or {})},
        profile={"name": profile, "display_name": _display(profile)},
        accuracy=rows, certified=certified, layers=layers, thresholds=thresholds,
        checks=checks, resources=_plain(plan.resources), attacks=attack_cfgs, replay=replay,
    )
    report.save(out_dir)
    return report


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


def _plain(o: Any) -> Any:
    if isinstance(o, dict):
        return {str(k): _plain(v) for k, v in o.items()}
    if isinstance(o, (list, tuple)):
        return [_plain(v) for v in o]
    if isinstance(o, torch.Tensor):
        return o.tolist()
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, np.generic):
        return o.item()
    return o


def _threshold_traces(model: SpikingNet, be: Backends, spikes: torch.Tensor) -> list[ThresholdTrace]:
    """Mean θ per step for TA-LIF layers, float vs fixed point (θ_int / (scale·2⁶))."""
    if model.config.neuron != "talif":
        return []
    with torch.no_grad():
        tr = model.run(spikes, record=True)
    res = be.emulator.run(spikes, record=True)
    fixed = getattr(res, "layer_theta", None) or []
    out = []
    for k, L in enumerate(be.plan.layers):
        if L.neuron != "talif" or k >= len(fixed) or fixed[k] is None:
            continue
        f = tr.thetas[k].flatten(2).mean(dim=(1, 2)).tolist()
        q = (torch.as_tensor(np.asarray(fixed[k])).double()
             / be.plan.fixed_point.v_per_float(L.scale))
        out.append(ThresholdTrace(L.name, f, q.flatten(2).mean(dim=(1, 2)).tolist()))
    return out
