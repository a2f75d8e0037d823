"""``neurodeploy attack``: robust accuracy of a checkpoint under a list of attacks and budgets.

Example::

    neurodeploy attack --model run/model.pt --data digits --eps 0.05,0.1 --samples 200 \\
        --out robust.json                      # the auto cascade, known-draw threat model

Attacks: ``--attacks auto`` (default; ``auto-demo`` is a smaller budget) runs the fixed SNN
cascade of :mod:`neurodeploy.attacks.presets` — surrogate/loss sweep, APGD-CE/DLR/T, the
known-draw spike-set search, Square-1000 — each only on the points still robust; single
attacks can be listed instead (``--attacks pgd,apgd-ce``).

Threat models (``--threat``, every result names its own):

- ``known`` (default) — the attacker knows each example's Bernoulli map (the host's map,
  ``encoding.host_uniform`` with ``--seed``: what the chip is fed); deterministic;
- ``unknown`` — fresh draws at evaluation (``--draws``, at least 5: mean ± 95 % interval),
  EoT while crafting (``--eot``, default 10);
- ``both``.

Direct-current and spike-input models have no Bernoulli draw: their threat model is named
``deterministic`` (direct) or ``spikes``.

After the attacks the gradient-masking checks run on ``--check-samples`` points at the largest
ε (``--no-checks`` skips them). The headline printed at the end names the preset, the threat
model and the checks' outcome; when a check failed the robust accuracy is an **upper bound**.
Prints a table (ε × cumulative robust accuracy after each attack) and writes the JSON record
atomically. ``--resume`` continues an interrupted run from ``<out>.state*.pt``.
Plain state dicts (certify_snn) need ``--arch`` (and usually ``--readout rate``).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from neurodeploy.cli.common import add_common, resolve_device
from neurodeploy.scale.cli import add_scale_args, scale_options


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "attack",
        help="evaluate robust accuracy under attacks (worst case per example, per epsilon)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--model", required=True, help="neurodeploy checkpoint, or a plain state dict with --arch")
    p.add_argument("--arch", default=None, help="architecture string for plain state dicts (e.g. FC512-FC256-FC10)")
    p.add_argument("--readout", default="rate", help="readout for --arch models (count|rate|membrane; default rate)")
    p.add_argument("--encoding", default="bernoulli", help="encoding for --arch models (default bernoulli)")
    p.add_argument("--steps", "--num-steps", dest="num_steps", type=int, default=10, help="time steps for --arch models (default 10)")
    p.add_argument("--data", default="digits", help="digits, or a folder (MNIST IDX, N-MNIST)")
    p.add_argument("--attacks", default="auto", help="a preset (auto, auto-demo) and/or attack names, run in order (default auto)")
    p.add_argument("--threat", default="known", choices=("known", "unknown", "both"),
                   help="Bernoulli threat model: known host map, unknown (fresh draws), or both (default known)")
    p.add_argument("--no-checks", dest="checks", action="store_false", help="skip the gradient-masking checks (default: they run)")
    p.add_argument("--check-samples", type=int, default=48, help="points for the masking checks (default 48)")
    p.add_argument("--eps", required=True, help="comma-separated budgets (ℓ∞ radius in [0,1]; integer flips for spikes)")
    p.add_argument("--samples", type=int, default=200, help="first N test examples (default 200)")
    p.add_argument("--eot", type=int, default=None, help="EoT draws per gradient (default: 10 under --threat unknown and for noisy neurons, else 1; the audit's default is 4)")
    p.add_argument("--draws", type=int, default=5, help="independent evaluations under --threat unknown (>= 5; mean ± 95%% CI)")
    p.add_argument("--grad-mode", default="bptt", help="for single attacks: bptt, bptt:<surrogate>, bptr or rga")
    p.add_argument("--set", action="append", default=[], metavar="ATTACK.FIELD=VALUE",
                   help="attack parameter, e.g. --set apgd-ce.n_iter=50 (repeatable)")
    p.add_argument("--batch-size", type=int, default=None, help="attack batch size (default: all)")
    p.add_argument("--resume", action="store_true", help="resume from <out>.state.pt")
    p.add_argument("--exact", default=None, metavar="VERIFY_JSON",
                   help="a `neurodeploy verify` JSON: print exact <= attack (known draw)")
    add_common(p, out_help="result file (JSON; without it the tables are only printed); "
               "--resume state lives beside it")
    add_scale_args(p)  # --workers / --ray-address / --shard-size (neurodeploy.scale)
    p.set_defaults(func=run)


def _parse_eps(text: str) -> list[float]:
    from neurodeploy.cli.argtypes import parse_float_list

    return parse_float_list(text, "--eps", lo=0.0)


def _parse_sets(items: list[str], names: list[str]) -> dict[str, dict[str, Any]]:
    from neurodeploy.errors import ConfigError

    out: dict[str, dict[str, Any]] = {n: {} for n in names}
    for item in items:
        key, sep, val = item.partition("=")
        name, dot, fld = key.rpartition(".")
        if not sep or not dot:
            raise ConfigError(f"--set {item!r}: expected ATTACK.FIELD=VALUE")
        if name not in out:
            raise ConfigError(f"--set {item!r}: attack {name!r} is not in --attacks {names}")
        try:
            value: Any = json.loads(val)
        except json.JSONDecodeError:
            value = val
        except RecursionError:  # nested deeper than the parser goes
            raise ConfigError(f"--set {key}: value nested too deep") from None
        out[name][fld] = value
    return out


def _write_json_atomic(obj: Any, path: Path) -> None:
    from neurodeploy.atomicio import write_text_atomic

    write_text_atomic(path, json.dumps(obj, indent=1))


def load_model(args: argparse.Namespace, input_shape: tuple[int, ...] | None, device: Any) -> Any:
    from neurodeploy.models import ModelConfig, import_state_dict, load_checkpoint

    if args.arch:
        if input_shape is None:
            from neurodeploy.errors import ConfigError

            raise ConfigError("--arch needs the data to know the input shape")
        cfg = ModelConfig(args.arch, input_shape, num_steps=args.num_steps, readout=args.readout,
                          encoding=args.encoding)
        model = import_state_dict(args.model, cfg)
    else:
        model, _ = load_checkpoint(args.model)
    return model.to(device).eval()


def threat_classifier(model: Any, threat: str, n: int, seed: int) -> tuple[Any, str]:
    """The classifier of one threat model and its name (module docstring)."""
    from neurodeploy.classifier import SNNClassifier
    from neurodeploy.encoding import KnownDrawEncoder

    enc = model.config.encoding
    if enc != "bernoulli":
        return SNNClassifier(model, seed=seed), ("spikes" if enc == "spikes" else "deterministic")
    if threat == "known":
        known = KnownDrawEncoder.from_host(list(range(n)), seed, model.config.num_steps,
                                           tuple(model.config.input_shape))
        return SNNClassifier(model, known, seed=seed), "known draw"
    return SNNClassifier(model, seed=seed), "unknown draw"


def headline(result: Any, attacks_label: str, threat: str, checks: list[Any] | None) -> list[str]:
    """One line per ε: the robust accuracy with its preset, threat model and checks' outcome."""
    failed = [c.name for c in (checks or []) if not c.passed]
    if checks is None:
        state = "masking checks not run: the number may be an overestimate"
    elif failed:
        state = f"masking checks FAILED ({', '.join(failed)}): upper bound"
    else:
        state = f"masking checks passed ({len(checks)}/{len(checks)})"
    out = []
    for e in result.eps_list:
        s = result._summary(result.robust_accuracy[e])
        ci = ""
        if s["ci95"]:  # a t-interval of a proportion, shown within [0, 100] %
            lo, hi = max(0.0, s["ci95"][0]), min(1.0, s["ci95"][1])
            ci = f" [95 % CI {100 * lo:.1f}, {100 * hi:.1f}]"
        bound = "≤ " if failed or checks is None else ""
        out.append(f"robust accuracy at eps={e:g}: {bound}{100 * s['mean']:.1f} %{ci} "
                   f"(attacks {attacks_label}, {threat}, n={result.n_examples}; {state})")
    return out


def run(args: argparse.Namespace) -> int:
    import torch

    from neurodeploy.attacks.base import make_attack
    from neurodeploy.attacks.engine import evaluate_robustness, format_table
    from neurodeploy.attacks.masking import run_masking_checks
    from neurodeploy.attacks.presets import PRESETS, main_gradient
    from neurodeploy.data.core import load_dataset
    from neurodeploy.errors import ConfigError

    names = [n.strip().lower() for n in args.attacks.split(",") if n.strip()]
    if not names:
        raise ConfigError("--attacks: no attack names given")
    eps_list = _parse_eps(args.eps)
    if any(e < 0 for e in eps_list):
        raise ConfigError(f"--eps: budgets must be >= 0, got {eps_list}")
    if args.samples < 1:
        raise ConfigError("--samples must be >= 1")
    if args.check_samples < 1:
        raise ConfigError("--check-samples must be >= 1")
    if args.threat in ("unknown", "both") and args.draws < 5:
        raise ConfigError(f"--draws {args.draws}: the unknown-draw threat model needs >= 5 draws")
    singles = [n for n in names if n not in PRESETS]
    params = _parse_sets(args.set, singles)
    attacks: list[Any] = []
    for n in names:  # validates names and parameters before any heavy work
        if n in PRESETS:
            attacks.append(n)
            continue
        probe = make_attack(n, **params[n])
        fields = set(vars(probe.config)) if hasattr(probe.config, "__dict__") else set()
        p = dict(params[n])
        if "grad_mode" in fields and "grad_mode" not in p:
            p["grad_mode"] = args.grad_mode
        if args.eot is not None and "eot_iter" in fields and "eot_iter" not in p:
            p["eot_iter"] = args.eot
        attacks.append((n, p))
    if args.resume and not args.out:
        raise ConfigError("--resume needs --out (the state lives beside the output file)")

    device = resolve_device(args.device)
    torch.manual_seed(args.seed)
    split = load_dataset(args.data, args.num_steps)
    test = split.test.subset(args.samples)
    model = load_model(args, tuple(test.x.shape[1:]), device)
    x = test.x.to(device)
    y = test.y.to(device)
    if model.config.encoding == "spikes" and x.dim() == len(model.config.input_shape) + 2:
        x = x.movedim(1, 0).contiguous()  # [N, T, …] → time-first [T, N, …]
    threats = ["known", "unknown"] if args.threat == "both" else [args.threat]
    label = ",".join(names)
    records, lines = [], []
    for threat in threats:
        clf, tname = threat_classifier(model, threat, len(y), args.seed)
        stochastic = bool(clf.stochastic)
        state_path = None
        if args.out:
            out = Path(args.out)
            state_path = out.with_name(f"{out.name}.state-{threat}.pt")
            if not args.resume and state_path.exists():
                state_path.unlink()
        scale = scale_options(args)
        if scale is None:
            result = evaluate_robustness(
                clf, x, y, attacks, eps_list, seed=args.seed,
                draws=args.draws if stochastic else 1, state_path=state_path, quiet=args.quiet,
                batch_size=args.batch_size,
                eot_iter=(args.eot if args.eot is not None else 10) if stochastic else args.eot,
            )
        else:  # shards of samples, each seeded from its indices: serial loop or Ray tasks
            result = _sharded(args, scale, clf, x, y, attacks, eps_list, stochastic, threat,
                              device)
        print(f"threat model: {tname}")
        print(format_table(result))
        checks = None
        if args.checks and max(eps_list) > 0:
            k = min(args.check_samples, len(y))
            sel = torch.arange(k, device=x.device)
            cclf = clf.select(sel) if hasattr(clf, "select") else clf
            xs = x.index_select(1 if x.dim() == len(model.config.input_shape) + 2 else 0, sel)
            checks = run_masking_checks(
                cclf, xs, y[:k], max(eps_list), seed=args.seed,
                attack_params=main_gradient(cclf) if "auto" in label else None,
                eot_iter=(args.eot or 10) if stochastic else None)
            for c in checks:
                print(f"  check {c.name}: {'passed' if c.passed else 'FAILED'} — {c.message}")
        rec = result.to_dict()
        rec["threat_model"] = tname
        if scale is not None:
            rec["sharding"] = scale.to_dict()
        rec["attack_preset"] = label
        rec["masking_checks"] = None if checks is None else [c.to_dict() for c in checks]
        records.append(rec)
        lines += headline(result, label, tname, checks)
        if args.exact and threat == "known":
            from neurodeploy.verify.sandwich import exact_line

            lines += [exact_line(args.exact, "attack", result.robust_accuracy[e][0], e,
                                 str(args.model), len(y)) for e in eps_list]
    if args.out:
        doc: dict[str, Any] = {"format": "neurodeploy-attack", "version": 2,
                               "results": records}
        doc["model"] = str(args.model)
        doc["data"] = {"source": str(args.data), "split": split.description, "samples": len(test)}
        doc["command"] = {k: v for k, v in vars(args).items() if k != "func"}
        _write_json_atomic(doc, Path(args.out))
        for threat in threats:
            sp = Path(args.out).with_name(f"{Path(args.out).name}.state-{threat}.pt")
            if sp.exists():
                sp.unlink()
            import shutil

            shutil.rmtree(_shard_dir(args.out, threat), ignore_errors=True)
        print(f"wrote {args.out}")
    for line in lines:
        print(line)
    return 0


def _shard_dir(out: str, threat: str) -> Path:
    return Path(out).with_name(f"{Path(out).name}.shards-{threat}")


def _sharded(args: argparse.Namespace, scale: Any, clf: Any, x: Any, y: Any, attacks: list[Any],
             eps_list: list[float], stochastic: bool, threat: str, device: Any) -> Any:
    """The engine over shards of samples (:mod:`neurodeploy.scale.robustness`); with ``--out``
    the finished shards checkpoint to ``<out>.shards-<threat>/`` (kept for ``--resume``)."""
    import shutil

    from neurodeploy.scale.robustness import evaluate_robustness_sharded

    state_dir = None
    if args.out:
        state_dir = _shard_dir(args.out, threat)
        if not args.resume and state_dir.exists():
            shutil.rmtree(state_dir)
    return evaluate_robustness_sharded(
        clf, x, y, attacks, eps_list, seed=args.seed, draws=args.draws if stochastic else 1,
        batch_size=args.batch_size,
        eot_iter=(args.eot if args.eot is not None else 10) if stochastic else args.eot,
        shard_size=scale.shard_size, workers=scale.workers, address=scale.address,
        state_dir=state_dir, device=str(device))
