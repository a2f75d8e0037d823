"""SpikingJelly in, netx out, lava-dl in: the figures of README's interop rows (issue 23).

    python benchmarks/interop_spikingjelly_netx.py [--lava] [--out FILE.json]

* SpikingJelly: every neuron option (IF / LIF / PLIF, decay_input, hard reset to v_reset,
  soft reset) in single- and multi-step mode, and a CNN with BatchNorm / AvgPool / Flatten:
  converted graph (float64) vs SpikingJelly's own forward, mismatched / compared spikes over
  all layers; the CNN's emulator vs float per-layer agreement; with ``--lava`` its plan on Lava
  (our runner) vs the emulator and the plan as a netx file run by lava-dl's own loader.
* The spikes are random Bernoulli(0.5) inputs, T = 30, 16 samples.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

T, B = 30, 16


def _sj_rows() -> tuple[list[dict], object]:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    from test_spikingjelly import NEURONS, _mlp, _spikes_by_layer

    from neurodeploy.exporters.nir_interp import NIRModel
    from neurodeploy.exporters.spikingjelly import convert

    rows = []
    g = torch.Generator().manual_seed(0)
    for kind in sorted(NEURONS):
        bad = total = 0
        for mode in "sm":
            net = _mlp(NEURONS[kind], mode).double().eval()
            x = (torch.rand((T, B, 12), generator=g) < 0.5).double()
            ref = _spikes_by_layer(net, x)
            ours = NIRModel(convert(net, (12,)), dtype=torch.float64).run(x).spikes
            for a, b in zip(ref, ours, strict=True):
                bad += int((a.reshape(b.shape) != b).sum())
                total += b.numel()
        rows.append({"case": kind, "mismatched": bad, "compared": total})
    return rows, g


def _cnn():
    from spikingjelly.activation_based import functional, layer, neuron

    torch.manual_seed(3)
    net = torch.nn.Sequential(
        layer.Conv2d(1, 8, 3, padding=1), layer.BatchNorm2d(8),
        neuron.LIFNode(tau=2.0, v_threshold=0.4), layer.AvgPool2d(2), layer.Flatten(),
        layer.Linear(128, 10), neuron.ParametricLIFNode(init_tau=2.0, v_threshold=0.3))
    with torch.no_grad():
        net[1].running_mean.uniform_(-0.3, 0.3)
        net[1].running_var.uniform_(0.5, 2.0)
        net[5].weight.mul_(6.0)
    functional.set_step_mode(net, "m")
    return net.eval()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--lava", action="store_true")
    ap.add_argument("--out", default=None)
    a = ap.parse_args()
    torch.set_num_threads(1)
    from neurodeploy.exporters.netx import with_netx_bias, write_netx
    from neurodeploy.exporters.nir_interp import NIRModel
    from neurodeploy.exporters.profiles import load_profile
    from neurodeploy.exporters.spikingjelly import compile_module
    from neurodeploy.sims.emulator import Emulator

    rows, g = _sj_rows()
    net = _cnn()
    dep = compile_module(net, load_profile("loihi2"), T, (1, 8, 8))
    x = (torch.rand((T, B, 1, 8, 8), generator=g) < 0.5).to(torch.uint8)
    ref = NIRModel(dep.dgraph).run(x.float()).spikes
    emu = Emulator(dep.plan).run(x).layer_spikes
    agree = [round(float(((a.reshape(T, B, -1) > 0).numpy() ==
                          (np.asarray(b).reshape(T, B, -1) > 0)).mean()), 4)
             for a, b in zip(ref, emu, strict=True)]
    res = {"T": T, "B": B, "spikingjelly": rows, "cnn_emulator_vs_float": agree,
           "cnn_plan_neurons": [L.neuron for L in dep.plan.layers]}
    if a.lava:
        from neurodeploy.sims.lava_env import run_lava
        from neurodeploy.sims.netx_runner import run_netx

        lv = run_lava(dep.plan, x.numpy(), record_layers=True)
        n = sum(int(np.asarray(e).size) for e in emu)
        bad = sum(int((np.asarray(lv.layer_spikes[k]).reshape(np.asarray(e).shape) != np.asarray(e))
                      .sum()) for k, e in enumerate(emu))
        res["cnn_lava_vs_emulator"] = [bad, n]
        q, notes = with_netx_bias(dep.plan)
        emu_q = Emulator(q).run(x).layer_spikes
        with tempfile.TemporaryDirectory() as d:
            write_netx(q, Path(d) / "net.net")
            nx, _ = run_netx(Path(d) / "net.net", x.numpy(), timeout_s=1800)
        bad = sum(int((nx[k] != np.asarray(e).reshape(nx[k].shape)).sum())
                  for k, e in enumerate(emu_q))
        res["cnn_netx_vs_emulator"] = [bad, sum(v.size for v in nx)]
        res["netx_bias_notes"] = notes
    text = json.dumps(res, indent=1)
    print(text)
    if a.out:
        Path(a.out).write_text(text + "\n")


if __name__ == "__main__":
    main()
