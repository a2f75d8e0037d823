"""``neurodeploy export``: model → NIR graph (``model.nir``) + deployment plan (``plan.npz``).

The NIR graph is what the plan is compiled from (model → :func:`to_nir` → :func:`compile_graph`),
so the file written is exactly what the plan describes. Nothing is written unless both the
export and the compilation succeed; both files are written atomically.

A NIR file from another framework (``--nir FILE``) takes the same route after import
(:func:`~neurodeploy.exporters.nir_deploy.compile_nir`): it is read under ``--producer``'s
conventions (time step, discretisation, reset, spike rule; ``--reset``/``--dt`` override them),
rewritten exactly, checked for the chip and compiled for ``--steps`` time steps. Everything the
file could not state is printed ("assumed: …") and stored in the plan's metadata; OUT/model.nir
is then the graph in the neurodeploy convention, which reads back to the same network.

Exit codes: 0 ok, 2 bad input (unknown profile, unreadable checkpoint, unsupported model),
3 the model does not fit the profile.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from neurodeploy.cli.common import add_common, add_model_args, load_model


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "export",
        help="export a model to NIR and compile a fixed-point deployment plan",
        description="Write OUT/model.nir (standard NIR graph) and OUT/plan.npz (integer "
        "deployment plan for --profile), then print the resource map and the per-layer "
        "quantization error.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    add_model_args(p, required=False)
    p.add_argument("--nir", default=None, metavar="FILE",
                   help="a NIR graph written by another framework, instead of --model")
    p.add_argument("--producer", default=None, choices=sorted(PRODUCER_NAMES + TORCH_PRODUCERS),
                   help="with --nir: the framework that wrote it (its dt, discretisation, "
                   "reset and spike conventions); default: the file's metadata, else required; "
                   "with --torch-module: spikingjelly")
    add_torch_module_args(p)
    p.add_argument("--reset", default=None, choices=("zero", "subtract"),
                   help="with --nir: the reset NIR cannot state (default: the producer's)")
    p.add_argument("--format", default="npz", choices=("npz", "netx"),
                   help="netx: also write OUT/net.net, the plan as lava-dl's netx HDF5 "
                   "(refused, naming the layer, when netx cannot express it exactly)")
    p.add_argument("--tau-units", default=None, choices=("seconds", "dt*tau"),
                   help="with --nir: what the file's τ fields hold (default: decided from the "
                   "file — norse 1.1.0 writes dt·τ, older norse files and NIR seconds)")
    p.add_argument("--profile", default="loihi2",
                   help="hardware profile name (loihi2, loihi1, …) or path to a profile .toml")
    p.add_argument("--dt", type=float, default=None,
                   help="seconds per step: for --model the NIR time constants (τ = dt/(1−α), "
                   "default 1e-4); for --nir the producer's step (default: its convention)")
    add_common(p, out_required=True,
               out_help="output folder (required): model.nir and plan.npz")
    p.set_defaults(func=run)


def _fmt(v: Any, pct: bool = False) -> str:
    if v is None:
        return "∞"
    return f"{100 * v:.3f}%" if pct else f"{v:g}"


def format_report(plan) -> str:
    """Resource map and per-layer quantization table as plain text."""
    res = plan.resources
    lines = [f"profile {plan.profile}: {res['cores_used']} of {res['cores_available']} cores, "
             f"{res['neurons']} neurons, {res['synapses']} synapses, latency "
             f"{plan.latency} steps",
             "", "layer  token            neurons  cores  neurons/core  synapses/core(max)  "
                 "mem/core(max B)  fan-in/core(max)  fan-out/core(max)"]
    lim = res["limits"]
    for L in res["layers"]:
        lines.append(
            f"{L['layer']:>5}  {L['token']:<15} {L['neurons']:>8} {L['cores']:>6} "
            f"{max(L['neurons_per_core']):>13} {max(L['synapses_per_core']):>19} "
            f"{max(L['synaptic_memory_bytes_per_core']):>16} "
            f"{max(L['input_axons_per_core']):>17} {max(L['output_axons_per_core']):>18}")
    lines.append(f"limits: {lim['neurons_per_core']} neurons/core, "
                 f"{lim['synaptic_memory_bytes_per_core']} B/core, fan-in "
                 f"{lim['max_fan_in_per_core'] or 'n/a'}, fan-out "
                 f"{lim['max_fan_out_per_core'] or 'n/a'}, "
                 f"{lim['cores_per_chip']}×{lim['chips']} cores")
    lines += ["", "layer   token            scale  vth  dv    bias_exp  w err max  w err mean  "
                  "θ err    bias err/θ  α err     v headroom"]
    for name, q in plan.quantization.items():
        if name == "summary":
            continue
        lines.append(
            f"{name:<7} {q['token']:<15} {q['scale']:>7.4g} {q['vth']:>4} {q['dv']:>5} "
            f"{q['bias_exp']:>9}  {_fmt(q['weight_max_abs_err_rel'], True):>9} "
            f"{_fmt(q['weight_mean_abs_err_rel'], True):>10}  "
            f"{_fmt(q['threshold_err_rel'], True):>7} "
            f"{_fmt(q['bias_max_abs_err_rel_theta'], True):>11} "
            f"{q['decay_abs_err']:<9.3g} {_fmt(q['v_state_headroom'])}")
    lines.append("(w err: |W_int/scale − W| / max|W|; θ err: |vth/scale − θ| / θ; "
                 "v headroom: 24-bit state range / worst negative |v|)")
    return "\n".join(lines)


PRODUCER_NAMES = ("neurodeploy", "snntorch", "norse", "sinabs", "rockpool", "lava-dl")
TORCH_PRODUCERS = ("spikingjelly",)
"""Frameworks whose torch modules ``--torch-module`` converts (not NIR files)."""


def add_torch_module_args(p: argparse.ArgumentParser) -> None:
    """``--torch-module FILE.py:FACTORY`` and ``--weights`` (with ``--producer spikingjelly``,
    ``--input-shape``, ``--steps``)."""
    g = p.add_argument_group("a torch module of another framework (--producer spikingjelly)")
    g.add_argument("--torch-module", default=None, metavar="FILE.py:FACTORY",
                   help="FACTORY() in FILE.py returns the network (an nn.Module); give "
                   "--producer spikingjelly, --input-shape C,H,W and --steps T")
    g.add_argument("--weights", default=None, metavar="W.pt",
                   help="with --torch-module: a state dict to load into the module")


def load_torch_module(args: argparse.Namespace):  # noqa: ANN201 - (nn.Module, spec, shape)
    """The module of ``--torch-module`` with ``--weights`` loaded, and its input shape."""
    from neurodeploy.cli.common import parse_shape
    from neurodeploy.errors import ConfigError
    from neurodeploy.exporters.spikingjelly import TorchModuleSpec, load_module

    if args.producer != "spikingjelly":
        raise ConfigError(f"--torch-module needs --producer spikingjelly (the framework whose "
                          f"layers it converts), got {args.producer!r}")
    if getattr(args, "reset", None) or getattr(args, "dt", None) is not None:
        raise ConfigError("--reset and --dt describe a --nir file; a SpikingJelly module states "
                          "its own reset and time step")
    if not args.input_shape:
        raise ConfigError("--torch-module needs --input-shape C,H,W (or N): a module does not "
                          "record the input it takes")
    spec = TorchModuleSpec.parse(args.torch_module, args.weights)
    return load_module(spec), spec, parse_shape(args.input_shape)


def netx_plan(args: argparse.Namespace, plan):  # noqa: ANN001, ANN201 - DeploymentPlan
    """``--format netx``: the plan with netx's bias exponent (printed notes), checked to be
    expressible (a ConfigError naming the layer otherwise, before anything is written)."""
    if getattr(args, "format", "npz") != "netx":
        return plan
    from neurodeploy.exporters.netx import check_expressible, with_netx_bias

    plan, notes = with_netx_bias(plan)
    for note in notes:
        print(f"  netx:    {note}")
    check_expressible(plan)
    return plan


def extra_files(args: argparse.Namespace, plan) -> dict:  # noqa: ANN001 - DeploymentPlan
    """``--format netx``: ``{"net.net": writer}`` (``plan`` from :func:`netx_plan`)."""
    if getattr(args, "format", "npz") != "netx":
        return {}
    from neurodeploy.exporters.netx import write_netx

    return {"net.net": lambda p: write_netx(plan, p)}


def run_netx_file(args: argparse.Namespace) -> int:
    """``export --model NET.net``: a lava-dl netx file (SLAYER's export) → plan.npz, with
    netx's own semantics (exporters/netx.py); ``--format netx`` writes it back as net.net."""
    from neurodeploy.atomicio import publish_files
    from neurodeploy.errors import ConfigError
    from neurodeploy.exporters.netx import read_netx

    if not args.out:
        raise ConfigError("--out DIR is required (plan.npz is written there)")
    if args.producer not in (None, "lava-dl") or args.reset or args.dt is not None:
        raise ConfigError("a netx file states its own semantics (lava-dl's); leave --producer, "
                          "--reset and --dt out")
    plan, notes = read_netx(args.model, args.steps, profile=args.profile)
    print(f"read {args.model}: lava-dl netx, {len(plan.layers)} blocks (CUBA: du = iDecay − 1, "
          f"dv = vDecay, vth = vThMant, bias_exp 6), T = {args.steps} (--steps)")
    for note in notes:
        print(f"  assumed: {note}")
    plan = netx_plan(args, plan)
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {str(out)!r} exists and is not a folder")
    publish_files(out, {"plan.npz": plan.save, **extra_files(args, plan)})
    for k, L in enumerate(plan.layers):
        print(f"  layer {k}: {L.kind} {tuple(L.in_shape)} → {tuple(L.out_shape)}, vth {L.vth}, "
              f"du {L.du}, dv {L.dv}, weight_exp {L.weight_exp}, bias_exp {L.bias_exp}")
    print(f"wrote {out / 'plan.npz'}")
    return 0


def run_torch_module(args: argparse.Namespace) -> int:
    """``export --torch-module FILE.py:FACTORY --producer spikingjelly``: convert (checked
    against the module's own forward), rewrite, compile; write model.nir + plan.npz."""
    from neurodeploy.errors import ConfigError
    from neurodeploy.exporters.profiles import load_profile
    from neurodeploy.exporters.spikingjelly import compile_module

    if args.model or args.nir:
        raise ConfigError("give one of --model, --nir and --torch-module")
    if not args.out:
        raise ConfigError("--out DIR is required (model.nir and plan.npz are written there)")
    profile = load_profile(args.profile)
    net, spec, shape = load_torch_module(args)
    dep = compile_module(net, profile, args.steps, shape)
    print(f"read {spec}: {dep.dgraph.semantics.describe()}, T = {args.steps} (--steps)")
    plan, out = publish_deployment(args, dep)
    if not args.quiet:
        print(format_report(plan))
    print_written(args, out)
    return 0


def publish_deployment(args: argparse.Namespace, dep: Any) -> tuple[Any, Path]:
    """Print a compiled graph's notes, then write ``model.nir`` + ``plan.npz`` (+ ``net.net``
    with ``--format netx``) into ``--out`` together (one rename; refused before anything is
    written when netx cannot express the plan). Returns the written plan and the folder."""
    from neurodeploy.atomicio import publish_files
    from neurodeploy.errors import ConfigError
    from neurodeploy.exporters.nir_export import write_graph

    for note in dep.notes:
        print(f"  assumed: {note}")
    for note in dep.chip_notes:
        print(f"  chip:    {note}")
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {str(out)!r} exists and is not a folder")
    plan = netx_plan(args, dep.plan)
    publish_files(out, {"model.nir": lambda p: write_graph(dep.canonical, p),
                        "plan.npz": plan.save, **extra_files(args, plan)})
    return plan, out


def print_written(args: argparse.Namespace, out: Path) -> None:
    print(f"wrote {out / 'model.nir'} (neurodeploy convention) and {out / 'plan.npz'}")
    if args.format == "netx":
        print(f"wrote {out / 'net.net'} (lava-dl netx HDF5)")


def print_fidelity(dep: Any, seed: int, samples: int = 8, p: float = 0.2) -> None:
    """Per-layer agreement float ↔ emulator and its dominant cause, on random inputs
    (:mod:`neurodeploy.exporters.nir_fidelity`)."""
    from neurodeploy.exporters.nir_fidelity import fidelity_report, format_fidelity, random_inputs

    x = random_inputs(dep.plan, samples, p, seed)
    print(f"\nfidelity on {samples} random Bernoulli(p = {p:g}) input samples (seed {seed}; "
          f"`simulate --model FILE.nir` measures it on data):")
    print(format_fidelity(fidelity_report(dep.dgraph, dep.plan, x)))


def run_nir(args: argparse.Namespace) -> int:
    """``export --nir FILE``: import, rewrite, check and compile a foreign NIR graph."""
    import numpy as np

    from neurodeploy.errors import ConfigError
    from neurodeploy.exporters.nir_deploy import compile_nir
    from neurodeploy.exporters.profiles import load_profile

    if args.model:
        raise ConfigError("give either --model or --nir, not both")
    if not args.out:
        raise ConfigError("--out DIR is required (model.nir and plan.npz are written there)")
    profile = load_profile(args.profile)
    dep = compile_nir(args.nir, profile, args.steps, producer=args.producer, reset=args.reset,
                      dt=args.dt, tau_units=args.tau_units)
    print(f"read {args.nir}: {dep.dgraph.semantics.describe()}, T = {args.steps} (--steps)")
    meta_t = dep.dgraph.metadata.get("num_steps")
    if meta_t is not None and int(np.asarray(meta_t).item()) != int(args.steps):
        print(f"  note:    the graph metadata says num_steps = {int(np.asarray(meta_t).item())}; "
              f"the plan runs --steps {args.steps}")
    plan, out = publish_deployment(args, dep)
    if not args.quiet:
        print(format_report(plan))
        print_fidelity(dep, args.seed)
    print_written(args, out)
    return 0


def run(args: argparse.Namespace) -> int:
    from neurodeploy.errors import ConfigError

    if getattr(args, "torch_module", None):
        return run_torch_module(args)
    if args.weights:
        raise ConfigError("--weights goes with --torch-module")
    if args.producer in TORCH_PRODUCERS:
        raise ConfigError(f"--producer {args.producer} converts a --torch-module, not a --nir "
                          f"file or --model checkpoint")
    if getattr(args, "nir", None):
        return run_nir(args)
    if args.model and str(args.model).lower().endswith(".net"):
        return run_netx_file(args)
    if not args.model:
        raise ConfigError("give --model CHECKPOINT, --nir FILE or --torch-module FILE.py:FACTORY")
    if args.producer or args.reset or args.tau_units:
        raise ConfigError("--producer, --reset and --tau-units describe a --nir file; a --model "
                          "checkpoint "
                          "states its own semantics")
    from neurodeploy.exporters.compiler import compile_graph
    from neurodeploy.exporters.nir_export import to_nir, write_graph
    from neurodeploy.exporters.profiles import load_profile

    if not args.out:
        raise ConfigError("--out DIR is required (model.nir and plan.npz are written there)")
    profile = load_profile(args.profile)  # fail fast on an unknown profile
    model = load_model(args, (1, 28, 28))
    graph = to_nir(model, dt=1e-4 if args.dt is None else args.dt)
    plan = compile_graph(graph, profile, model.num_steps, model.config.input_shape)
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {str(out)!r} exists and is not a folder")
    from neurodeploy.atomicio import publish_files

    # both files appear together (a folder rename when OUT holds nothing else)
    plan = netx_plan(args, plan)
    publish_files(out, {"model.nir": lambda p: write_graph(graph, p), "plan.npz": plan.save,
                        **extra_files(args, plan)})
    if not args.quiet:
        print(format_report(plan))
    print(f"wrote {out / 'model.nir'} and {out / 'plan.npz'}")
    if args.format == "netx":
        print(f"wrote {out / 'net.net'} (lava-dl netx HDF5)")
    return 0
