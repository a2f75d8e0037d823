"""What a NIR graph does not say: time step, discretisation, reset, spike rule — by producer.

NIR 1.0.8 is continuous-time: no node carries ``dt``, the reset mode ("zero" or "subtract"),
the spike comparison (``>`` or ``>=``), whether a neuron may emit several spikes per step, or how
the producer discretised ``τ·dv/dt = (v_leak − v) + R·I``. Every framework that writes NIR fixes
these by convention, and a graph run with another convention gives other spikes. This module
names each convention as a frozen :class:`Semantics` record (one per producer, the table
:data:`PRODUCERS`) so that nothing is assumed in silence: :func:`resolve_semantics` returns the
record *and* a list of notes saying what was taken from where (command line, graph metadata,
producer default); the CLI prints the notes and the plan stores them.

Discrete neuron (the one step every interpreter here runs; per neuron, per time step)::

    I ← β·I + g_syn·x                 (current-based neurons only; else I = x)
    v ← α·v + g·I + b                 (b = leak term, e.g. dt/τ·v_leak for Euler)
    n = spikes(v):  '>'  →  1[v > θ]           '>=' → 1[v ≥ θ]
                    multi_spike → ⌊v/θ⌋·1[v ≥ θ]  (graded count, sinabs / rockpool)
    reset: zero      → v ← v_reset where n > 0
           subtract  → v ← v − n·θ_reset   (θ_reset = θ, or θ/α for snntorch's next-step subtract)

How (α, g, b, β, g_syn) follow from NIR's (τ, r, v_leak, τ_syn, w_in) — ``discretisation``:

* ``euler``  (snntorch, norse, lava-dl, neurodeploy): α = 1 − dt/τ, g = r·dt/τ, b = v_leak·dt/τ,
  β = 1 − dt/τ_syn, g_syn = w_in·dt/τ_syn (``syn_gain = "nir"``) or 1 (``"one"``, norse).
* ``exact``  (sinabs, rockpool): α = exp(−dt/τ), g = (1 − α)·r (sinabs, ``mem_gain = "nir"``) or 1
  (rockpool, ``mem_gain = "one"``), β = exp(−dt/τ_syn), g_syn = β (rockpool, ``"decay"``).

``IF``/``I`` integrate ``v ← v + r·x`` under every convention (no producer multiplies by dt).

Known exporter defects that a convention corrects (documented, each printed as a note):

* snntorch 1.0.0 never writes the reset mechanism; its ``Leaky`` default is subtract with
  ``reset_delay=True``: the subtraction happens one step later, before the decay, which equals an
  immediate subtraction of θ/α (``reset_timing = "next-step"``).
* norse 1.1.0 writes ``tau = dt / tau_inv`` (= dt·τ, a unit error; its own importer reads
  ``tau_inv = 1/tau``), while older norse files (the NIR paper's ``lif_norse.nir``) store τ in
  seconds. The unit is decided **per file** (:func:`decide_tau_unit`): every τ < dt cannot be
  seconds under Euler (negative decay), so the file is read as dt·τ (τ and τ_syn divided by dt);
  every τ ≥ dt would mean τ ≥ 1 s as dt·τ, so the file is read as seconds. A mix is refused;
  ``--tau-units`` overrides the decision.
* rockpool 3.1.0 writes ``r = τ/dt·exp(−dt/τ)`` (dt recoverable), drops the neuron bias
  (``v_leak`` always 0) and writes the batch dimension into ``Input``/``Output`` (the reader
  fixes the shapes).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from neurodeploy.errors import ConfigError

RESETS = ("zero", "subtract")
RESET_TIMINGS = ("immediate", "next-step")
SPIKE_OPS = (">", ">=")
DISCRETISATIONS = ("euler", "exact")


@dataclass(frozen=True)
class Semantics:
    """The discrete-time reading of a NIR graph (see the module docstring for the equations).

    Attributes
    ----------
    producer : the convention's name (a key of :data:`PRODUCERS`).
    dt : seconds per step (``None``: infer it, rockpool only).
    discretisation : ``euler`` or ``exact``.
    reset : ``zero`` (v ← v_reset) or ``subtract`` (v ← v − θ).
    reset_timing : ``immediate`` or ``next-step`` (snntorch ``reset_delay=True``).
    spike_op : ``>`` or ``>=``.
    multi_spike : graded spike counts ⌊v/θ⌋ (sinabs ``MultiSpike``, rockpool).
    mem_gain : ``nir`` (g = r·dt/τ Euler, (1 − α)·r exact) or ``one`` (g = 1).
    syn_gain : ``nir`` (w_in·dt/τ_syn), ``one`` (1) or ``decay`` (β) for the current input.
    tau_unit : ``seconds`` or ``dt*tau`` (norse 1.1.0's exporter: τ_file = dt·τ).
    readout : ``count`` (spike counts of the last layer) or ``membrane`` (last LI/ membrane).
    v_init : the membrane at t = 0: ``zero`` or ``v_leak`` (norse starts every LIF at v_leak).
    zero_hold : where a zero reset also discards the next step's input (the membrane is 0 on
        the step after a spike): ``none``, or ``cuba_and_recurrent`` (snntorch ``Synaptic``,
        ``RLeaky``, ``RSynaptic`` with ``reset_mechanism="zero"``: CubaLIF nodes and LIF nodes
        inside a subgraph).
    v_floor : a lower bound on v after the reset, ``v ← max(v, floor)``: ``none``, or
        ``if_minus_theta`` (sinabs: its ``from_nir`` reads an IF node as
        ``IAFSqueeze(min_v_mem = −v_threshold)``; its exporter writes no ``min_v_mem``).
    """

    producer: str
    dt: float | None
    discretisation: str = "euler"
    reset: str = "zero"
    reset_timing: str = "immediate"
    spike_op: str = ">"
    multi_spike: bool = False
    mem_gain: str = "nir"
    syn_gain: str = "nir"
    tau_unit: str = "seconds"
    readout: str = "count"
    v_init: str = "zero"
    zero_hold: str = "none"
    v_floor: str = "none"

    def __post_init__(self) -> None:
        for name, allowed in (("reset", RESETS), ("reset_timing", RESET_TIMINGS),
                              ("spike_op", SPIKE_OPS), ("discretisation", DISCRETISATIONS),
                              ("mem_gain", ("nir", "one")), ("syn_gain", ("nir", "one", "decay")),
                              ("tau_unit", ("seconds", "dt*tau")),
                              ("readout", ("count", "membrane")),
                              ("v_init", ("zero", "v_leak")),
                              ("zero_hold", ("none", "cuba_and_recurrent")),
                              ("v_floor", ("none", "if_minus_theta"))):
            if getattr(self, name) not in allowed:
                raise ConfigError(f"semantics {name} = {getattr(self, name)!r} is not one of "
                                  f"{allowed}")
        if self.dt is not None and not (math.isfinite(self.dt) and self.dt > 0):
            raise ConfigError(f"semantics dt = {self.dt!r} must be a positive number of seconds")

    def as_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}

    def describe(self) -> str:
        multi = ", graded multi-spike" if self.multi_spike else ""
        timing = f" ({self.reset_timing})" if self.reset == "subtract" else ""
        return (f"producer {self.producer}: dt = {self.dt:g} s, {self.discretisation} "
                f"discretisation, reset {self.reset}{timing}, spike v {self.spike_op} θ{multi}, "
                f"readout {self.readout}")


PRODUCERS: dict[str, Semantics] = {
    "neurodeploy": Semantics("neurodeploy", 1e-4),
    "snntorch": Semantics("snntorch", 1e-4, reset="subtract", reset_timing="next-step",
                          zero_hold="cuba_and_recurrent"),
    "norse": Semantics("norse", 1e-3, syn_gain="one", tau_unit="dt*tau", v_init="v_leak"),
    "sinabs": Semantics("sinabs", 1.0, discretisation="exact", reset="subtract",
                        spike_op=">=", multi_spike=True),
    "rockpool": Semantics("rockpool", None, discretisation="exact", reset="subtract",
                          spike_op=">=", multi_spike=True, mem_gain="one", syn_gain="decay"),
    "lava-dl": Semantics("lava-dl", 1e-4),
}
"""Each producer's convention (the version installed here: snntorch 1.0.0, norse 1.1.0,
sinabs 3.1.3, rockpool 3.1.0; lava-dl as its NIR scripts write). ``dt = None``: inferred."""

PRODUCER_NOTES: dict[str, tuple[str, ...]] = {
    "snntorch": ("snntorch writes no reset mode; its Leaky default (subtract, reset_delay=True) "
                 "is assumed — pass --reset zero for Leaky(reset_mechanism='zero')",
                 "snntorch zero reset of Synaptic/RLeaky/RSynaptic (CubaLIF nodes, LIF nodes in a "
                 "subgraph) also drops the next step's membrane input",),
    "norse": ("norse LIF/LIFBox start at v = v_leak (its initial state)",),
    "sinabs": ("sinabs IAF/LIF: MultiSpike (⌊v/θ⌋ spikes per step), v ≥ θ, subtract reset; "
               "LIF τ is in steps (dt = 1)",
               "sinabs writes no min_v_mem: no lower bound on v (the IAF default); sinabs's own "
               "from_nir reads an IF with min_v_mem = −θ — graph metadata min_v_mem = "
               "'-v_threshold' (or read_graph(v_floor='if_minus_theta')) reads it so"),
    "rockpool": ("rockpool 3.1.0 drops the neuron bias on export (v_leak written as 0) and "
                 "writes r = τ/dt·exp(−dt/τ): dt is recovered from r",
                 "rockpool LIF: v ≥ θ, ⌊v/θ⌋ spikes per step, subtract reset"),
}


def _meta_value(meta: dict[str, Any], key: str) -> Any:
    v = meta.get(key)
    if isinstance(v, np.ndarray):
        v = v.item() if v.size == 1 else v
    if isinstance(v, bytes):
        v = v.decode()
    return v


def detect_producer(metadata: dict[str, Any]) -> str | None:
    """The producer named in graph metadata (neurodeploy writes ``producer: neurodeploy X``)."""
    p = _meta_value(metadata, "producer")
    if isinstance(p, str):
        for name in PRODUCERS:
            if p.lower().startswith(name):
                return name
    return None


TAU_UNITS = ("seconds", "dt*tau")
"""What a file's τ fields hold: seconds (NIR's definition) or dt·τ (norse 1.1.0's exporter)."""


def decide_tau_unit(sem: Semantics, taus: list[np.ndarray], override: str | None = None,
                    where: str = "the file") -> tuple[Semantics, list[str]]:
    """The τ unit of one file, from the evidence in it (or ``override``), and a note saying why.

    Only conventions whose exporters disagree between versions (``sem.tau_unit == "dt*tau"``,
    norse) are decided; others keep seconds unless overridden. With ``dt`` the step::

        all finite τ < dt  →  dt·τ     (as seconds: Euler decay 1 − dt/τ < 0, impossible)
        all finite τ ≥ dt  →  seconds  (as dt·τ: τ_true = τ/dt ≥ 1 s, a neuron forgetting
                                        nothing in 1000 steps at dt = 1 ms)
        a mix              →  refused (pass ``--tau-units``)

    Raises
    ------
    ConfigError
        An unknown override, or a file with τ on both sides of dt and no override.
    """
    if override is not None:
        if override not in TAU_UNITS:
            raise ConfigError(f"--tau-units {override!r}: choose one of {TAU_UNITS}")
        return replace(sem, tau_unit=override), [f"τ units {override} given explicitly "
                                                 f"(--tau-units)"]
    if sem.tau_unit != "dt*tau":
        return sem, []
    vals = np.concatenate([np.asarray(t, dtype=np.float64).ravel() for t in taus] or
                          [np.zeros(0)])
    vals = vals[np.isfinite(vals) & (vals > 0)]
    if vals.size == 0:
        return replace(sem, tau_unit="seconds"), [f"{where}: no finite τ; τ units moot"]
    dt = float(sem.dt)
    if np.all(vals < dt):
        return replace(sem, tau_unit="dt*tau"), [
            f"τ stored as dt·τ (norse 1.1.0's exporter): every τ in {where} is < dt = {dt:g} s "
            f"(max {vals.max():g}), impossible in seconds; τ, τ_syn divided by dt "
            f"(override: --tau-units seconds)"]
    if np.all(vals >= dt):
        return replace(sem, tau_unit="seconds"), [
            f"τ stored in seconds (as norse's from_nir reads it): every τ in {where} is ≥ dt = "
            f"{dt:g} s (min {vals.min():g}); as dt·τ it would be ≥ 1 s "
            f"(override: --tau-units dt*tau)"]
    raise ConfigError(f"{where}: τ values {vals.min():g} … {vals.max():g} lie on both sides of "
                      f"dt = {dt:g} s, so the file is neither all-seconds nor all-dt·τ (norse "
                      f"1.1.0 writes dt·τ); pass --tau-units seconds or --tau-units dt*tau")


def resolve_semantics(metadata: dict[str, Any] | None, producer: str | None = None,
                      reset: str | None = None, dt: float | None = None,
                      readout: str | None = None, v_floor: str | None = None
                      ) -> tuple[Semantics, list[str]]:
    """The semantics to read a graph with, and the notes saying where each choice came from.

    Precedence: explicit arguments (the command line) > graph metadata > the producer's
    convention. A graph whose metadata names no producer needs ``producer`` (no silent default).

    Raises
    ------
    ConfigError
        For an unknown producer, reset, readout, a non-positive dt, or a graph of unknown origin
        with no producer given.
    """
    meta = dict(metadata or {})
    notes: list[str] = []
    detected = detect_producer(meta)
    if producer is None:
        if detected is None:
            raise ConfigError(
                "the NIR graph does not say which framework wrote it, and NIR cannot state the "
                "reset mode, time step or spike rule; pass --producer "
                f"{'|'.join(PRODUCERS)} (or --reset/--dt explicitly with --producer)")
        producer = detected
        notes.append(f"producer {producer!r} from the graph metadata")
    else:
        if producer not in PRODUCERS:
            raise ConfigError(f"unknown producer {producer!r}; known: {', '.join(PRODUCERS)}")
        notes.append(f"producer {producer!r} given explicitly")
        if detected is not None and detected != producer:
            notes.append(f"note: the graph metadata names producer {detected!r}")
    sem = PRODUCERS[producer]
    notes.extend(PRODUCER_NOTES.get(producer, ()))
    if dt is not None:
        sem = replace(sem, dt=float(dt))
        notes.append(f"dt = {dt:g} s given explicitly")
    elif "dt" in meta:
        try:
            mdt = float(_meta_value(meta, "dt"))
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"graph metadata dt = {meta['dt']!r} is not a number") from exc
        sem = replace(sem, dt=mdt)
        notes.append(f"dt = {mdt:g} s from the graph metadata")
    elif sem.dt is not None:
        notes.append(f"dt = {sem.dt:g} s: the {producer} convention (NIR stores no time step)")
    if reset is not None:
        if reset not in RESETS:
            raise ConfigError(f"--reset {reset!r}: choose one of {RESETS}")
        sem = replace(sem, reset=reset, reset_timing=sem.reset_timing if reset == "subtract"
                      else "immediate")
        notes.append(f"reset {reset} given explicitly")
    elif isinstance(_meta_value(meta, "reset"), str):
        r = str(_meta_value(meta, "reset"))
        if r not in RESETS:
            raise ConfigError(f"graph metadata reset = {r!r} is not one of {RESETS}")
        sem = replace(sem, reset=r)
        notes.append(f"reset {r} from the graph metadata")
    else:
        notes.append(f"reset {sem.reset} ({sem.reset_timing}): the {producer} convention")
    if readout is not None:
        sem = replace(sem, readout=readout)
        notes.append(f"readout {readout} given explicitly")
    elif _meta_value(meta, "readout") in ("count", "membrane"):
        sem = replace(sem, readout=str(_meta_value(meta, "readout")))
        notes.append(f"readout {sem.readout} from the graph metadata")
    elif _meta_value(meta, "readout") in ("rate",):
        notes.append("readout 'rate' from the graph metadata is read as 'count' (same argmax)")
    return _resolve_v_floor(sem, meta, v_floor, notes), notes


def _resolve_v_floor(sem: Semantics, meta: dict[str, Any], v_floor: str | None,
                     notes: list[str]) -> Semantics:
    """``v_floor`` given explicitly, else graph metadata ``min_v_mem = "-v_threshold"``
    (sinabs's ``from_nir`` reading of IF nodes), else the producer's convention."""
    if v_floor is not None:
        sem = replace(sem, v_floor=v_floor)  # validated by Semantics
        notes.append(f"v floor {v_floor} given explicitly")
    elif _meta_value(meta, "min_v_mem") is not None:
        mv = _meta_value(meta, "min_v_mem")
        if str(mv) != "-v_threshold":
            raise ConfigError(f"graph metadata min_v_mem = {mv!r}: only '-v_threshold' (sinabs's "
                              f"from_nir reading of IF nodes) is understood")
        sem = replace(sem, v_floor="if_minus_theta")
        notes.append("v ≥ −θ on IF nodes from the graph metadata (min_v_mem = -v_threshold)")
    return sem
