"""Efficiency of certify_snn's reference models, float vs deployed (loihi2 plan), on clean and
adversarial MNIST images: NeuroBench-definition activity and the chip cost estimate.

Adversarial inputs: APGD-CE on the float model under the known draw (host maps, seed 0), as the
attack engine returns them: the adversarial example where the attack fooled the model, the clean
image where it did not (so the ratio is diluted by the robust points). Not a timing; run single-threaded::

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/efficiency_reference.py --samples 200 \
        --out benchmarks/results/efficiency_reference.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

MODELS = {
    "mnist_FC (plain BPTT)": "mnist_FC.pth.tar",
    "FC_T_3_eps_0.06 (certified)": "FC_T_3_eps_0.06.pth.tar",
}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--shared", default=str(Path(__file__).resolve().parents[2] / "shared"))
    ap.add_argument("--samples", type=int, default=200)
    ap.add_argument("--eps", type=float, default=0.06)
    ap.add_argument("--steps", type=int, default=20, help="APGD-CE iterations")
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    torch.set_num_threads(1)

    from neurodeploy.attacks.engine import evaluate_robustness
    from neurodeploy.classifier import SNNClassifier
    from neurodeploy.data.core import load_dataset
    from neurodeploy.efficiency import efficiency_section
    from neurodeploy.encoding import KnownDrawEncoder, host_uniform
    from neurodeploy.exporters.compiler import compile_model
    from neurodeploy.models import ModelConfig, import_state_dict

    shared = Path(args.shared)
    test = load_dataset(shared / "data" / "mnist").test
    x, y = test.x[: args.samples].float(), test.y[: args.samples].long()
    T = 10
    idx = torch.arange(len(y))
    u = host_uniform(idx, 0, T, tuple(x.shape[1:]))
    out = {"samples": len(y), "eps": args.eps, "attack": f"apgd-ce {args.steps} it., known draw",
           "models": {}}
    for label, fname in MODELS.items():
        model = import_state_dict(shared / "reference_models" / "certify_snn" / fname,
                                  ModelConfig("FC512-FC256-FC10", (1, 28, 28), num_steps=T,
                                              readout="rate")).eval()
        plan = compile_model(model, profile="loihi2")
        clf = SNNClassifier(model, KnownDrawEncoder(T, u), seed=0)
        res = evaluate_robustness(clf, x, y, [("apgd-ce", {"n_iter": args.steps})], [args.eps],
                                  seed=0, quiet=True)
        x_adv = res.adversarial[args.eps].cpu()
        sec = efficiency_section(model, plan, x, x_adv,
                                 lambda v: (v.detach().float().unsqueeze(0) > u).float())
        sec["robust_accuracy_float"] = float(res.robust[args.eps].float().mean())
        # the examples the attack actually changed (the engine keeps x where it failed)
        moved = (x_adv != x).flatten(1).any(1)
        sec["changed_examples"] = int(moved.sum())
        if int(moved.sum()):
            sub = efficiency_section(model, plan, x[moved], x_adv[moved],
                                     lambda v, m=moved: (v.detach().float().unsqueeze(0)
                                                         > u[:, m]).float())
            sec["ratio_on_changed_examples"] = sub["ratio_adversarial_over_clean"]
        out["models"][label] = sec
        r = sec["ratio_adversarial_over_clean"]
        print(f"{label}: synops float ×{r['float']['synaptic_operations']:.3f}, deployed "
              f"×{r['deployed']['synaptic_operations']:.3f}; energy clean "
              f"{sec['cost_clean']['energy_per_inference_nj']:.1f} nJ → adversarial "
              f"{sec['cost_adversarial']['energy_per_inference_nj']:.1f} nJ; robust acc float "
              f"{sec['robust_accuracy_float']:.3f}; on the {sec['changed_examples']} changed "
              f"examples synops float ×"
              f"{sec.get('ratio_on_changed_examples', {}).get('float', {}).get('synaptic_operations', float('nan')):.3f}"
              f", deployed ×"
              f"{sec.get('ratio_on_changed_examples', {}).get('deployed', {}).get('synaptic_operations', float('nan')):.3f}")
    if args.out:
        from neurodeploy.atomicio import write_text_atomic

        write_text_atomic(Path(args.out), json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
