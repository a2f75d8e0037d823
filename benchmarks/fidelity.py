"""Deployment fidelity on real graphs (issue 25): per-layer spike agreement float ↔ chip and
its dominant cause, with and without graded spikes.

Graphs: the NIR paper's ``cnn_sinabs.nir`` (sinabs IAF CNN) and
``braille_noDelay_bias_zero.nir`` (snntorch RSynaptic RNN, zero reset) from
``tests/data/nir_paper`` (neuromorphs/NIR ``paper/``, BSD-3), and a sinabs IAF CNN with
thresholds 2 / 1.5 / 0.7 built here with sinabs (seeded). Each is compiled for ``loihi2``
(graded spikes on) and for ``loihi2`` with ``graded_spike_bits = 0`` (every spike binary, the
previous behaviour), and for ``loihi2`` with ``weight_groups="auto"`` (a second synapse group
on eligible dense/conv layers, two groups for a recurrent matrix, fine current biases), and run on the bit-exact emulator against the float NIR
interpreter.

Inputs are Bernoulli spikes (no N-MNIST / braille data ship here): p, T, B per graph below,
seed 0. The per-layer table is :mod:`neurodeploy.exporters.nir_fidelity`'s (agreement,
"explained" = float with every plan rounding ↔ chip, dominant cause by ablation).

    python benchmarks/fidelity.py [--samples 32] [--out benchmarks/results/fidelity.json]

A graph that is absent is skipped (says so).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import tempfile
import time
from pathlib import Path

import nir
import numpy as np
import torch

from neurodeploy.exporters.nir_deploy import compile_nir
from neurodeploy.exporters.nir_fidelity import fidelity_report, format_fidelity
from neurodeploy.exporters.profiles import load_profile

DATA = Path(__file__).resolve().parents[1] / "tests" / "data" / "nir_paper"


def sinabs_iaf_cnn(path: Path) -> Path | None:
    """conv(2→8, 3×3) IAF θ=2 → sum-pool 2 → conv(8→16, 3×3) IAF θ=1.5 → flatten → fc(→10)
    IAF θ=0.7 on (2, 16, 16), He-normal weights (seed 0), exported with ``sinabs.to_nir``."""
    try:
        import sinabs
        import sinabs.layers as sl
    except ImportError:
        return None
    torch.manual_seed(0)
    B = 1
    net = torch.nn.Sequential(
        torch.nn.Conv2d(2, 8, 3, bias=False), sl.IAFSqueeze(batch_size=B, spike_threshold=2.0),
        sl.SumPool2d(2), torch.nn.Conv2d(8, 16, 3, bias=False),
        sl.IAFSqueeze(batch_size=B, spike_threshold=1.5), torch.nn.Flatten(),
        torch.nn.Linear(16 * 5 * 5, 10, bias=False),
        sl.IAFSqueeze(batch_size=B, spike_threshold=0.7))
    with torch.no_grad():
        for m in net:
            if isinstance(m, torch.nn.Conv2d | torch.nn.Linear):
                fan_in = m.weight[0].numel()
                m.weight.normal_(0.0, 2.5 * (2.0 / fan_in) ** 0.5)
    g = sinabs.to_nir(net, torch.zeros(B, 2, 16, 16))
    _fill_shapes(g, (2, 16, 16))
    nir.write(str(path), g)
    return path


def _fill_shapes(g: nir.NIRGraph, shape: tuple[int, ...]) -> None:
    """sinabs 3.1.3 leaves Conv2d.input_shape / Flatten.input_type empty: fill them in."""
    succ = dict(g.edges)
    name = "input"
    while name in succ:
        name = succ[name]
        n = g.nodes[name]
        if isinstance(n, nir.Conv2d):
            g.nodes[name] = nir.Conv2d(input_shape=tuple(shape[1:]), weight=n.weight,
                                       stride=n.stride, padding=n.padding, dilation=n.dilation,
                                       groups=n.groups, bias=n.bias)
            shape = tuple(int(v) for v in g.nodes[name].output_type["output"])
        elif isinstance(n, nir.Flatten):
            g.nodes[name] = nir.Flatten(input_type={"input": np.array(shape)},
                                        start_dim=n.start_dim, end_dim=n.end_dim)
            shape = (int(np.prod(shape)),)
        elif isinstance(n, nir.SumPool2d):
            k = int(np.asarray(n.kernel_size).ravel()[0])
            shape = (shape[0], shape[1] // k, shape[2] // k)


CASES = (
    # name, file (or builder), producer, reset, T, p
    ("NIR paper cnn_sinabs", "cnn_sinabs.nir", "sinabs", None, 20, 0.1),
    ("NIR paper braille (zero reset)", "braille_noDelay_bias_zero.nir", "snntorch", "zero",
     100, 0.1),
    ("sinabs IAF CNN θ 2/1.5/0.7", sinabs_iaf_cnn, "sinabs", None, 20, 0.2),
)


def run_case(path: Path, producer: str, reset: str | None, T: int, p: float, samples: int
             ) -> dict:
    out = {}
    loihi2 = load_profile("loihi2")
    for label, prof, groups in (
            ("graded+groups", loihi2, "auto"), ("graded", loihi2, "one"),
            ("binary", dataclasses.replace(loihi2, graded_spike_bits=0), "one")):
        t0 = time.perf_counter()
        dep = compile_nir(path, prof, T, producer=producer, reset=reset, weight_groups=groups)
        gen = torch.Generator().manual_seed(0)
        x = (torch.rand((T, samples, *dep.plan.input_shape), generator=gen) < p
             ).to(torch.uint8)
        rows = fidelity_report(dep.dgraph, dep.plan, x)
        kinds = [f"{L.name}:{L.neuron}" + ("(graded)" if "graded_bits" in L.neuron_params
                                            else "")
                 + (f"(2 groups, k={L.weight_exp})" if L.weights_lo is not None else "")
                 + (f"(W_rec 2 groups, k={L.neuron_params['w_rec_exp']})"
                    if "w_rec_lo" in L.neuron_arrays else "")
                 + (f"(fine current bias, exp {L.neuron_params['a_bias_exp']})"
                    if "a_bias_mant" in L.neuron_arrays else "")
                 for L in dep.plan.layers]
        print(f"  [{label}] {', '.join(kinds)}")
        print("  " + format_fidelity(rows).replace("\n", "\n  "))
        out[label] = {"rows": [r.to_dict() for r in rows],
                      "neurons": [L.neuron for L in dep.plan.layers],
                      "graded": ["graded_bits" in L.neuron_params for L in dep.plan.layers],
                      "two_groups": [L.weights_lo is not None for L in dep.plan.layers],
                      "recurrent_two_groups": ["w_rec_lo" in L.neuron_arrays
                                               for L in dep.plan.layers],
                      "fine_current_bias": ["a_bias_mant" in L.neuron_arrays
                                            for L in dep.plan.layers],
                      "seconds": time.perf_counter() - t0}
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--samples", type=int, default=32)
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    torch.set_num_threads(max(1, torch.get_num_threads()))
    results = {}
    tmpdir = tempfile.TemporaryDirectory()
    tmp = Path(tmpdir.name)
    for name, src, producer, reset, T, p in CASES:
        path = src(tmp / "sinabs_iaf_cnn.nir") if callable(src) else DATA / src
        if path is None or not Path(path).is_file():
            print(f"{name}: skipped (graph or its producer library absent)")
            continue
        print(f"{name}: {Path(path).name}, producer {producer}, reset {reset or 'default'}, "
              f"T = {T}, {args.samples} samples of Bernoulli({p}) input, seed 0")
        results[name] = {"file": Path(path).name, "producer": producer, "reset": reset,
                         "T": T, "p": p, "samples": args.samples,
                         **run_case(Path(path), producer, reset, T, p, args.samples)}
    if args.out:
        Path(args.out).write_text(json.dumps(results, indent=1))
        print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
