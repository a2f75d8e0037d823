"""NIR features on the chip (issue 13 point 4): small synthetic NIR graphs that need per-neuron
decays, a membrane read-out (LI / CubaLI / I), skip edges, a pool over ≥ 128 channels or a
recurrent convolution,
taken through ``compile_nir`` (loihi2) → the bit-exact emulator (→ Lava with ``--lava``).

Per case it records
* the plan's neuron kinds, per-neuron decay arrays and skip edges (what was compiled);
* chip vs float: elementwise spike agreement of the emulator with the generic NIR interpreter
  per spiking layer (8-bit weights, 12-bit decays: close, not equal); for a read-out the
  largest |v_chip − v_float| over the float membrane's range and the argmax agreement of the
  logits (Σ_t v);
* lava (``--lava``): mismatched spikes per layer (and read-out v entries) of Lava vs the
  emulator.

    python benchmarks/nir_chip_features.py [--lava] [--out benchmarks/results/nir_chip_features.json]

T = 30 steps, B = 16 samples of Bernoulli(0.4) input spikes, seed 0.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import nir
import numpy as np
import torch

torch.set_num_threads(1)
T, B, DT = 30, 16, 1e-4


def _lif(n: int, tau: np.ndarray, gain: np.ndarray | float = 1.0) -> nir.LIF:
    return nir.LIF(tau=tau, r=gain * tau / DT, v_leak=np.zeros(n),
                   v_threshold=np.full(n, 0.5), v_reset=np.zeros(n))


def _chain(rng: np.random.Generator, n_in: int, sizes: tuple[int, ...], neuron) -> tuple:
    nodes = {"input": nir.Input(input_type={"input": np.array([n_in])})}
    edges, prev, fan_in = [], "input", n_in
    for k, n in enumerate(sizes):
        nodes[f"fc{k}"] = nir.Affine(weight=rng.normal(0, 1.2, (n, fan_in)),
                                     bias=rng.normal(0, 0.05, n))
        nodes[f"n{k}"] = neuron(k, n)
        edges += [(prev, f"fc{k}"), (f"fc{k}", f"n{k}")]
        prev, fan_in = f"n{k}", n
    return nodes, edges, prev, fan_in


def _graph(nodes, edges, last, n_out) -> nir.NIRGraph:
    nodes["output"] = nir.Output(output_type={"output": np.array([n_out])})
    return nir.NIRGraph(nodes=nodes, edges=[*edges, (last, "output")], metadata={},
                        type_check=False)


def per_neuron_lif(rng):
    def neuron(k, n):
        return _lif(n, DT / rng.choice([0.05, 0.25, 0.5, 0.8, 1.0], n), rng.uniform(0.5, 2, n))
    return _graph(*_chain(rng, 8, (24, 10), neuron)), "zero"


def per_neuron_cubalif(rng):
    def neuron(k, n):
        tau = DT / rng.choice([0.05, 0.25, 0.5, 1.0], n)
        ts = DT / rng.choice([0.2, 0.5, 1.0], n)
        return nir.CubaLIF(tau_syn=ts, tau_mem=tau, r=tau / DT, v_leak=np.zeros(n),
                           v_threshold=np.full(n, 0.5), v_reset=np.zeros(n), w_in=ts / DT)
    return _graph(*_chain(rng, 8, (24, 10), neuron)), "subtract"


def readout(kind: str):
    def build(rng):
        def neuron(k, n):
            if k == 0:
                return _lif(n, np.full(n, 2e-4))
            tau = DT / rng.choice([0.1, 0.25, 0.5], n)
            if kind == "li":
                return nir.LI(tau=tau, r=tau / DT, v_leak=np.zeros(n))
            if kind == "i":
                return nir.I(r=np.ones(n))
            return nir.CubaLI(tau_syn=np.full(n, 4e-4), tau_mem=tau, r=tau / DT,
                              v_leak=np.zeros(n), w_in=np.full(n, 4.0))
        return _graph(*_chain(rng, 8, (24, 6), neuron)), "zero"
    return build


def skip_edges(rng):
    nodes, edges, last, n_out = _chain(rng, 8, (16, 12, 8),
                                       lambda k, n: _lif(n, np.full(n, 2e-4)))
    for name, src, dst, shape in (("s0", "input", "n1", (12, 8)), ("s1", "n0", "n2", (8, 16)),
                                  ("s2", "input", "n2", (8, 8)), ("m1", "n0", "n1", (12, 16))):
        nodes[name] = nir.Affine(weight=rng.normal(0, 0.8, shape),
                                 bias=rng.normal(0, 0.05, shape[0]))
        edges += [(src, name), (name, dst)]
    return _graph(nodes, edges, last, n_out), "zero"


def pool_256(rng):
    c = 256
    shp = (c, 4, 4)
    nodes = {"input": nir.Input(input_type={"input": np.array([1, 4, 4])}),
             "conv": nir.Conv2d(input_shape=(4, 4), weight=rng.normal(0, 1.0, (c, 1, 3, 3)),
                                stride=1, padding=1, dilation=1, groups=1,
                                bias=np.zeros(c)),
             "if0": nir.IF(r=np.ones(shp), v_threshold=np.full(shp, 0.5),
                           v_reset=np.zeros(shp)),
             "pool": nir.AvgPool2d(kernel_size=np.array([2, 2]), stride=np.array([2, 2]),
                                   padding=np.array([0, 0])),
             "if1": nir.IF(r=np.ones((c, 2, 2)), v_threshold=np.full((c, 2, 2), 0.2),
                           v_reset=np.zeros((c, 2, 2))),
             "flat": nir.Flatten(input_type={"input": np.array([c, 2, 2])}, start_dim=0),
             "fc": nir.Affine(weight=rng.normal(0, 0.1, (10, c * 4)), bias=np.zeros(10)),
             "lif": _lif(10, np.full(10, 2e-4))}
    edges = [("input", "conv"), ("conv", "if0"), ("if0", "pool"), ("pool", "if1"),
             ("if1", "flat"), ("flat", "fc"), ("fc", "lif")]
    return _graph(nodes, edges, "lif", 10), "zero"


def recurrent_conv(rng):
    c, size = 4, 6
    shp, n = (c, size, size), c * size * size
    tau = np.full(shp, 2e-4)
    nodes = {"input": nir.Input(input_type={"input": np.array([1, size, size])}),
             "c0": nir.Conv2d(input_shape=(size, size), weight=rng.normal(0, 1, (c, 1, 3, 3)),
                              stride=1, padding=1, dilation=1, groups=1,
                              bias=rng.normal(0, 0.05, c)),
             "lif0": nir.LIF(tau=tau, r=tau / DT, v_leak=np.zeros(shp),
                             v_threshold=np.full(shp, 0.5), v_reset=np.zeros(shp)),
             "rc": nir.Conv2d(input_shape=(size, size), weight=rng.normal(0, 0.4, (c, c, 3, 3)),
                              stride=1, padding=1, dilation=1, groups=1,
                              bias=rng.normal(0, 0.05, c)),
             "f": nir.Flatten(input_type={"input": np.array(shp)}, start_dim=0),
             "fc": nir.Affine(weight=rng.normal(0, 0.5, (6, n)), bias=np.zeros(6)),
             "lif1": _lif(6, np.full(6, 2e-4))}
    edges = [("input", "c0"), ("c0", "lif0"), ("lif0", "rc"), ("rc", "lif0"), ("lif0", "f"),
             ("f", "fc"), ("fc", "lif1")]
    return _graph(nodes, edges, "lif1", 6), "subtract"


CASES = {
    "per-neuron τ, LIF (fc 8-24-10)": per_neuron_lif,
    "per-neuron τ_mem/τ_syn, CubaLIF, subtract (fc 8-24-10)": per_neuron_cubalif,
    "LI read-out, per-neuron τ (fc 8-24-6)": readout("li"),
    "CubaLI read-out, bias into the current (fc 8-24-6)": readout("cubali"),
    "I read-out (fc 8-24-6)": readout("i"),
    "skip edges: input→L2, input→L3, L1→L3, L1→L2 (fc 8-16-12-8)": skip_edges,
    "AvgPool over 256 channels (conv 1→256, pool, fc 10)": pool_256,
    "recurrent Conv2d 4→4 3×3 on a (4, 6, 6) population, subtract (fc 6)": recurrent_conv,
}


def run_case(build, lava: bool, seed: int = 0) -> dict:
    from neurodeploy.exporters.nir_deploy import compile_nir, float_reference
    from neurodeploy.sims.emulator import Emulator

    rng = np.random.default_rng(seed)
    g, reset = build(rng)
    plan = compile_nir(g, "loihi2", T, producer="neurodeploy", reset=reset).plan
    in_shape = tuple(plan.input_shape)
    x = (np.random.default_rng(seed + 1).random((T, B, *in_shape)) < 0.4).astype(np.uint8)
    emu = Emulator(plan).run(torch.as_tensor(x))
    ref = float_reference(g, producer="neurodeploy", reset=reset).run(
        torch.as_tensor(x, dtype=torch.float64))
    rec: dict = {
        "neurons": [L.neuron for L in plan.layers],
        "per_neuron_decays": [sorted(k for k in L.neuron_arrays if k in ("du", "dv"))
                              for L in plan.layers],
        "skip_from": [list(L.skip_from) for L in plan.layers],
        "groups": [int(L.groups) for L in plan.layers],
        "readout": plan.readout,
    }
    spiking = [k for k, L in enumerate(plan.layers) if L.neuron not in ("li", "li_cb")]
    rec["emulator_vs_float"] = [
        round(float((emu.layer_spikes[k].reshape(ref.spikes[k].shape).double()
                     == ref.spikes[k]).double().mean()), 4) for k in spiking]
    if plan.readout == "membrane":
        last = plan.layers[-1]
        v_chip = emu.meta["out_v"].double() / plan.fixed_point.v_per_float(last.scale)
        v_float = ref.output.reshape(v_chip.shape)
        rec["readout_v_max_err_rel"] = round(float((v_chip - v_float).abs().max()
                                                   / v_float.abs().max()), 4)
        rec["readout_argmax_agreement"] = float(
            (emu.logits.argmax(1) == ref.logits.argmax(1)).double().mean())
    if lava:
        from neurodeploy.sims.lava_env import run_lava

        res = run_lava(plan, x, timeout_s=600, record_layers=True)
        rec["lava_mismatched_spikes"] = [
            int((emu.layer_spikes[k].numpy() != res.layer_spikes[k]).sum()) for k in spiking]
        rec["lava_compared_spikes"] = [int(res.layer_spikes[k].size) for k in spiking]
        if plan.readout == "membrane":
            rec["lava_mismatched_v"] = int((emu.meta["out_v"].numpy() != res.out_v).sum())
            rec["lava_compared_v"] = int(res.out_v.size)
    return rec


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--lava", action="store_true")
    p.add_argument("--out", default="benchmarks/results/nir_chip_features.json")
    args = p.parse_args(argv)
    results = {}
    for name, build in CASES.items():
        results[name] = run_case(build, args.lava)
        print(name, json.dumps(results[name]), file=sys.stderr)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"T": T, "B": B, "cases": results}, indent=1))
    print("| case | plan neurons | emulator vs float, per spiking layer | read-out v err / argmax "
          "| Lava ≡ emulator (mismatched / compared) |")
    print("|---|---|---|---|---|")
    for name, r in results.items():
        ro = (f"{r['readout_v_max_err_rel']:.3f} / {r['readout_argmax_agreement']:.2f}"
              if "readout_v_max_err_rel" in r else "—")
        lv = "—"
        if "lava_mismatched_spikes" in r:
            lv = (f"{sum(r['lava_mismatched_spikes'])} / {sum(r['lava_compared_spikes'])}"
                  + (f"; v {r['lava_mismatched_v']} / {r['lava_compared_v']}"
                     if "lava_mismatched_v" in r else ""))
        print(f"| {name} | {', '.join(r['neurons'])} | "
              f"{' / '.join(f'{a:.3f}' for a in r['emulator_vs_float'])} | {ro} | {lv} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
