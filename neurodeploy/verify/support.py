"""What the exact encoding covers, checked before any model is built.

The encoder (:mod:`neurodeploy.verify.intmodel`) writes the integer step of
:mod:`neurodeploy.sims.kernel` for the plan fields and kinds listed here. A plan that uses
anything else — a neuron kind, a layer kind, a format rule, a skip edge, or a plan/layer field
this module does not know (a newer exporter's graded spikes, split synapse groups, …) with a
non-default value — is refused with :class:`UnsupportedPlan` naming it: an exact verifier
must never silently drop a part of the arithmetic.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from neurodeploy.errors import NeurodeployError
from neurodeploy.exporters.plan import DeploymentPlan, PlanLayer

#: Neuron kinds the encoder writes (zero reset per format, TA-LIF, subtract-reset LIF).
NEURON_KINDS = ("lif", "talif", "sublif")
LAYER_KINDS = ("dense", "conv", "pool")
#: PlanLayer fields the encoder reads (every other field must hold its default).
LAYER_FIELDS = frozenset({
    "name", "kind", "in_shape", "out_shape", "weights", "weight_exp", "du", "dv", "vth",
    "bias_mant", "bias_exp", "scale", "delay", "stride", "padding", "groups", "flatten_before",
    "neuron", "neuron_params", "neuron_arrays", "skip_from", "skip_weights"})
#: DeploymentPlan fields the encoder reads or that do not change the arithmetic.
PLAN_FIELDS = frozenset({"profile", "num_steps", "input_shape", "layers", "resources",
                         "quantization", "source", "fixed_point", "raw_weights"})
#: FixedPointFormat fields whose rules the encoder follows (a newer field with a non-default
#: value, e.g. graded spikes, is refused)
FORMAT_FIELDS = frozenset({
    "weight_bits", "weight_exp_min", "weight_exp_max", "mixed_sign_drops_lsb",
    "weight_exp_rounding", "synaptic_delay", "state_bits", "port_bits", "conv_output_bits",
    "decay_bits", "current_decay_offset", "voltage_decay_offset", "decay_rounding",
    "threshold_bits", "threshold_shift", "activation_shift", "bias_mant_bits", "bias_exp_bits",
    "u_overflow", "v_overflow", "spike_comparison", "reset", "talif_theta_v_bits",
    "talif_theta_v_shift_max", "talif_state_bits"})
#: neuron_arrays / neuron_params keys per kind that the encoder reads.
ARRAY_KEYS = {"lif": {"du", "dv"}, "sublif": {"du", "dv"}, "talif": {"theta_v", "nds"}}
PARAM_KEYS = {"lif": set(), "sublif": set(), "talif": {"theta_v_shift", "theta_bits"}}
#: Format rules with an encoding (the kernel's: trunc decays, floor weight shift).
FORMAT_RULES = {"decay_rounding": ("toward_zero",), "weight_exp_rounding": ("floor",),
                "u_overflow": ("wrap_once", "wrap", "saturate"),
                "v_overflow": ("wrap_once", "wrap", "saturate"),
                "spike_comparison": (">", ">="), "reset": ("zero", "subtract")}


class UnsupportedPlan(NeurodeployError):
    """The plan uses a field or kind the exact encoding does not cover (exit 2)."""

    exit_code = 2


def _is_default(f: dataclasses.Field, value: object) -> bool:
    if f.default is not dataclasses.MISSING:
        default = f.default
    elif f.default_factory is not dataclasses.MISSING:  # type: ignore[misc]
        default = f.default_factory()  # type: ignore[misc]
    else:
        return False
    if isinstance(value, np.ndarray) or isinstance(default, np.ndarray):
        return bool(np.array_equal(np.asarray(value), np.asarray(default)))
    return bool(value == default)


def check_supported(plan: DeploymentPlan) -> None:
    """Raise :class:`UnsupportedPlan` naming the first thing the encoder does not cover."""
    for f in dataclasses.fields(plan):
        if f.name not in PLAN_FIELDS and not _is_default(f, getattr(plan, f.name)):
            raise UnsupportedPlan(f"exact verification: plan field {f.name!r} is not encoded")
    fmt = plan.fixed_point
    for f in dataclasses.fields(fmt):
        if f.name not in FORMAT_FIELDS and not _is_default(f, getattr(fmt, f.name)):
            raise UnsupportedPlan(f"exact verification: format field {f.name!r} is not encoded")
    for name, allowed in FORMAT_RULES.items():
        if getattr(fmt, name) not in allowed:
            raise UnsupportedPlan(f"exact verification: format rule {name} = "
                                  f"{getattr(fmt, name)!r} is not encoded (encoded: {allowed})")
    if plan.readout != "count":
        raise UnsupportedPlan(f"exact verification: readout {plan.readout!r} is not encoded "
                              f"(only output spike counts)")
    for L in plan.layers:
        _check_layer(L)


def _check_layer(L: PlanLayer) -> None:
    where = f"exact verification: plan layer {L.name}"
    for f in dataclasses.fields(L):
        if f.name not in LAYER_FIELDS and not _is_default(f, getattr(L, f.name)):
            raise UnsupportedPlan(f"{where}: field {f.name!r} is not encoded")
    if L.kind not in LAYER_KINDS:
        raise UnsupportedPlan(f"{where}: layer kind {L.kind!r} is not encoded "
                              f"(encoded: {LAYER_KINDS})")
    v3 = sorted(set(L.neuron_arrays) & {"w_rec_lo", "a_bias_mant"})
    if v3:  # plan-v3 precision fields of the *_rec / *_cb kinds, named before the kind
        raise UnsupportedPlan(f"{where}: neuron_arrays {v3} (a second recurrent synapse "
                              f"group / a fine current bias) are not encoded")
    if L.neuron not in NEURON_KINDS:
        raise UnsupportedPlan(f"{where}: neuron kind {L.neuron!r} is not encoded "
                              f"(encoded: {NEURON_KINDS})")
    if L.skip_from or L.skip_weights:
        raise UnsupportedPlan(f"{where}: skip edges (skip_from) are not encoded")
    extra = set(L.neuron_arrays) - ARRAY_KEYS[L.neuron]
    if extra:
        raise UnsupportedPlan(f"{where}: neuron_arrays {sorted(extra)} of a {L.neuron!r} "
                              f"layer are not encoded")
    extra = set(L.neuron_params) - PARAM_KEYS[L.neuron]
    if extra:
        raise UnsupportedPlan(f"{where}: neuron_params {sorted(extra)} of a {L.neuron!r} "
                              f"layer are not encoded")
