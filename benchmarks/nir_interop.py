"""NIR interoperability table (issue 13): graphs written by snntorch, norse, sinabs and rockpool
with their own exporters, imported with their conventions and deployed.

Per case it measures
* float: the NIR interpreter vs the producer's own simulation, mismatched spikes / spikes
  compared (all layers, the same input spikes);
* chip: ``export --nir`` (compile_nir, loihi2) → the bit-exact emulator vs the interpreter,
  elementwise spike agreement per layer (a refusal is recorded with its message);
* lava (``--lava``): the Lava processes vs the emulator, mismatched spikes.

    python benchmarks/nir_interop.py [--lava] [--out benchmarks/results/nir_interop.json]

Writes a JSON record and prints the markdown table used in the README. Needs the producers
(``pip install -e .[interop]``; sinabs with ``--no-deps``, see pyproject.toml).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
import time
import warnings
from pathlib import Path

import nir
import numpy as np
import torch

warnings.filterwarnings("ignore")
torch.set_num_threads(1)
T, B = 30, 16


def _rand(shape, p, seed):
    return (torch.rand(shape, generator=torch.Generator().manual_seed(seed)) < p).float()


def snntorch_leaky(reset):
    import snntorch as snn
    from snntorch.export_nir import export_to_nir

    torch.manual_seed(1)
    l1, l2 = torch.nn.Linear(20, 16), torch.nn.Linear(16, 10)
    with torch.no_grad():
        l1.weight.mul_(3)
        l2.weight.mul_(3)
    b1, t1, b2, t2 = torch.full((16,), .8), torch.full((16,), .7), torch.full((10,), .9), \
        torch.ones(10)
    k1 = snn.Leaky(beta=b1, threshold=t1, reset_mechanism=reset)
    k2 = snn.Leaky(beta=b2, threshold=t2, reset_mechanism=reset)
    x = _rand((T, B, 20), .4, 0)
    m1, m2, o1, o2 = k1.init_leaky(), k2.init_leaky(), [], []
    for t in range(T):
        s1, m1 = k1(l1(x[t]), m1)
        s2, m2 = k2(l2(s1), m2)
        o1.append(s1)
        o2.append(s2)
    net = torch.nn.Sequential(l1, snn.Leaky(beta=b1, threshold=t1, init_hidden=True), l2,
                              snn.Leaky(beta=b2, threshold=t2, init_hidden=True, output=True))
    return export_to_nir(net, torch.zeros(1, 20), ignore_dims=[0]), x, \
        [torch.stack(o1), torch.stack(o2)]


def snntorch_rleaky():
    import snntorch as snn
    from snntorch.export_nir import export_to_nir

    torch.manual_seed(5)
    lin = torch.nn.Linear(20, 12)
    with torch.no_grad():
        lin.weight.mul_(3)
    beta, thr = torch.full((12,), .85), torch.full((12,), .8)
    rl = snn.RLeaky(beta=beta, threshold=thr, linear_features=12, reset_mechanism="zero")
    x = _rand((T, B, 20), .4, 1)
    spk, mem = rl.init_rleaky()
    out = []
    for t in range(T):
        spk, mem = rl(lin(x[t]), spk, mem)
        out.append(spk)
    net = torch.nn.Sequential(lin, snn.RLeaky(beta=beta, threshold=thr, linear_features=12,
                                              reset_mechanism="zero", init_hidden=True,
                                              output=True))
    net[1].recurrent.load_state_dict(rl.recurrent.state_dict())
    return export_to_nir(net, torch.zeros(1, 20), ignore_dims=[0]), x, [torch.stack(out)]


def snntorch_synaptic(reset):
    import snntorch as snn
    from snntorch.export_nir import export_to_nir

    torch.manual_seed(6)
    l1, l2 = torch.nn.Linear(20, 16), torch.nn.Linear(16, 10)
    with torch.no_grad():
        l1.weight.mul_(2)
        l2.weight.mul_(2)
    a1, b1, t1 = torch.full((16,), .6), torch.full((16,), .8), torch.full((16,), 1.)
    a2, b2, t2 = torch.full((10,), .5), torch.full((10,), .9), torch.full((10,), 1.)
    k1 = snn.Synaptic(alpha=a1, beta=b1, threshold=t1, reset_mechanism=reset)
    k2 = snn.Synaptic(alpha=a2, beta=b2, threshold=t2, reset_mechanism=reset)
    x = _rand((T, B, 20), .4, 6)
    sy1, m1 = k1.init_synaptic()
    sy2, m2 = k2.init_synaptic()
    o1, o2 = [], []
    for t in range(T):
        s1, sy1, m1 = k1(l1(x[t]), sy1, m1)
        s2, sy2, m2 = k2(l2(s1), sy2, m2)
        o1.append(s1)
        o2.append(s2)
    net = torch.nn.Sequential(
        l1, snn.Synaptic(alpha=a1, beta=b1, threshold=t1, init_hidden=True), l2,
        snn.Synaptic(alpha=a2, beta=b2, threshold=t2, init_hidden=True, output=True))
    return export_to_nir(net, torch.zeros(1, 20), ignore_dims=[0]), x, \
        [torch.stack(o1), torch.stack(o2)]


def norse_net(cuba):
    import norse.torch as nt

    torch.manual_seed(2)
    l1, l2, l3 = torch.nn.Linear(20, 16), torch.nn.Linear(16, 12), torch.nn.Linear(12, 10)
    with torch.no_grad():
        for m in (l1, l2, l3):
            m.weight.mul_(4)
    c1 = nt.LIFBoxCell(nt.LIFBoxParameters(tau_mem_inv=torch.full((16,), 200.),
                                           v_leak=torch.full((16,), .3), v_th=torch.full((16,), .5)))
    if cuba:
        c2 = nt.LIFCell(nt.LIFParameters(tau_syn_inv=torch.full((12,), 300.),
                                         tau_mem_inv=torch.full((12,), 150.),
                                         v_th=torch.full((12,), .3), v_leak=torch.zeros(12),
                                         v_reset=torch.zeros(12)))
    else:
        c2 = nt.LIFBoxCell(nt.LIFBoxParameters(tau_mem_inv=torch.full((12,), 150.),
                                               v_leak=torch.zeros(12), v_th=torch.full((12,), .3)))
    c3 = nt.IAFCell(nt.IAFParameters(v_th=torch.full((10,), .8), v_reset=torch.zeros(10)))
    x = _rand((T, B, 20), .5, 3)
    s1 = s2 = s3 = None
    o = [[], [], []]
    for t in range(T):
        z1, s1 = c1(l1(x[t]), s1)
        z2, s2 = c2(l2(z1), s2)
        z3, s3 = c3(l3(z2), s3)
        for k, z in enumerate((z1, z2, z3)):
            o[k].append(z)
    g = nt.to_nir(nt.SequentialState(l1, c1, l2, c2, l3, c3), torch.zeros(1, 20))
    return g, x, [torch.stack(a) for a in o]


def sinabs_cnn():
    import sinabs
    import sinabs.layers as sl

    torch.manual_seed(3)
    conv1, conv2 = torch.nn.Conv2d(1, 4, 3, bias=False), torch.nn.Conv2d(4, 4, 3, bias=False)
    fc = torch.nn.Linear(16, 10, bias=False)
    with torch.no_grad():
        conv1.weight.mul_(3)
        conv2.weight.mul_(2)
        fc.weight.mul_(2)
    net = torch.nn.Sequential(conv1, sl.IAFSqueeze(batch_size=B), sl.SumPool2d(2), conv2,
                              sl.IAFSqueeze(batch_size=B), torch.nn.Flatten(), fc,
                              sl.IAFSqueeze(batch_size=B))
    x = _rand((B, T, 1, 10, 10), .3, 4)
    rec = {}
    for k, m in enumerate(net):
        if isinstance(m, sl.IAFSqueeze):
            m.register_forward_hook(lambda mod, i, out, k=k: rec.__setitem__(k, out))
    net(x.reshape(B * T, 1, 10, 10))
    ref = [rec[k].reshape(B, T, *rec[k].shape[1:]).transpose(0, 1) for k in sorted(rec)]
    g = sinabs.to_nir(net, torch.zeros(B, 1, 10, 10))
    # sinabs defect: Conv2d.input_shape / Flatten.input_type left None (nir.write fails)
    succ, name, shape = dict(g.edges), "input", (1, 10, 10)
    while name in succ:
        name = succ[name]
        n = g.nodes[name]
        if isinstance(n, nir.Conv2d):
            g.nodes[name] = nir.Conv2d(input_shape=shape[1:], weight=n.weight, stride=n.stride,
                                       padding=n.padding, dilation=n.dilation, groups=n.groups,
                                       bias=n.bias)
            shape = tuple(int(v) for v in g.nodes[name].output_type["output"])
        elif isinstance(n, nir.Flatten):
            g.nodes[name] = nir.Flatten(input_type={"input": np.array(shape)},
                                        start_dim=n.start_dim, end_dim=n.end_dim)
            shape = (math.prod(shape),)
        elif isinstance(n, nir.SumPool2d):
            shape = (shape[0], shape[1] // 2, shape[2] // 2)
        elif getattr(n, "v_threshold", None) is not None:
            shape = tuple(np.asarray(n.v_threshold).shape)
    return g, x.transpose(0, 1), ref


def rockpool_cuba():
    from rockpool.nn.combinators import Sequential
    from rockpool.nn.modules import LIFTorch, LinearTorch
    from rockpool.nn.modules.torch.nir import to_nir

    torch.manual_seed(4)
    net = Sequential(LinearTorch((20, 16)), LIFTorch(16, tau_mem=.02, tau_syn=.01, dt=1e-3),
                     LinearTorch((16, 10)), LIFTorch(10, tau_mem=.03, tau_syn=.005, dt=1e-3))
    with torch.no_grad():
        net[0].weight.mul_(.3)
        net[2].weight.mul_(.5)
    x = _rand((B, T, 20), .4, 5)
    _, _, rec = net(x, record=True)
    ref = [rec["1_LIFTorch"]["spikes"].transpose(0, 1), rec["3_LIFTorch"]["spikes"]
           .transpose(0, 1)]
    return to_nir(net), x.transpose(0, 1), ref


CASES = [
    # (label, producer, builder, --reset, neuron, reset, edges)
    ("snntorch Leaky (default)", "snntorch", lambda: snntorch_leaky("subtract"), None,
     "LIF", "subtract (next step)", "feed-forward"),
    ("snntorch Leaky zero", "snntorch", lambda: snntorch_leaky("zero"), "zero", "LIF", "zero",
     "feed-forward"),
    ("snntorch RLeaky zero", "snntorch", snntorch_rleaky, "zero", "LIF (subgraph)",
     "zero (+ hold)", "recurrent"),
    ("snntorch Synaptic zero", "snntorch", lambda: snntorch_synaptic("zero"), "zero",
     "CubaLIF", "zero (+ hold)", "feed-forward"),
    ("snntorch Synaptic (default)", "snntorch", lambda: snntorch_synaptic("subtract"), None,
     "CubaLIF", "subtract (next step)", "feed-forward"),
    ("norse LIFBox/LIF/IAF", "norse", lambda: norse_net(True), None, "LIF, CubaLIF, IF",
     "zero", "feed-forward"),
    ("norse LIFBox/LIFBox/IAF", "norse", lambda: norse_net(False), None, "LIF (v_leak), IF",
     "zero", "feed-forward"),
    ("sinabs IAF CNN", "sinabs", sinabs_cnn, None, "IF (multi-spike)", "subtract",
     "conv, SumPool→conv, dense"),
    ("sinabs IAF CNN --reset zero", "sinabs", sinabs_cnn, "zero", "IF (multi-spike)",
     "zero", "conv, SumPool→conv, dense"),
    ("rockpool LIFTorch", "rockpool", rockpool_cuba, None, "CubaLIF (multi-spike)",
     "subtract", "feed-forward"),
]


def run_case(label, producer, build, reset, lava, workdir):
    from neurodeploy.exporters.nir_deploy import compile_nir, float_reference
    from neurodeploy.sims.emulator import Emulator

    rec = {"case": label, "producer": producer, "reset_arg": reset}
    graph, x, ref = build()
    path = Path(workdir) / f"{label.replace(' ', '_').replace('/', '_')}.nir"
    nir.write(str(path), graph)
    model = float_reference(path, producer=producer, reset=reset)
    tr = model.run(x)
    mism = sum(int((a.reshape(b.shape).to(b.dtype) != b).sum())
               for a, b in zip(ref, tr.spikes, strict=True))
    total = sum(int(b.numel()) for b in tr.spikes)
    rec["float_mismatches"], rec["float_compared"] = mism, total
    rec["float_spikes"] = int(sum(float(b.sum()) for b in tr.spikes))
    try:
        dep = compile_nir(path, "loihi2", T, producer=producer, reset=reset)
    except Exception as exc:  # a refusal is a result here
        rec["chip"] = f"refused: {type(exc).__name__}: {exc}"
        return rec
    rec["chip"] = "compiled"
    rec["neurons"] = [L.neuron for L in dep.plan.layers]
    rec["chip_notes"] = list(dep.chip_notes)
    xs = x.to(torch.uint8)
    emu = Emulator(dep.plan).run(xs)
    agree = []
    for a, b in zip(tr.spikes, emu.layer_spikes, strict=True):
        a = (a > 0).reshape(T, B, -1).to(torch.uint8)
        b = (b > 0).reshape(T, B, -1).to(torch.uint8)  # graded counts: spike / no spike
        agree.append(round(float((a == b).double().mean()), 4))
    rec["emulator_vs_float_agreement"] = agree
    if lava:
        from neurodeploy.sims.lava_env import run_lava

        t0 = time.perf_counter()
        res = run_lava(dep.plan, xs.numpy(), timeout_s=600, record_layers=True)
        rec["lava_vs_emulator_mismatches"] = int(sum(
            int((e.numpy() != l_).sum()) for e, l_ in
            zip(emu.layer_spikes, res.layer_spikes, strict=True)))
        rec["lava_compared"] = int(sum(e.numel() for e in emu.layer_spikes))
        rec["lava_seconds"] = round(time.perf_counter() - t0, 1)
    return rec


def table(records):
    lines = ["| producer (case) | neuron | reset | edges | float ≡ producer (mismatched / compared) "
             "| deploys (loihi2) | emulator vs float, per layer | Lava ≡ emulator |",
             "|---|---|---|---|---|---|---|---|"]
    for (label, _, _, _, neuron, reset, edges), r in zip(CASES, records, strict=True):
        fl = f"{r['float_mismatches']} / {r['float_compared']}"
        if r["chip"] == "compiled":
            dep = "yes (" + ", ".join(sorted(set(r["neurons"]))) + ")"
            ag = " / ".join(f"{v:.3f}" for v in r["emulator_vs_float_agreement"])
            lv = (f"{r['lava_vs_emulator_mismatches']} / {r['lava_compared']}"
                  if "lava_vs_emulator_mismatches" in r else "—")
        else:
            dep = "no: " + r["chip"].split(": ", 2)[-1][:90]
            ag = lv = "—"
        lines.append(f"| {label} | {neuron} | {reset} | {edges} | {fl} | {dep} | {ag} | {lv} |")
    return "\n".join(lines)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--lava", action="store_true", help="also run every plan in Lava")
    ap.add_argument("--out", default="benchmarks/results/nir_interop.json")
    args = ap.parse_args(argv)
    records = []
    with tempfile.TemporaryDirectory() as d:
        for label, producer, build, reset, *_ in CASES:
            records.append(run_case(label, producer, build, reset, args.lava, d))
            print(json.dumps(records[-1]), file=sys.stderr)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({"T": T, "B": B, "cases": records}, indent=1))
    print(table(records))


if __name__ == "__main__":
    main()
