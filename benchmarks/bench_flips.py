"""Benchmark (issue 21): the known-draw attack gap — ``auto`` vs the union of every attack built.

Models: certify_snn's plain ``mnist_FC`` and certified ``FC_T_3_eps_0.06`` (FC512-FC256-FC10,
T = 10, rate read-out), the first ``--samples`` images of the MNIST test split, ε in ``--eps``
(ℓ∞), *known draw*: the host's per-example maps (``host_uniform(i, seed 0)``, the audit's).

Per (model, ε), in one process at a time:

1. ``old auto`` (only with ``--old-tree DIR``: a checkout of the commit before the spike-flip
   search, e.g. ``git archive <commit> | tar -x -C DIR``): the ``auto`` preset of that tree, run
   in a subprocess with ``PYTHONPATH=DIR`` — robust flags and CPU seconds;
2. ``auto``: this tree's preset, the same way (subprocess, so both CPU times are measured alike);
3. ``reference``: every point robust under both is attacked by long spike-flip searches
   (:data:`REFERENCE`: several surrogates × objectives, many iterations and restarts) and, with
   ``--ref-apgd``, by the audit's escalation round 1 (more surrogates, doubled APGD and Square);
4. ``union`` = broken by any of the above. Robust accuracy of every row is an upper bound on the
   truth (attacks only); ``auto``'s gap = union-broken points that ``auto`` calls robust.
5. masking checks (:func:`neurodeploy.attacks.masking.run_masking_checks` with the preset's main
   gradient, including ``flips_beat_apgd``) on the first ``--masking-samples`` images.

Per-example flags go to ``<out>/<model>_eps<ε>.json`` (``robust`` lists per row, ``broken_by``)
so that exact verdicts (the verifier) can be compared with them later; the Markdown table is
printed and, with ``--append FILE``, appended.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_flips.py --samples 200 \\
        --eps 0.1,0.05 --models plain,certified --old-tree OLD_TREE --append benchmarks/RESULTS_flips.md
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import torch

REPO = Path(__file__).resolve().parents[1]
CKPT = {"plain": "mnist_FC.pth.tar", "certified": "FC_T_3_eps_0.06.pth.tar"}

# (label, spike-set parameters) of the reference's long flip searches
REFERENCE: tuple[tuple[str, dict[str, Any]], ...] = (
    ("ref:fs5-ce", {"grad_mode": "bptt:fast_sigmoid:5", "objective": "ce", "k": 64}),
    ("ref:fs10-mix", {"grad_mode": "bptt:fast_sigmoid:10", "objective": "mix", "k": 32}),
    ("ref:fs20-cw", {"grad_mode": "bptt:fast_sigmoid:20", "objective": "cw", "loss": "margin",
                     "k": 16}),
    ("ref:model-mix", {"grad_mode": "bptt", "objective": "mix", "k": 64}),
    ("ref:fs25-ce", {"grad_mode": "bptt:fast_sigmoid:25", "objective": "ce", "k": 128}),
)


def build(model: str, samples: int, shared: Path) -> tuple[Any, torch.Tensor, torch.Tensor]:
    """The known-draw classifier of ``model`` and the first ``samples`` test-split images."""
    from neurodeploy.classifier import SNNClassifier
    from neurodeploy.data.idx import load_idx_split
    from neurodeploy.encoding import KnownDrawEncoder, host_uniform
    from neurodeploy.models import ModelConfig, import_state_dict

    m = import_state_dict(shared / "reference_models/certify_snn" / CKPT[model],
                          ModelConfig("FC512-FC256-FC10", (1, 28, 28), readout="rate")).eval()
    test = load_idx_split(shared / "data/mnist").test
    idx = torch.arange(samples)
    u = host_uniform(idx, 0, m.num_steps, (1, 28, 28))
    return SNNClassifier(m, KnownDrawEncoder(m.num_steps, u)).eval(), test.x[idx].float(), \
        test.y[idx]


def worker(args: argparse.Namespace) -> None:
    """Run the ``auto`` preset of whichever neurodeploy is importable; write flags + CPU."""
    from neurodeploy.attacks.engine import evaluate_robustness
    from neurodeploy.attacks.presets import expand

    torch.set_num_threads(args.threads)
    clf, x, y = build(args.model, args.samples, Path(args.shared))
    t, w = time.process_time(), time.perf_counter()
    r = evaluate_robustness(clf, x, y, expand([args.preset], clf), [args.eps], quiet=True)
    d = r.to_dict()["per_eps"][0]
    import neurodeploy

    out = {"cpu_s": time.process_time() - t, "wall_s": time.perf_counter() - w,
           "robust": [bool(v) for v in d["robust_flags"][0]], "broken_by": d["broken_by"],
           "broken_by_counts": d["broken_by_counts"], "step_wall_s": r.seconds,
           "clean_accuracy": r.clean_accuracy[0],
           "tree": "this" if REPO in Path(neurodeploy.__file__).resolve().parents else "other"}
    tmp = Path(args.worker_out + ".tmp")
    tmp.write_text(json.dumps(out))
    tmp.replace(args.worker_out)


def run_worker(args: argparse.Namespace, model: str, eps: float, tree: Path | None,
               out: Path) -> dict[str, Any]:
    out = out.resolve()
    if out.is_file():  # finished earlier (a resumed benchmark)
        return json.loads(out.read_text())
    env = dict(os.environ)
    if tree is not None:
        env["PYTHONPATH"] = str(tree)
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", "--model", model,
           "--eps", str(eps), "--samples", str(args.samples), "--threads", str(args.threads),
           "--shared", args.shared, "--worker-out", str(out), "--preset", args.preset]
    subprocess.run(cmd, env=env, check=True, cwd=str(tree) if tree is not None else None)
    return json.loads(out.read_text())


def reference(clf: Any, x: torch.Tensor, y: torch.Tensor, eps: float, rows: torch.Tensor,
              args: argparse.Namespace) -> tuple[dict[int, str], float]:
    """Attack ``rows`` with the reference; returns ``{row: label}`` of the broken ones, CPU s."""
    from neurodeploy.attacks.engine import evaluate_robustness
    from neurodeploy.attacks.presets import escalation

    specs: list[Any] = [("spike-set", {**p, "n_iter": args.ref_iter,
                                       "n_restarts": args.ref_restarts, "seed": args.ref_seed},
                          lab)
                        for lab, p in REFERENCE]
    if args.ref_apgd:
        specs += escalation(1, seed=args.ref_seed)
    if rows.numel() == 0:
        return {}, 0.0
    t = time.process_time()
    sub = clf.select(rows)
    # the engine's seed draws the searches' randomness (a spec's own seed only seeds an attack
    # run outside the engine): before session 10 every reference ran on engine seed 0
    r = evaluate_robustness(sub, x[rows], y[rows], specs, [eps], seed=args.ref_seed, quiet=True)
    by = r.broken_by[float(eps)]
    return {int(rows[i]): b for i, b in enumerate(by) if b is not None}, time.process_time() - t


def block_addon(args: argparse.Namespace, model: str, eps: float, out: Path) -> dict[str, Any]:
    """The preset's last step (``spike-block``, known draw) run separately on the points a
    finished ``auto`` run (``<tag>.new.json`` of a tree without it) left robust: its breaks and
    CPU seconds, so that run + this add-on = the preset with the step (its own seeds)."""
    from neurodeploy.attacks.engine import evaluate_robustness
    from neurodeploy.attacks.presets import preset

    if out.is_file():
        return json.loads(out.read_text())
    rec = json.loads(out.with_name(out.name.replace(".block.json", ".new.json")).read_text())
    clf, x, y = build(model, args.samples, Path(args.shared))
    rows = torch.tensor([i for i, r in enumerate(rec["robust"]) if r], dtype=torch.long)
    spec = [s for s in preset(args.preset) if s[0] == "spike-block"]
    t = time.process_time()
    r = evaluate_robustness(clf.select(rows), x[rows], y[rows], spec, [eps], quiet=True)
    by = r.broken_by[float(eps)]
    res = {"spec": [list(s) for s in spec], "cpu_s": time.process_time() - t,
           "rows": rows.tolist(), "broken": [int(rows[i]) for i, b in enumerate(by) if b]}
    out.write_text(json.dumps(res))
    return res


def masking(clf: Any, x: torch.Tensor, y: torch.Tensor, eps: float, m: int) -> list[dict]:
    from neurodeploy.attacks.masking import run_masking_checks
    from neurodeploy.attacks.presets import main_gradient

    rows = torch.arange(min(m, x.shape[0]))
    sub = clf.select(rows)
    res = run_masking_checks(sub, x[rows], y[rows], eps, attack_params=main_gradient(sub))
    return [c.to_dict() for c in res]


def one(args: argparse.Namespace, model: str, eps: float, out_dir: Path) -> dict[str, Any]:
    tag = f"{model}_eps{eps:g}"
    rec: dict[str, Any] = {"model": model, "eps": eps, "n": args.samples, "threat": "known draw",
                           "host_seed": 0}
    old_tree = Path(args.old_tree).resolve() if args.old_tree else None
    if old_tree is not None:
        rec["old_auto"] = run_worker(args, model, eps, old_tree, out_dir / f"{tag}.old.json")
    rec["auto"] = run_worker(args, model, eps, None, out_dir / f"{tag}.new.json")
    clf, x, y = build(model, args.samples, Path(args.shared))
    robust = torch.tensor(rec["auto"]["robust"])
    if "old_auto" in rec:
        robust &= torch.tensor(rec["old_auto"]["robust"])
    ref_by, ref_cpu = reference(clf, x, y, eps, robust.nonzero()[:, 0], args)
    union = robust.clone()
    for i in ref_by:
        union[i] = False
    rec["reference"] = {"broken_by": {str(k): v for k, v in ref_by.items()}, "cpu_s": ref_cpu,
                        "iterations": args.ref_iter, "restarts": args.ref_restarts,
                        "seed": args.ref_seed, "engine_seed": args.ref_seed,
                        "apgd_escalation": bool(args.ref_apgd)}
    rec["union_robust"] = [bool(v) for v in union]
    auto_r = torch.tensor(rec["auto"]["robust"])
    rec["gap"] = int((auto_r & ~union).sum())
    if args.masking_samples > 0:
        rec["masking"] = masking(clf, x, y, eps, args.masking_samples)
    (out_dir / f"{tag}.json").write_text(json.dumps(rec, indent=1))
    return rec


BUDGET_HEADER = ("| model | ε | n | old auto robust % [95 % CI] | auto robust % [95 % CI] | old auto "
                 "CPU s | auto CPU s | ratio | round-2 breaks not broken now |\n"
                 "|---|---|---|---|---|---|---|---|---|")


def budget(args: argparse.Namespace, model: str, eps: float, out_dir: Path) -> str:
    """``--budget``: old and new ``auto`` (CPU side by side, no reference) and whether the new
    one still breaks every point the round-2 ``auto`` broke (``--round2`` per-point JSONs)."""
    tag = f"{model}_eps{eps:g}"
    old = run_worker(args, model, eps, Path(args.old_tree).resolve(), out_dir / f"{tag}.old.json")
    new = run_worker(args, model, eps, None, out_dir / f"{tag}.new.json")
    r2 = json.loads((Path(args.round2) / f"{tag}.new.json").read_text())["robust"][: args.samples]
    lost = [i for i, (a, b) in enumerate(zip(r2, new["robust"], strict=True)) if not a and b]

    def cell(flags: list[bool]) -> str:
        k = sum(flags)
        lo, hi = wilson(k, len(flags))
        return f"{100 * k / len(flags):.1f} [{100 * lo:.1f}, {100 * hi:.1f}]"

    return (f"| {model} | {eps:g} | {args.samples} | {cell(old['robust'])} | "
            f"{cell(new['robust'])} | {old['cpu_s']:.0f} | {new['cpu_s']:.0f} | "
            f"**{new['cpu_s'] / old['cpu_s']:.2f}** | {lost or 'none'} |")


def flip_alone(args: argparse.Namespace, rec: dict[str, Any]) -> dict[str, Any]:
    """The preset's first spike-flip search alone on every clean-correct point: how much of what
    the whole ``auto`` breaks it breaks by itself."""
    from neurodeploy.attacks import is_correct, make_attack
    from neurodeploy.attacks.presets import preset

    clf, x, y = build(rec["model"], rec["n"], Path(args.shared))
    name, params, label = next(s for s in preset(args.preset) if s[0] == "spike-set")
    t = time.process_time()
    xa = make_attack(name, **params).perturb(clf, x, y, rec["eps"],
                                             torch.Generator().manual_seed(0))
    with torch.no_grad():
        broken = ~is_correct(clf(xa), y) & is_correct(clf(x), y)
    auto_broken = ~torch.tensor(rec["auto"]["robust"]) & is_correct(clf(x), y)
    return {"label": label, "params": params, "cpu_s": time.process_time() - t,
            "broken": [bool(v) for v in broken], "auto_broken": int(auto_broken.sum()),
            "of_auto_broken": int((broken & auto_broken).sum())}


def report(args: argparse.Namespace) -> list[str]:
    """Rows of every finished ``<model>_eps<ε>.json`` under ``--out`` (adds the flip-alone run
    where it is missing)."""
    lines = []
    for model in args.models.split(","):
        for eps in (float(e) for e in args.eps.split(",")):
            path = Path(args.out) / f"{model}_eps{eps:g}.json"
            if not path.is_file():
                continue
            rec = json.loads(path.read_text())
            if "flip_alone" not in rec:
                rec["flip_alone"] = flip_alone(args, rec)
                path.write_text(json.dumps(rec, indent=1))
            lines.append(row(rec))
    return lines


def wilson(k: int, n: int) -> tuple[float, float]:
    """95 % Wilson interval of k/n (a copy of ``neurodeploy.audit.stats.wilson``: the ``--old-tree``
    workers run this file against trees that predate it)."""
    z = 1.96
    p = k / n
    den = 1 + z * z / n
    c = (p + z * z / (2 * n)) / den
    h = z * ((p * (1 - p) / n + z * z / (4 * n * n)) ** 0.5) / den
    return c - h, c + h


def row(rec: dict[str, Any]) -> str:
    n = rec["n"]

    def cell(flags: list[bool]) -> str:
        k = sum(flags)
        lo, hi = wilson(k, n)
        return f"{100 * k / n:.1f} [{100 * lo:.1f}, {100 * hi:.1f}]"

    old = rec.get("old_auto")
    checks = rec.get("masking")
    ck = "not run" if checks is None else (
        "all passed" if all(c["passed"] for c in checks)
        else "failed: " + ", ".join(c["name"] for c in checks if not c["passed"]))
    ratio = f"{rec['auto']['cpu_s'] / old['cpu_s']:.2f}" if old else "–"
    fa = rec.get("flip_alone")
    alone = f"{fa['of_auto_broken']}/{fa['auto_broken']}" if fa else "–"
    cells = [rec["model"], f"{rec['eps']:g}", cell(old["robust"]) if old else "–",
             cell(rec["auto"]["robust"]), cell(rec["union_robust"]), str(rec["gap"]), alone,
             f"{old['cpu_s']:.0f}" if old else "–", f"{rec['auto']['cpu_s']:.0f}", ratio, ck]
    return "| " + " | ".join(cells) + " |"


HEADER = ("| model | ε | old auto robust % [95 % CI] | auto robust % | union robust % | "
          "auto misses | first flip search alone (of auto's breaks) | old auto CPU s | auto CPU s | "
          "ratio | masking checks |\n|---|---|---|---|---|---|---|---|---|---|---|")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--samples", type=int, default=200)
    ap.add_argument("--eps", default="0.1,0.05")
    ap.add_argument("--models", default="plain,certified")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--preset", default="auto")
    ap.add_argument("--old-tree", default=None, help="checkout of the previous commit (timing)")
    ap.add_argument("--ref-iter", type=int, default=300)
    ap.add_argument("--ref-restarts", type=int, default=3)
    ap.add_argument("--ref-apgd", action="store_true", help="add the escalation round 1 specs")
    ap.add_argument("--ref-seed", type=int, default=0,
                    help="the reference's engine seed (0: the reference of rounds 2–5)")
    ap.add_argument("--masking-samples", type=int, default=32)
    ap.add_argument("--shared", default=str(REPO.parent / "shared"))
    ap.add_argument("--out", default="runs/flips")
    ap.add_argument("--append", default=None)
    ap.add_argument("--report", action="store_true",
                    help="only tabulate finished results (running the flip-alone rows)")
    ap.add_argument("--block-addon", action="store_true",
                    help="run only the spike-block add-on on finished <model>_eps<ε>.new.json")
    ap.add_argument("--budget", action="store_true",
                    help="only old vs new auto (CPU ratio; needs --old-tree) and the points the "
                         "round-2 auto broke that the new one does not (--round2)")
    ap.add_argument("--round2", default=str(REPO / "benchmarks/results/flips200"))
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--model", default="plain", help=argparse.SUPPRESS)
    ap.add_argument("--worker-out", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        args.eps = float(args.eps)
        worker(args)
        return
    torch.set_num_threads(args.threads)
    if args.block_addon:
        for model in args.models.split(","):
            for eps in (float(e) for e in args.eps.split(",")):
                tag = f"{model}_eps{eps:g}"
                b = block_addon(args, model, eps, Path(args.out) / f"{tag}.block.json")
                print(f"{tag}: spike-block broke {len(b['broken'])} of {len(b['rows'])} "
                      f"({b['broken']}), {b['cpu_s']:.1f} s CPU", flush=True)
        return
    if args.report:
        print("\n".join([HEADER, *report(args)]))
        return
    if args.budget:
        Path(args.out).mkdir(parents=True, exist_ok=True)
        print(f"load {os.getloadavg()[0]:.1f}\n{BUDGET_HEADER}", flush=True)
        for model in args.models.split(","):
            for eps in (float(e) for e in args.eps.split(",")):
                print(budget(args, model, eps, Path(args.out)), f"load {os.getloadavg()[0]:.1f}",
                      flush=True)
        return
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    load0 = os.getloadavg()
    lines = [HEADER]
    print(HEADER, flush=True)
    for model in args.models.split(","):
        for eps in (float(e) for e in args.eps.split(",")):
            line = row(one(args, model, eps, out_dir))
            lines.append(line)
            print(line, flush=True)
    load1 = os.getloadavg()
    head = (f"\n### bench_flips.py — {datetime.date.today()}\n\nCommand: `.venv/bin/python "
            f"benchmarks/bench_flips.py {' '.join(sys.argv[1:])}`  \nMachine: {platform.node()} "
            f"({os.cpu_count()} cores), {args.threads} thread(s); load average at start "
            f"{load0[0]:.1f}, at end {load1[0]:.1f}. Known draw, n = {args.samples}; robust "
            f"accuracies are upper bounds (attacks only).\n\n")
    text = head + "\n".join(lines) + "\n"
    if args.append:
        with open(args.append, "a") as fh:
            fh.write(text)


if __name__ == "__main__":
    main()
