"""A NIR file as the audit's float side: the generic NIR interpreter, with the semantics stated.

``neurodeploy audit --model net.nir`` (and the pipeline's ``[model] nir``) audits a graph written
by any producer. The **float side** is the NIR interpreter
(:class:`~neurodeploy.exporters.nir_interp.NIRModel`) read under the producer's semantics, with
a surrogate gradient (``atan`` unless told otherwise) so that white-box attacks run against it;
the **deployed side** is the plan — the one given (``--plan``, its recorded semantics fill in
what the command leaves out) or the one :func:`~neurodeploy.exporters.nir_deploy.compile_nir`
compiles from the same file (then the float side interprets exactly the graph that was compiled).

Input and threat models (decided here, written into the report's ``model.nir`` block): a NIR
graph's ``Input`` receives spikes and the file does not say how its producer encoded them.
The audit feeds it what it feeds every model, the **host's Bernoulli (rate) coding of the
images** ``s[t] = 1[x > u[t]]`` — the spikes ``simulate`` and the chip get — so both threat
models apply unchanged: *known draw* (the host's map per example) and *unknown draw* (fresh
draws). That is an assumption about the producer's training input, stated as one; the clean
accuracy shows whether it holds. Event (spike) data have no host encoder: there the image
threat models do not apply and the audit refuses (exit 2).

:class:`NIRFloatModel` dresses the interpreter as the audit's float model: ``config`` (encoding
``bernoulli``, neuron ``nir``), ``run(spikes, record)`` with ``spikes``/``mems``/``logits``,
a differentiable ``forward`` on spikes, and one ``neurons`` handle whose ``spike_fn`` is the
interpreter's surrogate (so ``bptt:<surrogate>`` gradient modes work; BPTR/RGA, defined on
:class:`~neurodeploy.models.SpikingNet` neurons, are refused and left out by the audit, which
records it). Certification and float-side efficiency need a SpikingNet and are not run.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from neurodeploy.errors import ConfigError, DataError

#: the float side's surrogate gradient when none is named
DEFAULT_SURROGATE = "atan"

INPUT_ASSUMPTION = (
    "the graph's Input receives the host's Bernoulli (rate) coding of the images, "
    "s[t] = 1[x > u[t]] (what simulate and the chip are fed); a NIR file does not record how "
    "its producer encoded inputs, so this is an assumption (the clean accuracy tests it)")
THREAT_MODELS_WORDS = (
    "known draw (the host's map per example) and unknown draw (fresh draws) both apply: the "
    "attacker perturbs the image, the host encodes it; event/spike data are refused (no host "
    "encoder, so neither threat model applies)")
NOT_RUN = ("float certification (S-IBP/S-CROWN need a SpikingNet)",
           "float-side efficiency metrics (need a SpikingNet's layer list)",
           "BPTR/RGA gradient modes on the float side (defined on SpikingNet neurons)")


def is_nir_path(path: str | os.PathLike | None) -> bool:
    return path is not None and str(path).lower().endswith(".nir")


@dataclass(frozen=True)
class NIRSource:
    """What the audit assumed about a NIR file (the report's ``model.nir`` block)."""

    path: str
    producer: str
    reset: str
    dt: float | None
    num_steps: int
    semantics: str
    plan: str
    surrogate: str
    notes: tuple[str, ...] = ()
    chip_notes: tuple[str, ...] = ()
    input: str = INPUT_ASSUMPTION
    threat_models: str = THREAT_MODELS_WORDS
    not_run: tuple[str, ...] = NOT_RUN
    data_reshape: str | None = None

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        for k in ("notes", "chip_notes", "not_run"):
            d[k] = list(d[k])
        return d

    def lines(self) -> list[str]:
        """What the command prints before it runs anything."""
        out = [f"NIR model {self.path}: {self.semantics}, T = {self.num_steps}; deployed side: "
               f"{self.plan}; float side: NIR interpreter, surrogate {self.surrogate}"]
        out += [f"  assumed: {n}" for n in self.notes]
        out += [f"  chip:    {n}" for n in self.chip_notes]
        out.append(f"  input:   {self.input}")
        if self.data_reshape:
            out.append(f"  input:   {self.data_reshape}")
        out.append(f"  threat models: {self.threat_models}")
        out += [f"  not run: {n}" for n in self.not_run]
        return out


@dataclass(frozen=True)
class NIRConfig:
    """The audit's view of the model config (``to_dict`` goes into the report)."""

    arch: str
    input_shape: tuple[int, ...]
    num_steps: int
    surrogate: str
    readout: str
    encoding: str = "bernoulli"
    neuron: str = "nir"
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["input_shape"] = list(self.input_shape)
        d.pop("extra")
        return {**d, **self.extra}


@dataclass
class NIRRun:
    """``run``'s result: spikes per spiking population, membranes per population, logits."""

    spikes: list[torch.Tensor]
    mems: list[torch.Tensor]
    logits: torch.Tensor


class _SurrogateHandle(nn.Module):
    """The interpreter's spike surrogate as one neuron's ``spike_fn`` (for gradient modes)."""

    kind = "nir"

    def __init__(self, interp: Any) -> None:
        super().__init__()
        object.__setattr__(self, "_interp", interp)

    @property
    def spike_fn(self) -> Any:
        return self._interp._spike_fn

    @spike_fn.setter
    def spike_fn(self, fn: Any) -> None:
        self._interp._spike_fn = fn


class _GuardedNeurons(nn.ModuleList):
    """Replacing the handle (BPTR/RGA wrappers) would have no effect on the interpreter: refused."""

    def __setitem__(self, idx: int, module: nn.Module) -> None:  # type: ignore[override]
        raise ConfigError("gradient modes 'bptr' and 'rga' are not available on a NIR model's "
                          "float interpreter; use bptt:<surrogate>")


class NIRFloatModel(nn.Module):
    """The NIR interpreter as the audit's float model (module docstring).

    The graph's arrays are registered as frozen parameters: they give the model a device and a
    state dict (the audit's resume fingerprint), the interpreter computes with its own copies.
    """

    def __init__(self, interp: Any, source: NIRSource) -> None:
        super().__init__()
        # not a submodule: NIRModel's own ``_apply`` (one graph node) shadows nn.Module's, so
        # ``to``/``cpu`` must not recurse into it; :meth:`to` moves it explicitly
        object.__setattr__(self, "interp", interp)
        self.source = source
        self.num_steps = int(source.num_steps)
        self.neurons = _GuardedNeurons([_SurrogateHandle(interp)])
        self.arrays = nn.ParameterList(
            nn.Parameter(v.detach().clone(), requires_grad=False)
            for name in interp.order for v in interp._params[name].values() if v is not None)

    @property
    def config(self) -> NIRConfig:
        """The audit's view of the model; ``to_dict()`` carries the ``nir`` block (what was
        assumed), so every report of this model states it."""
        src = self.source
        return NIRConfig(
            arch=f"NIR {Path(src.path).name} ({src.producer})",
            input_shape=tuple(int(v) for v in self.interp.input_shape),
            num_steps=self.num_steps, surrogate=src.surrogate,
            readout=str(self.interp.graph.semantics.readout), extra={"nir": src.to_dict()})

    def fit_images(self, x: torch.Tensor, data_name: str = "the data") -> torch.Tensor:
        """Images ``[N, *shape]`` in the graph's input shape: reshaped (C order) when only the
        layout differs, which :attr:`source` then records; refused otherwise."""
        want = tuple(self.config.input_shape)
        have = tuple(int(v) for v in x.shape[1:])
        if have == want:
            return x
        if int(np.prod(have)) != int(np.prod(want)):
            raise DataError(f"{data_name}: samples of shape {have} ({int(np.prod(have))} "
                            f"values), the NIR graph's Input takes {want}")
        from dataclasses import replace

        self.source = replace(self.source, data_reshape=(
            f"data samples of shape {have} reshaped to the graph's Input {want} (same values, "
            f"C order)"))
        return x.reshape((x.shape[0],) + want)

    @property
    def population_names(self) -> list[str]:
        return list(self.interp.spiking_names)

    def to(self, *args: Any, **kwargs: Any) -> NIRFloatModel:  # type: ignore[override]
        super().to(*args, **kwargs)
        device = next((a for a in args if isinstance(a, str | torch.device)), kwargs.get("device"))
        if device is not None:
            self.interp.to(device)
        return self

    def run(self, spikes: torch.Tensor, record: bool = True) -> NIRRun:
        """Spikes ``[T, B, *input]`` → :class:`NIRRun`; keeps the autograd graph when
        gradients are enabled (surrogate backward, hard-threshold forward)."""
        tr = self.interp.run(spikes, record=record, grad=torch.is_grad_enabled())
        return NIRRun(spikes=list(tr.spikes), mems=list(tr.membranes), logits=tr.logits)

    def forward(self, spikes: torch.Tensor) -> torch.Tensor:
        return self.run(spikes, record=False).logits


def load_nir_model(path: str | os.PathLike, *, plan: Any = None, plan_path: str | None = None,
                   profile: Any = None, num_steps: int = 10, producer: str | None = None,
                   reset: str | None = None, dt: float | None = None,
                   surrogate: str = DEFAULT_SURROGATE) -> tuple[NIRFloatModel, Any]:
    """The float model and the plan of a NIR file (module docstring).

    With ``plan`` (loaded from ``plan_path``) the plan is audited as it is and the file is read
    with the plan's recorded semantics unless ``producer``/``reset``/``dt`` are given; without
    it the file is compiled for ``profile`` and ``num_steps``.

    Raises
    ------
    ConfigError / CheckpointError
        Unreadable or inexpressible graph, unknown producer, a plan that does not belong to
        the graph (input shape, number of spiking populations).
    HardwareFitError
        The graph does not fit the profile (compiling).
    """
    from neurodeploy.exporters.nir_deploy import compile_nir, float_reference_for_plan
    from neurodeploy.exporters.nir_interp import NIRModel

    if plan is not None:
        interp = float_reference_for_plan(path, plan, producer=producer, reset=reset, dt=dt,
                                          surrogate=surrogate)
        meta = (getattr(plan, "source", None) or {}).get("nir_metadata", {})
        chip = [c for c in str(meta.get("chip_notes", "") or "").split("\n") if c]
        T = int(plan.num_steps)
        where = f"the plan {plan_path or '(given)'} ({plan.profile}, as compiled)"
        if tuple(plan.input_shape) != tuple(interp.input_shape):
            raise ConfigError(f"{plan_path or 'the plan'} takes inputs of shape "
                              f"{tuple(plan.input_shape)}, the graph {str(path)!r} "
                              f"{tuple(interp.input_shape)}: not the plan of this graph")
    else:
        dep = compile_nir(path, profile, num_steps, producer=producer, reset=reset, dt=dt)
        plan, T = dep.plan, int(num_steps)
        interp = NIRModel(dep.dgraph, num_steps=T, surrogate=surrogate)
        chip = list(dep.chip_notes)
        where = f"compiled from the file for {plan.profile} (compile_nir)"
        meta_t = dep.dgraph.metadata.get("num_steps")
        if meta_t is not None and int(np.asarray(meta_t).item()) != T:
            chip.insert(0, f"the graph metadata says num_steps = {int(np.asarray(meta_t).item())};"
                           f" the audit runs T = {T} (--steps)")
    if len(interp.spiking_names) != len(plan.layers):
        raise ConfigError(
            f"{str(path)!r}: the float interpreter has {len(interp.spiking_names)} spiking "
            f"populations, the plan {len(plan.layers)} layers; the audit compares them layer "
            f"by layer (a non-spiking readout population is not supported by the audit)")
    sem = interp.graph.semantics
    src = NIRSource(path=str(path), producer=str(sem.producer), reset=str(sem.reset),
                    dt=None if sem.dt is None else float(sem.dt), num_steps=T,
                    semantics=sem.describe(), plan=where, surrogate=surrogate,
                    notes=tuple(interp.graph.notes), chip_notes=tuple(chip))
    return NIRFloatModel(interp, src), plan
