"""Models of other frameworks as the audit's model: a SpikingJelly network, a lava-dl netx file.

``neurodeploy audit --torch-module FILE.py:FACTORY --producer spikingjelly`` converts the
module with :func:`~neurodeploy.exporters.spikingjelly.compile_module` (checked against the
module's own forward) and audits it exactly as a NIR file
(:mod:`~neurodeploy.audit.nir_model`): the float side is the NIR interpreter of the converted
graph (surrogate gradient), the deployed side the plan compiled from that graph. The same
input assumption and threat models apply (the host's Bernoulli coding of the images).

``neurodeploy audit --model net.net`` (lava-dl netx, e.g. SLAYER's ``export_hdf5``): the
deployed side is the plan :func:`~neurodeploy.exporters.netx.read_netx` reads (netx's own
semantics), the float side the same integers read as real numbers
(:func:`~neurodeploy.exporters.netx.float_graph`: Lava's LIF without its rounding).
"""

from __future__ import annotations

from typing import Any

from torch import nn

from neurodeploy.audit.nir_model import DEFAULT_SURROGATE, NIRFloatModel, NIRSource


def load_torch_module_model(net: nn.Module, name: str, input_shape: tuple[int, ...],
                            profile: Any, num_steps: int,
                            surrogate: str = DEFAULT_SURROGATE) -> tuple[NIRFloatModel, Any]:
    """(float model, plan) of a SpikingJelly ``net`` named ``name`` (``FILE.py:FACTORY``).

    Raises
    ------
    ConfigError
        A module with no conversion, or one whose forward the conversion does not reproduce.
    HardwareFitError
        The network does not fit the profile.
    """
    from neurodeploy.exporters.nir_interp import NIRModel
    from neurodeploy.exporters.spikingjelly import compile_module

    dep = compile_module(net, profile, num_steps, input_shape)
    interp = NIRModel(dep.dgraph, num_steps=int(num_steps), surrogate=surrogate)
    sem = dep.dgraph.semantics
    src = NIRSource(path=name, producer=sem.producer, reset=sem.reset, dt=sem.dt,
                    num_steps=int(num_steps), semantics=sem.describe(),
                    plan=f"compiled from the converted module for {dep.plan.profile}",
                    surrogate=surrogate, notes=dep.notes, chip_notes=dep.chip_notes)
    return NIRFloatModel(interp, src), dep.plan


def load_netx_model(path: str, num_steps: int, profile: str = "loihi2",
                    surrogate: str = DEFAULT_SURROGATE) -> tuple[NIRFloatModel, Any]:
    """(float model, plan) of a netx file (module docstring).

    Raises
    ------
    CheckpointError / ConfigError
        Not a netx file; a block the plan (or netx itself) cannot run, named.
    """
    from neurodeploy.exporters.netx import float_graph, read_netx
    from neurodeploy.exporters.nir_interp import NIRModel

    plan, notes = read_netx(path, num_steps, profile=profile)
    g = float_graph(plan)
    interp = NIRModel(g, num_steps=int(num_steps), surrogate=surrogate)
    src = NIRSource(path=str(path), producer="lava-dl", reset="zero", dt=None,
                    num_steps=int(num_steps),
                    semantics="lava-dl netx: CUBA LIF (du = iDecay − 1, dv = vDecay, "
                              "vth = vThMant, bias_exp 6), reset to zero, spike v > vth",
                    plan="read from the netx file (netx's semantics)", surrogate=surrogate,
                    notes=tuple(notes) + tuple(g.notes))
    return NIRFloatModel(interp, src), plan
