"""Attack protocol, input domains, the decision rule, losses and the attack registry.

Every attack maps ``(classifier, x, y, ε) → x_adv`` with ``x_adv`` the same shape as ``x`` and
inside the threat model of the classifier's input domain:

- ``box``    images/currents with values in [0, 1]; ℓ∞ (or ℓ2) ball of radius ε, clipped to
             the box: ``‖x_adv − x‖_p ≤ ε`` and ``0 ≤ x_adv ≤ 1``.
- ``binary`` spike/event tensors with values in {0, 1}; ℓ0 budget ε = number of flipped
             entries per sample: ``Σ 1[x_adv ≠ x] ≤ ε`` and ``x_adv ∈ {0, 1}``.

The domain and the batch dimension come from the classifier: ``classifier.input_domain`` /
``classifier.batch_dim`` when set, otherwise ``binary`` and batch dim 1 (time-first
``[T, B, …]``) when ``classifier.is_spike_input`` is true, ``box`` and batch dim 0 otherwise.
Internally every attack works batch-first (``x.movedim(batch_dim, 0)``).

**Decision rule (one convention everywhere: attacks, engine, replay).** The prediction is
``torch.argmax(logits, 1)``, i.e. ties (common with spike-count logits) go to the *lowest*
class index, as in training and ``evaluate``. A point is correct iff prediction == y; an attack
succeeds iff the prediction differs from y. See :func:`predict`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F

from neurodeploy.errors import ConfigError, DataError
from neurodeploy.registry import Registry

DOMAINS = ("box", "binary")
NORMS = ("linf", "l2")

# --------------------------------------------------------------------------- decision rule


def predict(logits: torch.Tensor) -> torch.Tensor:
    """Predicted class: ``argmax_j z_j`` with ties going to the lowest index (torch's rule)."""
    return logits.argmax(1)


def is_correct(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """``predict(logits) == y`` (bool ``[B]``)."""
    return predict(logits) == y


# --------------------------------------------------------------------------- domains / shapes


def input_domain(classifier: Any) -> str:
    """``"box"`` or ``"binary"`` (see module docstring)."""
    dom = getattr(classifier, "input_domain", None)
    if dom is None:
        dom = "binary" if getattr(classifier, "is_spike_input", False) else "box"
    if dom not in DOMAINS:
        raise ConfigError(f"classifier.input_domain must be one of {DOMAINS}, got {dom!r}")
    return dom


def batch_dim(classifier: Any) -> int:
    """Index of the batch dimension of the classifier's input (1 for time-first spikes)."""
    bd = getattr(classifier, "batch_dim", None)
    if bd is None:
        bd = 1 if getattr(classifier, "is_spike_input", False) else 0
    return int(bd)


def is_stochastic(classifier: Any) -> bool:
    return bool(getattr(classifier, "stochastic", False))


def validate_eps(eps: float, domain: str) -> float:
    """Check ε against the domain: [0, 1] for ``box``; a non-negative integer for ``binary``."""
    try:
        e = float(eps)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"epsilon {eps!r} is not a number") from exc
    if not math.isfinite(e):
        raise ConfigError(f"epsilon must be finite, got {eps!r}")
    if domain == "box":
        if not 0.0 <= e <= 1.0:
            raise ConfigError(
                f"epsilon {e} is outside the input domain: image inputs live in [0, 1], so ε must "
                f"be in [0, 1]"
            )
        return e
    if e < 0 or e != int(e):
        raise ConfigError(
            f"epsilon {eps!r} is not a valid ℓ0 budget: spike inputs take a non-negative integer "
            f"number of flipped entries per sample"
        )
    return float(int(e))


def to_logits(out: Any, device: torch.device) -> torch.Tensor:
    """Accept torch tensors and array-likes (numpy emulators) as logits ``[B, classes]``."""
    if not torch.is_tensor(out):
        out = torch.as_tensor(np.asarray(out))
    out = out.to(device)
    if not out.is_floating_point():
        out = out.float()
    if out.dim() != 2:
        raise DataError(f"classifier must return logits [B, classes], got shape {tuple(out.shape)}")
    return out


def select_rows(classifier: Any, idx: torch.Tensor) -> Any:
    """``classifier`` bound to rows ``idx`` when it is bound to examples (it has ``select``,
    e.g. known-draw maps); otherwise the classifier itself."""
    sel = getattr(classifier, "select", None)
    return classifier if sel is None else sel(idx)


class BatchFirst:
    """View a classifier with batch dim ``bd`` as a batch-first callable ``xb → logits``.

    Attacks that work on a subset of their batch call ``f.rows(idx)(x[idx])``: for a
    classifier bound to examples (:func:`select_rows`) that evaluates each row with its own
    example's encoding; for any other classifier ``rows`` is the identity."""

    def __init__(self, classifier: Any, bd: int) -> None:
        self.classifier = classifier
        self.bd = bd

    @property
    def stochastic(self) -> bool:
        return is_stochastic(self.classifier)

    def rows(self, idx: torch.Tensor) -> BatchFirst:
        if getattr(self.classifier, "select", None) is None:
            return self
        return BatchFirst(self.classifier.select(idx), self.bd)

    def __call__(self, xb: torch.Tensor) -> torch.Tensor:
        x = xb.movedim(0, self.bd) if self.bd else xb
        out = self.classifier(x)
        z = to_logits(out, xb.device)
        aux = getattr(out, AUX_LOGITS, None)
        if aux is not None and z is not out:
            setattr(z, AUX_LOGITS, aux.to(xb.device))
        return z


def check_inputs(x: torch.Tensor, y: torch.Tensor, domain: str, bd: int) -> None:
    if not torch.is_tensor(x) or not torch.is_tensor(y):
        raise DataError("x and y must be torch tensors")
    if x.dim() <= bd:
        raise DataError(f"x has shape {tuple(x.shape)}, no batch dimension {bd}")
    if y.dim() != 1 or y.shape[0] != x.shape[bd]:
        raise DataError(
            f"labels must be [B] with B = x.shape[{bd}] = {x.shape[bd]}, got {tuple(y.shape)}"
        )
    if not torch.isfinite(x).all():
        raise DataError("x contains NaN or inf")
    if domain == "box" and (x.min() < 0 or x.max() > 1):
        raise DataError(f"x has values in [{x.min().item():.4g}, {x.max().item():.4g}], not in [0, 1]")
    if domain == "binary" and ((x != 0) & (x != 1)).any():
        raise DataError("spike input x must contain only 0 and 1")


# --------------------------------------------------------------------------- randomness


def make_attack_generator(seed: int) -> torch.Generator:
    """CPU generator for an attack's own randomness (starts, windows, flips)."""
    g = torch.Generator()
    g.manual_seed(int(seed))
    return g


def rand(shape: tuple[int, ...] | torch.Size, gen: torch.Generator, like: torch.Tensor) -> torch.Tensor:
    """U(0, 1) of ``shape`` from ``gen`` (on the generator's device), moved to ``like``'s device."""
    return torch.rand(tuple(shape), generator=gen, device=gen.device).to(like.device, like.dtype)


def randn(shape: tuple[int, ...] | torch.Size, gen: torch.Generator, like: torch.Tensor) -> torch.Tensor:
    return torch.randn(tuple(shape), generator=gen, device=gen.device).to(like.device, like.dtype)


# --------------------------------------------------------------------------- losses
# Per-example losses l(z, y) ``[B]`` that the attacker *maximises*.


def ce_loss(z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Cross-entropy ``−log softmax(z)_y``."""
    return F.cross_entropy(z, y, reduction="none")


def margin_loss(z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """CW margin ``max_{j≠y} z_j − z_y`` (> 0 ⇔ misclassified up to ties)."""
    zy = z.gather(1, y[:, None])[:, 0]
    other = z.masked_fill(F.one_hot(y, z.shape[1]).bool(), float("-inf")).amax(1)
    return other - zy


def dlr_loss(z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """AutoAttack's DLR: ``−(z_y − max_{i≠y} z_i) / (z_π1 − z_π3 + 1e−12)``.

    With spike-count logits the denominator is often 0 (ties); the 1e−12 then scales the loss
    by 1e12. Sign-based ℓ∞ steps are scale-free, so this is kept exactly as in AutoAttack; the
    step-size schedule only compares losses of the same example.
    """
    zs, _ = z.sort(1)
    return margin_loss(z, y) / (zs[:, -1] - zs[:, -3] + 1e-12)


def dlr_targeted_loss(z: torch.Tensor, y: torch.Tensor, y_target: torch.Tensor) -> torch.Tensor:
    """Targeted DLR: ``−(z_y − z_t) / (z_π1 − (z_π3 + z_π4)/2 + 1e−12)``."""
    zs, _ = z.sort(1)
    zy = z.gather(1, y[:, None])[:, 0]
    zt = z.gather(1, y_target[:, None])[:, 0]
    return -(zy - zt) / (zs[:, -1] - 0.5 * (zs[:, -3] + zs[:, -4]) + 1e-12)


LOSSES: dict[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = {
    "ce": ce_loss,
    "dlr": dlr_loss,
    "margin": margin_loss,
}

#: which logits a loss is taken on: the readout (which decides) or the output membrane
LOSS_ON = ("readout", "membrane")
AUX_LOGITS = "nd_membrane_logits"  # = neurodeploy.classifier.AUX_LOGITS (kept torch-only here)


def membrane_logits(z: torch.Tensor) -> torch.Tensor:
    """The output layer's mean membrane carried by ``z`` (classifier view ``aux_logits``)."""
    aux = getattr(z, AUX_LOGITS, None)
    if aux is None:
        raise ConfigError("loss_on='membrane' needs a classifier that exposes its output membrane "
                          "(an SNNClassifier); this one returns plain logits")
    return aux


def loss_on(fn: Callable[..., torch.Tensor], where: str) -> Callable[..., torch.Tensor]:
    """``fn`` applied to the readout logits (``"readout"``) or to the membrane logits."""
    if where == "readout":
        return fn

    def on_membrane(z: torch.Tensor, y: torch.Tensor, *args: Any) -> torch.Tensor:
        return fn(membrane_logits(z), y, *args)

    return on_membrane

MIN_CLASSES = {"ce": 2, "margin": 2, "dlr": 3, "dlr-targeted": 4}


def check_num_classes(loss: str, n_classes: int) -> None:
    need = MIN_CLASSES.get(loss, 2)
    if n_classes < need:
        raise ConfigError(f"loss {loss!r} needs at least {need} classes, the classifier has {n_classes}")


# --------------------------------------------------------------------------- configs


def validate_common(cfg: Any) -> None:
    """Range checks shared by the attack configs (fields that exist are checked)."""
    for name in ("n_iter", "n_restarts", "n_queries", "n_target_classes", "n_samples"):
        v = getattr(cfg, name, None)
        if v is not None and (not isinstance(v, int) or isinstance(v, bool) or v < 1):
            raise ConfigError(f"{type(cfg).__name__}.{name} must be an integer >= 1, got {v!r}")
    eot = getattr(cfg, "eot_iter", None)
    if eot is not None and (not isinstance(eot, int) or isinstance(eot, bool) or eot < 1):
        raise ConfigError(f"{type(cfg).__name__}.eot_iter must be None or an integer >= 1, got {eot!r}")
    loss = getattr(cfg, "loss", None)
    if loss is not None and loss not in LOSSES:
        raise ConfigError(f"{type(cfg).__name__}.loss {loss!r}; choose one of {sorted(LOSSES)}")
    norm = getattr(cfg, "norm", None)
    if norm is not None and norm not in NORMS:
        raise ConfigError(f"{type(cfg).__name__}.norm {norm!r}; choose one of {NORMS}")
    step = getattr(cfg, "step_size", None)
    if step is not None and not (isinstance(step, (int, float)) and step > 0):
        raise ConfigError(f"{type(cfg).__name__}.step_size must be None or > 0, got {step!r}")
    lo = getattr(cfg, "loss_on", None)
    if lo is not None and lo not in LOSS_ON:
        raise ConfigError(f"{type(cfg).__name__}.loss_on {lo!r}; choose one of {LOSS_ON}")
    ig = getattr(cfg, "input_grad", None)
    if ig is not None:
        from neurodeploy.encoding import parse_input_grad

        parse_input_grad(ig)
    fused = getattr(cfg, "fused", None)
    if fused is not None and not isinstance(fused, bool):
        raise ConfigError(f"{type(cfg).__name__}.fused must be true or false, got {fused!r}")
    gm = getattr(cfg, "grad_mode", None)
    if gm is not None:
        from neurodeploy.attacks.grad_modes import parse_mode

        parse_mode(gm)


@dataclass(frozen=True)
class GradientConfig:
    """Fields every gradient attack shares; subclasses add their own (all keyword-only use)."""

    norm: str = "linf"
    eot_iter: int | None = None
    grad_mode: str = "bptt"
    seed: int = 0
    #: backward of the Bernoulli encoder: ``ste`` or ``sigmoid:k`` (smooth threshold surrogate
    #: around the map; :func:`neurodeploy.encoding.parse_input_grad`)
    input_grad: str = "ste"
    #: the attack loss is taken on the ``readout`` logits or on the output ``membrane``
    #: (success is always judged on the readout)
    loss_on: str = "readout"
    #: use the fused LIF input-gradient path when the classifier is eligible (same logits,
    #: same gradient rule; :mod:`neurodeploy.attacks.fastsnn`); False = autograd through the
    #: model's modules
    fused: bool = True

    def __post_init__(self) -> None:
        validate_common(self)


DEFAULT_EOT_STOCHASTIC = 10


def resolve_eot(eot_iter: int | None, classifier: Any) -> int:
    """EoT draws per gradient: the config's value, else 1 (deterministic) or
    :data:`DEFAULT_EOT_STOCHASTIC` (``classifier.stochastic``)."""
    if eot_iter is not None:
        return int(eot_iter)
    return DEFAULT_EOT_STOCHASTIC if is_stochastic(classifier) else 1


# --------------------------------------------------------------------------- attack base


class Attack:
    """Base class. Subclasses set ``name``, ``config_cls``, ``domains`` and implement ``_run``.

    ``perturb`` handles validation, the batch-first view, the gradient mode and a final
    projection onto the threat model (a safety net: the result is guaranteed in the ball and
    the domain).
    """

    name: ClassVar[str] = "attack"
    config_cls: ClassVar[type] = object
    domains: ClassVar[tuple[str, ...]] = ("box",)
    uses_gradients: ClassVar[bool] = True

    def __init__(self, config: Any = None) -> None:
        if config is None:
            config = self.config_cls()
        if not isinstance(config, self.config_cls):
            raise ConfigError(f"{self.name}: config must be a {self.config_cls.__name__}")
        self.config = config

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.config})"

    #: a label that tells several configurations of one attack apart (the ``auto`` preset)
    label_override: str | None = None

    @property
    def label(self) -> str:
        return self.label_override or self.name

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.label, "attack": self.name, "config": dataclasses.asdict(self.config)}


    def perturb(
        self,
        classifier: Any,
        x: torch.Tensor,
        y: torch.Tensor,
        eps: float,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """Return ``x_adv`` (same shape as ``x``) inside the ε-ball / ℓ0 budget and the domain."""
        domain = input_domain(classifier)
        if domain not in self.domains:
            alt = "spike-g2s, spike-topk or square" if domain == "binary" else "fgsm, pgd, apgd-ce…"
            raise ConfigError(
                f"attack {self.name!r} works on {'/'.join(self.domains)} inputs, the classifier "
                f"takes {domain} inputs (use {alt})"
            )
        e = validate_eps(eps, domain)
        bd = batch_dim(classifier)
        check_inputs(x, y, domain, bd)
        y = y.to(x.device).long()
        gen = generator if generator is not None else make_attack_generator(getattr(self.config, "seed", 0))
        xb = (x.movedim(bd, 0) if bd else x).detach().clone()
        if xb.shape[0] == 0 or e == 0:
            return x.detach().clone()
        f = BatchFirst(classifier, bd)
        mode = getattr(self.config, "grad_mode", "bptt")
        if self.uses_gradients:
            from neurodeploy.attacks.grad_modes import gradient_mode

            with gradient_mode(classifier, mode), attack_views(classifier, self.config):
                if getattr(self.config, "fused", False):
                    from neurodeploy.attacks.fastsnn import fast_classifier

                    fast = fast_classifier(classifier)  # after the mode: it reads spike_fn
                    if fast is not None:
                        f = BatchFirst(fast, bd)
                adv = self._run(f, xb, y, e, gen, domain, classifier)
        else:
            adv = self._run(f, xb, y, e, gen, domain, classifier)
        adv = project(adv.detach(), xb, e, domain, getattr(self.config, "norm", "linf"))
        return adv.movedim(0, bd) if bd else adv

    def loss(self, name: str) -> Callable[..., torch.Tensor]:
        """The loss ``name`` of :data:`LOSSES` (or ``dlr-targeted``) on the config's logits."""
        fn = dlr_targeted_loss if name == "dlr-targeted" else LOSSES[name]
        return loss_on(fn, getattr(self.config, "loss_on", "readout"))

    def _run(
        self,
        f: BatchFirst,
        x: torch.Tensor,
        y: torch.Tensor,
        eps: float,
        gen: torch.Generator,
        domain: str,
        classifier: Any,
    ) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError


@contextlib.contextmanager
def attack_views(classifier: Any, config: Any) -> Iterator[None]:
    """Set the classifier's attack-time views (input gradient, membrane logits) from the config
    for the duration of an attack; forward values are unchanged. Classifiers without views
    accept only the defaults."""
    ig = getattr(config, "input_grad", "ste")
    lo = getattr(config, "loss_on", "readout")
    aux = "membrane" if lo == "membrane" else "none"
    setter = getattr(classifier, "set_views", None)
    if setter is None:
        if ig != "ste":
            raise ConfigError(f"input_grad={ig!r} needs a Bernoulli-coded SNNClassifier; "
                              f"{type(classifier).__name__} has no encoder view")
        yield
        return
    old = (classifier.input_grad, classifier.aux_logits)
    setter(ig, aux)
    try:
        yield
    finally:
        setter(*old)


def project(adv: torch.Tensor, x: torch.Tensor, eps: float, domain: str, norm: str = "linf") -> torch.Tensor:
    """Project batch-first ``adv`` onto the threat model around ``x``.

    ``box``/ℓ∞: clip to ``[x − ε, x + ε] ∩ [0, 1]``; ``box``/ℓ2: scale δ to ‖δ‖₂ ≤ ε, then clip
    to [0, 1] (which never increases ‖δ‖₂); ``binary``: round to {0, 1} and, where more than ε
    entries differ from ``x``, keep the first ε differing entries and reset the others.
    """
    if domain == "box":
        if norm == "linf":
            return torch.minimum(torch.maximum(adv, x - eps), x + eps).clamp(0.0, 1.0)
        d = (adv - x).flatten(1)
        n = d.norm(dim=1).clamp_min(1e-12)
        d = d * torch.clamp(eps / n, max=1.0)[:, None]
        return (x + d.view_as(x)).clamp(0.0, 1.0)
    adv = (adv > 0.5).to(x.dtype)
    diff = (adv != x).flatten(1)
    k = int(eps)
    over = diff.sum(1) > k
    if over.any():
        keep = diff & (diff.long().cumsum(1) <= k)
        adv_f = torch.where(keep, adv.flatten(1), x.flatten(1))
        adv = torch.where(over.view(-1, *[1] * (x.dim() - 1)), adv_f.view_as(x), adv)
    return adv


def ball_violation(adv: torch.Tensor, x: torch.Tensor, eps: float, domain: str, norm: str = "linf") -> float:
    """How far batch-first ``adv`` is outside the threat model (0 = inside)."""
    if domain == "box":
        d = (adv - x).flatten(1)
        size = d.abs().amax(1) if norm == "linf" else d.norm(dim=1)
        out = max(float((size - eps).clamp_min(0).max()) if d.numel() else 0.0, 0.0)
        return max(out, float((-adv).clamp_min(0).max()), float((adv - 1).clamp_min(0).max()))
    nonbin = float(((adv != 0) & (adv != 1)).any())
    flips = (adv != x).flatten(1).sum(1).float()
    return max(nonbin, float((flips - eps).clamp_min(0).max()) if flips.numel() else 0.0)


# --------------------------------------------------------------------------- registry

AttackFactory = Callable[[Any], Attack]
#: name -> (config dataclass, factory(config) -> Attack). The attack modules listed register
#: themselves on import; the registry imports them on the first lookup (neurodeploy.registry).
ATTACKS: Registry[tuple[type, AttackFactory]] = Registry("attack", modules=(
    "neurodeploy.attacks.apgd", "neurodeploy.attacks.gradient", "neurodeploy.attacks.spikes",
    "neurodeploy.attacks.spikeset", "neurodeploy.attacks.spikeblock", "neurodeploy.attacks.square",
    "neurodeploy.verify.beam_attack"))


def register_attack(name: str, config_cls: type, factory: AttackFactory) -> None:
    """Register an attack under ``name`` (idempotent)."""
    ATTACKS.register(name, (config_cls, factory))


def _ensure_registered() -> None:
    """Every attack module imported (the registry does it on the first lookup)."""
    ATTACKS.load()


def make_attack(name: str, **params: Any) -> Attack:
    """Build a registered attack: ``make_attack("apgd-ce", n_iter=50)``.

    Unknown names and unknown or invalid parameters raise :class:`ConfigError` (parameters are
    validated against the fields of the attack's frozen config dataclass).
    """
    _ensure_registered()
    key = str(name).strip().lower()
    if key not in ATTACKS:
        raise ConfigError(f"unknown attack {name!r}; valid attacks: {', '.join(sorted(ATTACKS))}")
    cfg_cls, factory = ATTACKS[key]
    fields = {f.name for f in dataclasses.fields(cfg_cls)}
    unknown = sorted(set(params) - fields)
    if unknown:
        raise ConfigError(
            f"attack {key!r}: unknown parameter(s) {unknown}; valid: {sorted(fields)}"
        )
    try:
        cfg = cfg_cls(**params)
    except TypeError as exc:
        raise ConfigError(f"attack {key!r}: {exc}") from exc
    return factory(cfg)


def attack_fields(name: str) -> set[str]:
    """The configurable parameters of attack ``name`` (its frozen config's fields)."""
    import dataclasses

    _ensure_registered()
    if name not in ATTACKS:
        raise ConfigError(f"unknown attack {name!r}; choose one of {attack_names()}")
    return {f.name for f in dataclasses.fields(ATTACKS[name][0])}


def attack_names() -> list[str]:
    _ensure_registered()
    return sorted(ATTACKS)
