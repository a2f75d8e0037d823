"""``neurodeploy attack``: robust accuracy of a checkpoint under a list of attacks and budgets.

Example::

    neurodeploy attack --model run/model.pt --data digits --attacks apgd-ce,pgd \\
        --eps 0.05,0.1 --samples 200 --out robust.json

Prints a table (ε × cumulative robust accuracy after each attack) and writes the engine's
JSON record atomically. ``--resume`` continues an interrupted run from ``<out>.state.pt``.
Plain state dicts (certify_snn) need ``--arch`` (and usually ``--readout rate``).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from neurodeploy.cli.common import add_common, resolve_device


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
    p.add_argument("--attacks", default="apgd-ce,apgd-t", help="comma-separated attack names, run in order")
    p.add_argument("--eps", required=True, help="comma-separated budgets (ℓ∞ radius in [0,1]; integer flips for spikes)")
    p.add_argument("--samples", type=int, default=200, help="first N test examples (default 200)")
    p.add_argument("--eot", type=int, default=None, help="EoT draws per gradient (default: 1, or 10 for stochastic models)")
    p.add_argument("--draws", type=int, default=1, help="independent evaluations of a stochastic model (mean ± 95%% CI)")
    p.add_argument("--grad-mode", default="bptt", help="bptt, bptt:<surrogate>, bptr or rga")
    p.add_argument("--set", action="append", default=[], metavar="ATTACK.FIELD=VALUE",
                   help="attack parameter, e.g. --set apgd-ce.n_iter=50 (repeatable)")
    p.add_argument("--batch-size", type=int, default=None, help="attack batch size (default: all)")
    p.add_argument("--resume", action="store_true", help="resume from <out>.state.pt")
    add_common(p)
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
        out[name][fld] = value
    return out


def _write_json_atomic(obj: Any, path: Path) -> None:
    from neurodeploy.atomicio import write_text_atomic

    write_text_atomic(path, json.dumps(obj, indent=1))


def load_classifier(args: argparse.Namespace, input_shape: tuple[int, ...] | None, device: Any) -> Any:
    from neurodeploy.classifier import SNNClassifier
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
    model = model.to(device).eval()
    return SNNClassifier(model, seed=args.seed)


def run(args: argparse.Namespace) -> int:
    import torch

    from neurodeploy.attacks.base import make_attack
    from neurodeploy.attacks.engine import evaluate_robustness, format_table
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
    params = _parse_sets(args.set, names)
    attacks = []
    for n in names:  # validates names and parameters before any heavy work
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
    clf = load_classifier(args, tuple(test.x.shape[1:]), device)
    x = test.x.to(device)
    y = test.y.to(device)
    if clf.is_spike_input and x.dim() == len(clf.model.config.input_shape) + 2:
        x = x.movedim(1, 0).contiguous()  # [N, T, …] → time-first [T, N, …]

    state_path = None
    if args.out:
        out = Path(args.out)
        state_path = out.with_name(out.name + ".state.pt")
        if not args.resume and state_path.exists():
            state_path.unlink()
    result = evaluate_robustness(
        clf, x, y, attacks, eps_list, seed=args.seed, draws=args.draws, state_path=state_path,
        quiet=args.quiet, batch_size=args.batch_size, eot_iter=args.eot,
    )
    print(format_table(result))
    if args.out:
        rec = result.to_dict()
        rec["model"] = str(args.model)
        rec["data"] = {"source": str(args.data), "split": split.description, "samples": len(test)}
        rec["grad_mode"] = args.grad_mode
        rec["command"] = {k: v for k, v in vars(args).items() if k != "func"}
        _write_json_atomic(rec, Path(args.out))
        if state_path is not None and state_path.exists():
            state_path.unlink()
        print(f"wrote {args.out}")
    return 0
