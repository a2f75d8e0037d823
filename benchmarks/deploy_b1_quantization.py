"""Quantization error, resources and float ↔ integer spike agreement of the certify_snn
reference checkpoints compiled for the shipped Loihi profiles.

Run by hand:  .venv/bin/python benchmarks/deploy_b1_quantization.py [--n 2000]

Float model: SpikingNet (import_state_dict, FC512-FC256-FC10, α = θ = 0.25, T = 10).
Integer model: the compiled plan run by neurodeploy.sims.emulator.Emulator (bit-exact Lava
arithmetic, delays removed). Both see the same Bernoulli spikes (seed 0) of the last 2000
images of the MNIST t10k file (the project's t10k-only test split).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from neurodeploy.data.core import load_dataset
from neurodeploy.encoding import BernoulliEncoder, make_generator
from neurodeploy.exporters.compiler import compile_model
from neurodeploy.models import ModelConfig, import_state_dict

SHARED = Path(__file__).resolve().parents[2] / "shared"
CKPTS = ("mnist_FC.pth.tar", "FC_T_3_eps_0.06.pth.tar")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=2000)
    ap.add_argument("--batch", type=int, default=250)
    args = ap.parse_args()
    torch.set_num_threads(1)
    from neurodeploy.sims.emulator import Emulator

    split = load_dataset(str(SHARED / "data" / "mnist"))
    x_all, y_all = split.test.x[: args.n], split.test.y[: args.n]
    cfg = ModelConfig("FC512-FC256-FC10", (1, 28, 28), readout="rate")
    for ck in CKPTS:
        model = import_state_dict(SHARED / "reference_models" / "certify_snn" / ck, cfg)
        for prof in ("loihi2", "loihi1"):
            t0 = time.perf_counter()
            plan = compile_model(model, prof)
            t_compile = time.perf_counter() - t0
            print(f"\n## {ck} on {prof} (compile {t_compile:.2f} s)")
            res = plan.resources
            print(f"cores {res['cores_used']}/{res['cores_available']}, per layer "
                  f"{[(i['token'], i['cores'], max(i['neurons_per_core'])) for i in res['layers']]}")
            print("| layer | scale | vth | bias_exp | w max err/max|W| | w mean err/max|W| | "
                  "zeroed | θ err | bias max err/θ | α err | v headroom |")
            print("|---|---|---|---|---|---|---|---|---|---|---|")
            for name, q in plan.quantization.items():
                if name == "summary":
                    continue
                print(f"| {name} {q['token']} | {q['scale']:g} | {q['vth']} | {q['bias_exp']} | "
                      f"{100 * q['weight_max_abs_err_rel']:.3f} % | "
                      f"{100 * q['weight_mean_abs_err_rel']:.3f} % | "
                      f"{100 * q['weights_zeroed_frac']:.2f} % | "
                      f"{100 * q['threshold_err_rel']:.3f} % | "
                      f"{100 * q['bias_max_abs_err_rel_theta']:.4f} % | {q['decay_abs_err']:g} | "
                      f"{q['v_state_headroom']:.2f} |")
            if prof != "loihi2":
                continue  # same bit widths → same integers; only resources differ
            emu = Emulator(plan)
            enc, g = BernoulliEncoder(10), make_generator(0)
            agree = [0.0, 0.0, 0.0]
            n_el = [0, 0, 0]
            corr_f = corr_q = same_pred = 0
            t0 = time.perf_counter()
            for i in range(0, len(x_all), args.batch):
                xb, yb = x_all[i:i + args.batch], y_all[i:i + args.batch]
                s = enc(xb, g)
                with torch.no_grad():
                    tr = model.run(s, record=True)
                er = emu.run(s, record=True)
                for k in range(3):
                    a, b = tr.spikes[k].to(torch.uint8), er.layer_spikes[k].cpu()
                    agree[k] += float((a == b).sum())
                    n_el[k] += a.numel()
                pf = tr.out_spikes.sum(0).argmax(1)
                pq = er.counts.cpu().argmax(1)
                corr_f += int((pf == yb).sum())
                corr_q += int((pq == yb).sum())
                same_pred += int((pf == pq).sum())
            dt = time.perf_counter() - t0
            n = len(x_all)
            print(f"spike agreement float vs integer per layer: "
                  f"{[f'{100 * a / m:.3f} %' for a, m in zip(agree, n_el, strict=True)]}; "
                  f"accuracy float {100 * corr_f / n:.2f} % vs integer {100 * corr_q / n:.2f} %"
                  f" on {n} images; same prediction {100 * same_pred / n:.2f} % ({dt:.1f} s)")


if __name__ == "__main__":
    main()
