"""Robustness evaluation: per-example worst case over a list of attacks, per ε, resumable.

For each draw d (stochastic models: independent evaluations with their own seeds) and each ε:

1. clean pass: ``robust ← predict(f(x)) == y``;
2. for each attack a in order, on the points still robust only, **from the clean x** (as in
   AutoAttack): ``x_a = a.perturb(f, x[robust], y[robust], ε)``; the threat model is checked
   (ε-ball / ℓ0 budget, domain) and the result is **replayed**: ``f(x_a)`` is evaluated
   again and only points whose replay is misclassified become non-robust (their x_a is kept
   as the adversarial example and ``broken_by`` records the attack);
3. ``robust accuracy(ε) = mean(robust)``; the per-attack cumulative accuracy is logged after
   every attack.

Closest approach: for every point the engine keeps the best CW margin ``max_{j≠y} z_j − z_y``
(logit units) of the clean input and of every image an attack returned for it (its replay).
An attack that asks for it (``wants_margins``; the ``auto`` preset's near-flip searches) gets
the margins of its rows (``with_margins``), so it can spend its restarts where an earlier
step came near a flip.

So a point is reported robust only if every attack failed on it, and a point is reported
broken only if a replay of the stored adversarial example is misclassified (tested: replaying
``result.adversarial[ε]`` reproduces ``result.broken_by[ε]`` exactly for deterministic models).

Seeds: every step (clean pass or attack, per draw and ε) gets its own seed derived from
``seed``; a classifier with ``reseed`` is reseeded before the step and the attack gets a
generator with that seed. Each step is therefore a pure function of (inputs, seed, step), so
a resumed run gives the same numbers as an uninterrupted one.

Stochastic models (``classifier.stochastic``): each draw is one AutoAttack-style evaluation
(the decision uses one forward pass, as the deployed model would); the reported robust
accuracy is the mean over ``draws`` with a 95 % t-interval. Attacks use EoT with
``eot_iter`` draws per gradient.

State (``state_path``): after every step the state (flags, adversarial examples, finished
steps, a fingerprint of the configuration and inputs) is written atomically with torch.save;
a run with the same configuration resumes from it, a different configuration is refused.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from neurodeploy.attacks.base import (
    Attack,
    ball_violation,
    batch_dim,
    check_inputs,
    input_domain,
    is_correct,
    is_stochastic,
    make_attack,
    margin_loss,
    select_rows,
    to_logits,
    validate_eps,
)
from neurodeploy.errors import ConfigError, DataError

STATE_FORMAT = "neurodeploy-robustness-state"
STATE_VERSION = 2  # 2: the closest approach per point ("margin")
VIOLATION_TOL = 1e-5  # float32 rounding of x ± ε


@dataclass
class RobustnessResult:
    """Result of :func:`evaluate_robustness` (``to_dict`` gives the JSON record).

    ``robust[ε]`` is a bool tensor ``[draws, N]``; ``adversarial[ε]`` is ``x``-shaped (the
    clean x where no attack succeeded in any draw; otherwise the adversarial example of the
    first draw that broke the point) and ``broken_by[ε][i]`` the attack name or None.
    """

    clean_accuracy: list[float]
    eps_list: list[float]
    attack_names: list[str]
    attack_configs: list[dict[str, Any]]
    robust_accuracy: dict[float, list[float]]
    cumulative: dict[float, dict[str, list[float]]]
    robust: dict[float, torch.Tensor]
    adversarial: dict[float, torch.Tensor]
    broken_by: dict[float, list[str | None]]
    seeds: dict[str, Any]
    draws: int
    stochastic: bool
    n_examples: int
    domain: str
    eot_iter: int | None
    seconds: dict[str, float] = field(default_factory=dict)

    @staticmethod
    def _summary(values: list[float]) -> dict[str, Any]:
        n = len(values)
        mean = sum(values) / n
        out: dict[str, Any] = {"mean": mean, "per_draw": values, "ci95": None}
        if n >= 2:
            sd = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))
            half = _t975(n - 1) * sd / math.sqrt(n)
            out["ci95"] = [mean - half, mean + half]
            out["std"] = sd
        return out

    def robust_mean(self, eps: float) -> float:
        v = self.robust_accuracy[float(eps)]
        return sum(v) / len(v)

    def to_dict(self) -> dict[str, Any]:
        per_eps = []
        for e in self.eps_list:
            per_eps.append({
                "eps": e,
                "robust_accuracy": self._summary(self.robust_accuracy[e]),
                "after_attack": {a: self._summary(v) for a, v in self.cumulative[e].items()},
                "robust_flags": self.robust[e].to(torch.int8).tolist(),
                "broken_by": self.broken_by[e],
                "broken_by_counts": {
                    a: sum(1 for b in self.broken_by[e] if b == a) for a in self.attack_names
                },
            })
        return {
            "format": "neurodeploy-robustness",
            "version": 1,
            "decision_rule": "argmax, ties to the lowest class index",
            "n_examples": self.n_examples,
            "domain": self.domain,
            "stochastic": self.stochastic,
            "draws": self.draws,
            "eot_iter": self.eot_iter,
            "clean_accuracy": self._summary(self.clean_accuracy),
            "attacks": self.attack_configs,
            "seeds": self.seeds,
            "per_eps": per_eps,
            "seconds": self.seconds,
        }


def _t975(dof: int) -> float:
    try:
        from scipy.stats import t

        return float(t.ppf(0.975, dof))
    except Exception:  # pragma: no cover - scipy ships with scikit-learn
        return 1.96


def step_seed(seed: int, *parts: Any) -> int:
    """Deterministic 63-bit seed for a step (independent of Python's hash randomisation)."""
    h = hashlib.sha256(json.dumps([int(seed), *map(str, parts)]).encode()).digest()
    return int.from_bytes(h[:8], "little") & ((1 << 63) - 1)


def _build_attacks(attacks: list[Any], eot_iter: int | None) -> list[Attack]:
    out = []
    for a in attacks:
        if isinstance(a, (tuple, list)) and len(a) in (2, 3) and isinstance(a[0], str):
            params = dict(a[1] or {})
            built = make_attack(a[0], **params)
            if len(a) == 3:  # (name, params, label): several configurations of one attack
                built.label_override = str(a[2])
            out.append(built)
        elif isinstance(a, str):
            out.append(make_attack(a))
        elif hasattr(a, "perturb"):
            out.append(a)
        else:
            raise ConfigError(f"attack entry {a!r} is neither an Attack nor (name, params)")
    if eot_iter is not None:
        fixed = []
        for a in out:
            cfg = getattr(a, "config", None)
            if (
                isinstance(a, Attack)
                and dataclasses.is_dataclass(cfg)
                and any(f.name == "eot_iter" for f in dataclasses.fields(cfg))
                and cfg.eot_iter is None
            ):
                new = make_attack(a.name, **{**dataclasses.asdict(cfg), "eot_iter": int(eot_iter)})
                if getattr(a, "label_override", None):
                    new.label_override = a.label_override
                fixed.append(new)
            else:
                fixed.append(a)
        out = fixed
    names = [getattr(a, "label", a.name) for a in out]
    if len(set(names)) != len(names):
        raise ConfigError(f"attack list has duplicate names {names}; each attack must appear once")
    return out


def _fingerprint(x: torch.Tensor, y: torch.Tensor, cfg: dict[str, Any]) -> str:
    h = hashlib.sha256()
    h.update(x.detach().cpu().contiguous().numpy().tobytes())
    h.update(y.detach().cpu().contiguous().numpy().tobytes())
    h.update(json.dumps(cfg, sort_keys=True, default=str).encode())
    return h.hexdigest()


def _reseed(classifier: Any, s: int) -> None:
    if hasattr(classifier, "reseed"):
        classifier.reseed(s)


def _forward(classifier: Any, x: torch.Tensor, bd: int, batch_size: int | None) -> torch.Tensor:
    """Logits of ``x`` in chunks; a classifier bound to examples is bound to each chunk."""
    n = x.shape[bd]
    bs = batch_size or n
    outs = []
    with torch.no_grad():
        for s in range(0, n, bs):
            m = min(bs, n - s)
            xb = x.narrow(bd, s, m)
            clf = classifier if m == n else select_rows(classifier, torch.arange(s, s + m))
            outs.append(to_logits(clf(xb), x.device))
    return torch.cat(outs)


def _atomic_save(obj: Any, path: Path) -> None:
    from neurodeploy.models import atomic_torch_save

    atomic_torch_save(obj, path)


def _load_state(spath: Path, fp: str, fresh: dict[str, Any],
                adv_shape: tuple[int, ...]) -> dict[str, Any]:
    """The resumable state in ``spath``, read as data only (:func:`neurodeploy.safeload.
    load_torch`: a pickle payload is refused, nothing runs); a state of another evaluation
    (fingerprint ``fp``) or with entries of the wrong kind or shape raises (exit 2)."""
    from neurodeploy.safeload import load_torch

    loaded = load_torch(spath, "robustness state file", DataError)
    if not isinstance(loaded, dict) or loaded.get("format") != STATE_FORMAT:
        raise DataError(f"{spath}: not a robustness state file")
    if loaded.get("version") != STATE_VERSION:
        raise DataError(f"{spath}: robustness state of version {loaded.get('version')!r}, this "
                        f"version of neurodeploy writes {STATE_VERSION}; delete it to start over")
    if loaded.get("fingerprint") != fp:
        raise ConfigError(
            f"{spath}: saved state belongs to a different evaluation (inputs, attacks, ε, "
            f"seed or draws differ); delete it or choose another state path"
        )
    if set(loaded) != set(fresh) or not all(isinstance(loaded[k], type(v))
                                            for k, v in fresh.items()):
        raise DataError(f"{spath}: robustness state with missing or unexpected entries")
    if not all(isinstance(t, list | tuple) and len(t) == 3
               and all(isinstance(i, int) for i in t) for t in loaded["done"]):
        raise DataError(f"{spath}: robustness state with a malformed list of finished steps")
    n = adv_shape[0]
    for key, robust in loaded["robust"].items():
        adv, marg = loaded["adv"].get(key), loaded["margin"].get(key)
        if not (isinstance(robust, torch.Tensor) and robust.dtype == torch.bool
                and tuple(robust.shape) == (n,) and isinstance(adv, torch.Tensor)
                and tuple(adv.shape) == adv_shape and len(loaded["broken_by"].get(key, ())) == n
                and isinstance(marg, torch.Tensor) and tuple(marg.shape) == (n,)):
            raise DataError(f"{spath}: robustness state entry {key!r} does not fit {n} examples")
    return loaded


@dataclass
class _Run:
    """What the stages of one :func:`evaluate_robustness` call share: its checked inputs."""

    classifier: Any
    x: torch.Tensor
    y: torch.Tensor  # long, on x's device
    xb: torch.Tensor  # x with the batch dim first
    bd: int
    domain: str
    seed: int
    draws: int
    batch_size: int | None
    eps_values: list[float]
    atk: list[Attack]
    names: list[str]
    stochastic: bool

    @property
    def n(self) -> int:
        return int(self.y.shape[0])


def evaluate_robustness(
    classifier: Any,
    x: torch.Tensor,
    y: torch.Tensor,
    attacks: list[Any],
    eps_list: list[float],
    seed: int = 0,
    draws: int = 1,
    state_path: str | os.PathLike | None = None,
    quiet: bool = False,
    batch_size: int | None = None,
    eot_iter: int | None = None,
) -> RobustnessResult:
    """Worst-case robust accuracy over ``attacks`` for every ε (module docstring).

    Parameters
    ----------
    classifier : callable ``x → logits`` (``SNNClassifier``, a twin, an emulator wrapper…).
    x, y : inputs (batch dim from the classifier: 0 for images, 1 for time-first spikes) and
        labels ``[N]``.
    attacks : ``Attack`` objects or ``(name, params)`` pairs, run in this order.
    eps_list : budgets (ℓ∞/ℓ2 radius in [0, 1] for images; integer flips for spikes).
    seed : base seed of every step.
    draws : independent evaluations (> 1 only makes sense for stochastic models).
    state_path : resume file (torch format); written after every step.
    quiet : no progress bar (also ``NEURODEPLOY_QUIET=1``).
    batch_size : attack / forward batch size (default: all points at once).
    eot_iter : EoT draws for attacks whose config leaves ``eot_iter`` unset.
    """
    t_start = time.perf_counter()
    domain = input_domain(classifier)
    bd = batch_dim(classifier)
    check_inputs(x, y, domain, bd)
    eps_values = _checked_settings(draws, batch_size, eps_list, domain)
    atk = _attack_list(attacks, classifier, seed, eot_iter)
    names = [getattr(a, "label", a.name) for a in atk]
    configs = [a.to_dict() for a in atk]
    y = y.to(x.device).long()
    run = _Run(classifier, x, y, x.movedim(bd, 0) if bd else x, bd, domain, seed, draws,
               batch_size, eps_values, atk, names, is_stochastic(classifier))
    spath = Path(state_path) if state_path is not None else None
    state = _open_state(run, configs, spath)
    timings = _run_steps(run, state, spath, quiet)
    return _result(run, state, configs, eot_iter, t_start, timings)


def _checked_settings(draws: Any, batch_size: int | None, eps_list: list[float],
                      domain: str) -> list[float]:
    """The validated ε values; a bad ``draws``, ``batch_size`` or ``eps_list`` raises (exit 2)."""
    if not isinstance(draws, int) or draws < 1:
        raise ConfigError(f"draws must be an integer >= 1, got {draws!r}")
    if batch_size is not None and batch_size < 1:
        raise ConfigError(f"batch_size must be >= 1, got {batch_size}")
    eps_values = [validate_eps(e, domain) for e in eps_list]
    if not eps_values:
        raise ConfigError("eps_list is empty")
    if len(set(eps_values)) != len(eps_values):
        raise ConfigError(f"eps_list has duplicates: {eps_values}")
    return eps_values


def _attack_list(attacks: list[Any], classifier: Any, seed: int,
                 eot_iter: int | None) -> list[Attack]:
    """The attacks to run, in order: presets expanded, specs built, ``eot_iter`` filled in."""
    from neurodeploy.attacks.presets import expand

    atk = _build_attacks(expand(list(attacks), classifier, seed), eot_iter)
    if not atk:
        raise ConfigError("no attacks given")
    return atk


def _open_state(run: _Run, configs: list[dict[str, Any]], spath: Path | None) -> dict[str, Any]:
    """A fresh state, or the one saved in ``spath`` by the same evaluation (same fingerprint)."""
    run_cfg = {"attacks": configs, "eps": run.eps_values, "seed": int(run.seed), "draws": run.draws,
               "batch_size": run.batch_size, "domain": run.domain, "batch_dim": run.bd}
    fp = _fingerprint(run.x, run.y, run_cfg)
    state: dict[str, Any] = {
        "format": STATE_FORMAT, "version": STATE_VERSION, "fingerprint": fp, "done": [],
        "clean": {}, "robust": {}, "cumulative": {}, "adv": {}, "broken_by": {}, "margin": {},
    }
    if spath is not None and spath.is_file():
        state = _load_state(spath, fp, state, tuple(run.xb.shape))
    return state


def _run_steps(run: _Run, state: dict[str, Any], spath: Path | None,
               quiet: bool) -> dict[str, float]:
    """Every step not in ``state["done"]``, in order (per draw, per ε: the clean pass, then
    each attack), saving the state after each; returns the seconds spent per attack."""
    from neurodeploy.runtime import progress_disabled

    steps = [(d, e, a) for d in range(run.draws) for e in range(len(run.eps_values))
             for a in range(-1, len(run.atk))]
    done = {tuple(s) for s in state["done"]}
    bar = tqdm(total=len(steps), desc="robustness", disable=progress_disabled(quiet), initial=len(done))
    timings: dict[str, float] = {n: 0.0 for n in run.names}
    for d, ei, ai in steps:
        if (d, ei, ai) in done:
            continue
        if ai == -1:
            _clean_step(run, state, d, f"{d}/{ei}")
        else:
            timings[run.names[ai]] += _attack_step(run, state, d, ei, ai)
        state["done"].append((d, ei, ai))
        done.add((d, ei, ai))
        if spath is not None:
            _atomic_save(state, spath)
        bar.update(1)
    bar.close()
    return timings


def _clean_step(run: _Run, state: dict[str, Any], d: int, key: str) -> None:
    """Clean pass of draw ``d`` for the ε of ``key``: the flags, margins and images to start from."""
    # clean pass of (draw, ε): same seed for every ε of a draw → same clean flags
    _reseed(run.classifier, step_seed(run.seed, "clean", d))
    z = _forward(run.classifier, run.x, run.bd, run.batch_size)
    corr = is_correct(z, run.y).cpu()
    state["clean"][d] = float(corr.float().mean())
    state["robust"][key] = corr.clone()
    state["cumulative"][key] = {}
    state["adv"][key] = run.xb.detach().cpu().clone()
    state["broken_by"][key] = [None] * run.n
    state["margin"][key] = margin_loss(z, run.y).detach().float().cpu()


def _attack_step(run: _Run, state: dict[str, Any], d: int, ei: int, ai: int) -> float:
    """Attack ``ai`` on the points of (draw ``d``, ε ``ei``) still robust, in batches; records
    the cumulative robust accuracy after it and returns the seconds the attack took."""
    key, name = f"{d}/{ei}", run.names[ai]
    robust = state["robust"][key]
    idx = robust.nonzero()[:, 0]
    t0 = time.perf_counter()
    if idx.numel() > 0:
        s = step_seed(run.seed, "attack", d, ei, ai)
        bs = run.batch_size or idx.numel()
        for b0 in range(0, idx.numel(), bs):
            _attack_batch(run.atk[ai], name, run.classifier, run.x, run.y, idx[b0:b0 + bs],
                          run.eps_values[ei], (run.seed, d, ei, ai, b0, s), state, key,
                          run.domain, run.bd)
    seconds = time.perf_counter() - t0
    state["cumulative"][key][name] = float(robust.float().mean())
    return seconds


def _result(run: _Run, state: dict[str, Any], configs: list[dict[str, Any]],
            eot_iter: int | None, t_start: float, timings: dict[str, float]) -> RobustnessResult:
    """The result of the finished steps in ``state``, per ε over the draws."""
    robust_acc: dict[float, list[float]] = {}
    cumulative: dict[float, dict[str, list[float]]] = {}
    robust_flags: dict[float, torch.Tensor] = {}
    adversarial: dict[float, torch.Tensor] = {}
    broken_by: dict[float, list[str | None]] = {}
    for ei, e in enumerate(run.eps_values):
        flags = torch.stack([state["robust"][f"{d}/{ei}"] for d in range(run.draws)])
        robust_flags[e] = flags
        robust_acc[e] = [float(f.float().mean()) for f in flags]
        cumulative[e] = {n: [state["cumulative"][f"{d}/{ei}"][n] for d in range(run.draws)]
                         for n in run.names}
        adversarial[e], broken_by[e] = _first_breaks(run, state, ei)
    return RobustnessResult(
        clean_accuracy=[state["clean"][d] for d in range(run.draws)],
        eps_list=run.eps_values,
        attack_names=run.names,
        attack_configs=configs,
        robust_accuracy=robust_acc,
        cumulative=cumulative,
        robust=robust_flags,
        adversarial=adversarial,
        broken_by=broken_by,
        seeds={"seed": int(run.seed), "rule": "sha256([seed, step...]) per clean/attack/replay step"},
        draws=run.draws,
        stochastic=run.stochastic,
        n_examples=run.n,
        domain=run.domain,
        eot_iter=eot_iter,
        seconds={"total_this_session": time.perf_counter() - t_start, **timings},
    )


def _first_breaks(run: _Run, state: dict[str, Any],
                  ei: int) -> tuple[torch.Tensor, list[str | None]]:
    """Adversarial images (``x``-shaped) and ``broken_by`` of ε ``ei`` over the draws."""
    adv = run.xb.detach().cpu().clone()
    who: list[str | None] = [None] * run.n
    for d in reversed(range(run.draws)):  # the first draw that broke a point wins
        bb = state["broken_by"][f"{d}/{ei}"]
        sel = [i for i in range(run.n) if bb[i] is not None]
        if sel:
            adv[sel] = state["adv"][f"{d}/{ei}"][sel]
            for i in sel:
                who[i] = bb[i]
    return (adv.movedim(0, run.bd) if run.bd else adv).to(run.x.device), who


def _attack_batch(a: Attack, name: str, classifier: Any, x: torch.Tensor, y: torch.Tensor,
                  sub: torch.Tensor, eps: float, seeds: tuple[int, ...], state: dict[str, Any],
                  key: str, domain: str, bd: int) -> None:
    """Attack ``a`` on rows ``sub`` (module docstring, step 2): perturb, check the threat model,
    replay; the replayed misclassifications become non-robust (their images and ``name``
    kept) and every row's closest approach is updated."""
    seed, d, ei, ai, b0, s = seeds
    subd = sub.to(x.device)
    x_sub = x.index_select(bd, subd)
    y_sub = y[subd]
    _reseed(classifier, step_seed(seed, "attack-model", d, ei, ai, b0))
    gen = torch.Generator()
    gen.manual_seed(step_seed(s, b0))
    clf_sub = select_rows(classifier, sub)  # known maps follow their rows
    a_sub = a.select(sub) if hasattr(a, "select") else a  # transfer sources too
    if getattr(a_sub, "wants_margins", False):
        a_sub = a_sub.with_margins(state["margin"][key][sub])
    x_adv = a_sub.perturb(clf_sub, x_sub, y_sub, eps, gen)
    if tuple(x_adv.shape) != tuple(x_sub.shape):
        raise DataError(f"attack {name} returned shape {tuple(x_adv.shape)}, "
                        f"expected {tuple(x_sub.shape)}")
    xa_b = x_adv.movedim(bd, 0) if bd else x_adv
    xs_b = x_sub.movedim(bd, 0) if bd else x_sub
    norm = getattr(getattr(a, "config", None), "norm", "linf")
    viol = ball_violation(xa_b, xs_b, eps, domain, norm)
    if viol > VIOLATION_TOL:
        raise DataError(f"attack {name} left the threat model at ε={eps} "
                        f"(violation {viol:.3g}); this is a bug in the attack")
    # replay: only what the classifier misclassifies now counts
    _reseed(classifier, step_seed(seed, "replay", d, ei, ai, b0))
    zr = _forward(clf_sub, x_adv, bd, None)
    fooled = (~is_correct(zr, y_sub)).cpu()
    marg = state["margin"][key]
    marg[sub] = torch.maximum(marg[sub], margin_loss(zr, y_sub).detach().float().cpu())
    hit = sub[fooled]
    state["robust"][key][hit] = False
    state["adv"][key][hit] = xa_b[fooled.to(xa_b.device)].detach().cpu()
    for i in hit.tolist():
        state["broken_by"][key][i] = name


def format_table(result: RobustnessResult) -> str:
    """Plain-text table: rows ε, columns clean and cumulative robust accuracy after each attack."""
    def cell(v: list[float]) -> str:
        m = sum(v) / len(v)
        if len(v) >= 2:
            s = RobustnessResult._summary(v)
            return f"{100 * m:6.2f}±{100 * (s['ci95'][1] - m):.2f}"
        return f"{100 * m:6.2f}"

    head = ["eps", "clean"] + result.attack_names + ["robust"]
    rows = []
    for e in result.eps_list:
        rows.append([f"{e:g}", cell(result.clean_accuracy)]
                    + [cell(result.cumulative[e][n]) for n in result.attack_names]
                    + [cell(result.robust_accuracy[e])])
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(head)]
    lines = ["  ".join(h.rjust(w) for h, w in zip(head, widths, strict=True))]
    lines += ["  ".join(c.rjust(w) for c, w in zip(r, widths, strict=True)) for r in rows]
    lines.append("accuracy in % (cumulative: after that attack and all before it)")
    return "\n".join(lines)
