"""Spiking networks built from an architecture string, with explicit state and checkpoints.

A :class:`SpikingNet` maps a time-first input ``x_seq`` of shape ``[T, B, *input_shape]``
(spikes or currents, see :mod:`neurodeploy.encoding`) to logits ``[B, classes]``. Each
layer is a synapse (``nn.Linear`` / ``nn.Conv2d`` / pooling) followed by a neuron population;
every population, the output one included, is LIF by default (certify_snn's convention).

Readouts (``ModelConfig.readout``):

- ``count``    logits = Σ_t s_out[t]        (output spike counts; argmax = prediction)
- ``rate``     logits = (1/T) Σ_t s_out[t]  (certify_snn: CE on firing rates)
- ``membrane`` the output layer is a non-spiking leaky integrator, logits = (1/T) Σ_t m_out[t]

Layers are evaluated layer-major: the synapse of layer k sees the whole spike train of layer
k−1 at once (one big matmul over T·B), then the neuron loop runs over t. Since the network is
feed-forward this equals the step-major order exactly (tested).
"""

from __future__ import annotations

import dataclasses
import importlib.metadata
import math
import os
import platform
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

import neurodeploy
from neurodeploy.architecture import Architecture, LayerSpec, parse_architecture
from neurodeploy.errors import CheckpointError, ConfigError
from neurodeploy.neurons import LIF, NEURON_KINDS, LeakyIntegrator
from neurodeploy.trace import Trace

READOUTS = ("count", "rate", "membrane")
ENCODINGS = ("bernoulli", "direct", "spikes")
CHECKPOINT_FORMAT = "neurodeploy-checkpoint"
CHECKPOINT_VERSION = 1

@dataclass(frozen=True)
class ModelConfig:
    """Everything needed to rebuild a model (saved in every checkpoint).

    Defaults are the certified-training paper's: α = θ = 0.25, T = 10, Bernoulli input.
    """

    arch: str
    input_shape: tuple[int, ...]
    num_steps: int = 10
    alpha: float = 0.25
    theta: float = 0.25
    surrogate: str = "rect"
    readout: str = "count"
    encoding: str = "bernoulli"
    neuron: str = "lif"
    neuron_params: dict[str, Any] = field(default_factory=dict)
    bias: bool = True

    def __post_init__(self) -> None:
        object.__setattr__(self, "input_shape", tuple(int(v) for v in self.input_shape))
        if self.readout not in READOUTS:
            raise ConfigError(f"unknown readout {self.readout!r}; choose one of {READOUTS}")
        if self.encoding not in ENCODINGS:
            raise ConfigError(f"unknown encoding {self.encoding!r}; choose one of {ENCODINGS}")
        if not (0.0 <= self.alpha <= 1.0):
            raise ConfigError(f"alpha (membrane decay) must be in [0, 1], got {self.alpha}")
        if not self.theta > 0:
            raise ConfigError(f"theta (threshold) must be > 0, got {self.theta}")
        if int(self.num_steps) < 1:
            raise ConfigError(f"num_steps must be >= 1, got {self.num_steps}")

    @property
    def architecture(self) -> Architecture:
        return parse_architecture(self.arch, self.input_shape)

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["input_shape"] = list(self.input_shape)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ModelConfig:
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - names
        if unknown:
            raise ConfigError(f"unknown model config fields: {sorted(unknown)}")
        return cls(**d)


class SumPool2d(nn.Module):
    """k×k sum pooling with stride k (avg pooling times k²)."""

    def __init__(self, kernel: int) -> None:
        super().__init__()
        self.kernel = kernel

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.avg_pool2d(x, self.kernel) * (self.kernel * self.kernel)


def _make_synapse(spec: LayerSpec, bias: bool) -> nn.Module:
    if spec.kind == "fc":
        return nn.Linear(spec.in_size, spec.out_channels, bias=bias)
    if spec.kind == "conv":
        return nn.Conv2d(
            spec.in_shape[0], spec.out_channels, spec.kernel, spec.stride, spec.padding, bias=bias
        )
    if spec.kind == "avgpool":
        return nn.AvgPool2d(spec.kernel, spec.kernel)
    if spec.kind == "sumpool":
        return SumPool2d(spec.kernel)
    raise ConfigError(f"unknown layer kind {spec.kind!r}")


def _neuron_factory(kind: str):
    """The registered factory of a hidden-layer neuron kind (:data:`NEURON_KINDS`)."""
    return NEURON_KINDS.get_entry(kind)


#: The float model's result is the one backend :class:`~neurodeploy.trace.Trace` (``mems`` and
#: ``thetas`` remain as read-only views of ``v`` and ``theta``).
SNNTrace = Trace


class SpikingNet(nn.Module):
    """Feed-forward SNN: synapse → neurons, per layer of the architecture string."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        self.arch = config.architecture
        hidden = _neuron_factory(config.neuron)
        self.synapses = nn.ModuleList()
        self.neurons = nn.ModuleList()
        n = len(self.arch.layers)
        for i, spec in enumerate(self.arch.layers):
            self.synapses.append(_make_synapse(spec, config.bias))
            last = i == n - 1
            if last and config.readout == "membrane":
                neuron: nn.Module = LeakyIntegrator(config.alpha, config.theta, config.surrogate)
            elif last:
                neuron = LIF(config.alpha, config.theta, config.surrogate)  # HoSNN: output stays LIF
            else:
                neuron = hidden(config, i, spec.out_shape)
            self.neurons.append(neuron)

    @property
    def num_steps(self) -> int:
        return self.config.num_steps

    @property
    def layer_specs(self) -> tuple[LayerSpec, ...]:
        return self.arch.layers

    def synapse_current(self, k: int, x_seq: torch.Tensor) -> torch.Tensor:
        """Synaptic current of layer k for a whole input train ``[T, B, *in_shape]``."""
        spec = self.arch.layers[k]
        T, B = x_seq.shape[:2]
        x = x_seq.reshape(T * B, *x_seq.shape[2:])
        if spec.flatten_before:
            x = x.flatten(1)
        y = self.synapses[k](x)
        return y.reshape(T, B, *y.shape[1:])

    #: backend name in :class:`~neurodeploy.trace.Trace` (the backend contract)
    name = "float"

    def run(self, x_seq: torch.Tensor, record: bool = False) -> Trace:
        """Run the network on ``x_seq`` ``[T, B, *input_shape]`` (the backend contract of
        :mod:`neurodeploy.trace`): ``record`` fills every layer's spikes, pre-reset membranes
        ``v`` and thresholds ``theta``."""
        if x_seq.dim() != len(self.config.input_shape) + 2:
            raise ConfigError(
                f"input must be [T, B, {', '.join(map(str, self.config.input_shape))}], "
                f"got shape {tuple(x_seq.shape)}"
            )
        if tuple(x_seq.shape[2:]) != self.config.input_shape:
            raise ConfigError(
                f"input shape {tuple(x_seq.shape[2:])} does not match the model's "
                f"{self.config.input_shape}"
            )
        spikes: list[torch.Tensor] = []
        vs: list[torch.Tensor] = []
        thetas: list[torch.Tensor] = []
        h = x_seq
        T = x_seq.shape[0]
        n = len(self.neurons)
        for k, neuron in enumerate(self.neurons):
            cur = self.synapse_current(k, h)
            state = neuron.init_state(cur[0])
            spk_t, mem_t, th_t = [], [], []
            for t in range(T):
                out = neuron(cur[t], state, t)
                state = out.state
                spk_t.append(out.spk)
                mem_t.append(out.mem)
                if record:
                    th = out.theta
                    th_t.append(th if torch.is_tensor(th) else torch.full_like(out.mem, th))
            h = torch.stack(spk_t)
            if record or (k == n - 1 and self.config.readout == "membrane"):
                mems = torch.stack(mem_t)
            if record:
                spikes.append(h)
                vs.append(mems)
                thetas.append(torch.stack(th_t))
        if self.config.readout == "count":
            logits = h.sum(0)
        elif self.config.readout == "rate":
            logits = h.mean(0)
        else:
            logits = mems.mean(0)
        return Trace(out_spikes=h, logits=logits, spikes=tuple(spikes), v=tuple(vs),
                     theta=tuple(thetas), backend="float")

    def forward(self, x_seq: torch.Tensor) -> torch.Tensor:
        return self.run(x_seq).logits


def build_model(config: ModelConfig) -> SpikingNet:
    """Build a freshly initialised model (PyTorch default init)."""
    return SpikingNet(config)


# ----------------------------------------------------------------------------- checkpoints


def library_versions() -> dict[str, str]:
    """Versions recorded in checkpoints and reports."""
    out = {"neurodeploy": neurodeploy.__version__, "python": platform.python_version()}
    for dist in ("torch", "snntorch", "nir", "numpy"):
        try:  # installed distribution versions (plain str, readable by weights_only loads)
            out[dist] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:  # pragma: no cover - optional
            out[dist] = "missing"
    return out


def atomic_torch_save(obj: Any, path: str | os.PathLike) -> None:
    """``torch.save`` to a temporary file in the same folder, then rename (never half-written;
    mode from the umask; see :mod:`neurodeploy.atomicio`)."""
    from neurodeploy.atomicio import write_with

    write_with(path, lambda tmp: torch.save(obj, tmp))


def save_checkpoint(
    path: str | os.PathLike,
    model: SpikingNet,
    extra: dict[str, Any] | None = None,
) -> None:
    """Write ``{format, version, config, state_dict, versions, extra}`` atomically."""
    atomic_torch_save(
        {
            "format": CHECKPOINT_FORMAT,
            "version": CHECKPOINT_VERSION,
            "config": model.config.to_dict(),
            "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
            "versions": library_versions(),
            "extra": extra or {},
        },
        path,
    )


def _check_finite(state: dict[str, torch.Tensor], source: str) -> None:
    for k, v in state.items():
        if torch.is_tensor(v) and v.is_floating_point() and not torch.isfinite(v).all():
            raise CheckpointError(f"{source}: tensor {k!r} contains NaN or inf")


def _read(path: str | os.PathLike) -> Any:
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {str(path)!r} does not exist")
    from neurodeploy.atomicio import check_torch_file

    try:  # what the file is (NIR, plan, text), and every zip member's CRC-32
        check_torch_file(path)
    except (ValueError, OSError) as exc:
        raise CheckpointError(f"checkpoint {str(path)!r} {exc}") from exc
    from neurodeploy.safeload import load_torch

    return load_torch(path, "checkpoint", CheckpointError)  # data only: payloads refused


def load_checkpoint(path: str | os.PathLike) -> tuple[SpikingNet, dict[str, Any]]:
    """Load a neurodeploy checkpoint; returns ``(model in eval mode, the whole record)``."""
    rec = _read(path)
    if not isinstance(rec, dict) or rec.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(
            f"{path}: not a neurodeploy checkpoint (for certify_snn state dicts use "
            f"import_state_dict / --arch)"
        )
    if rec.get("version") != CHECKPOINT_VERSION:
        raise CheckpointError(f"{path}: unsupported checkpoint version {rec.get('version')}")
    config = ModelConfig.from_dict(rec["config"])
    model = build_model(config)
    _check_finite(rec["state_dict"], str(path))
    try:
        model.load_state_dict(rec["state_dict"])
    except RuntimeError as exc:
        raise CheckpointError(f"{path}: state dict does not match {config.arch}: {exc}") from exc
    model.eval()
    return model, rec


def import_state_dict(
    path: str | os.PathLike, config: ModelConfig
) -> SpikingNet:
    """Import a plain state dict whose weighted layers appear in order (certify_snn's
    ``fc1, fc2, fc3`` / ``conv1, conv2, fc1 …``) into a model built from ``config``.

    Weighted layers of the architecture are matched, in order, to the ``*.weight`` entries of
    the file (sorted by their order in the file); shapes must agree exactly.
    """
    rec = _read(path)
    if isinstance(rec, dict) and "state_dict" in rec and isinstance(rec["state_dict"], dict):
        rec = rec["state_dict"]
    if not isinstance(rec, dict):
        raise CheckpointError(f"{path}: expected a state dict, got {type(rec).__name__}")
    _check_finite(rec, str(path))
    model = build_model(config)
    weight_keys = [k for k in rec if k.endswith(".weight")]
    targets = [i for i, s in enumerate(model.layer_specs) if s.has_weights]
    if len(weight_keys) != len(targets):
        raise CheckpointError(
            f"{path}: has {len(weight_keys)} weighted layers, architecture {config.arch!r} has "
            f"{len(targets)}"
        )
    new_state = model.state_dict()
    for key, idx in zip(weight_keys, targets, strict=True):
        prefix = key[: -len(".weight")]
        w = rec[key]
        tgt = f"synapses.{idx}.weight"
        if tuple(w.shape) != tuple(new_state[tgt].shape):
            raise CheckpointError(
                f"{path}: {key} has shape {tuple(w.shape)}, layer {idx + 1} "
                f"({model.layer_specs[idx].token}) needs {tuple(new_state[tgt].shape)}"
            )
        new_state[tgt] = w.float()
        bkey = f"{prefix}.bias"
        if config.bias:
            if bkey not in rec:
                raise CheckpointError(f"{path}: {bkey} missing (model has biases)")
            new_state[f"synapses.{idx}.bias"] = rec[bkey].float()
    model.load_state_dict(new_state)
    model.eval()
    return model


def num_parameters(model: nn.Module) -> int:
    return sum(math.prod(p.shape) for p in model.parameters())
