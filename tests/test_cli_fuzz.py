"""A fuzz test over the command line: hypothesis draws a command, argument values (numbers out
of range, NaN, empty lists, odd strings, wrong paths) and corrupted input files (checkpoints,
NIR graphs, plans, IDX folders, TOML configs). Whatever it draws:

- the exit code is one of the documented ones (0, 2, 3, 4, 5; 1 would be a bug);
- a failure prints exactly one ``error:`` line and never a traceback;
- a failure leaves no new file or folder behind.
"""

from __future__ import annotations

import contextlib
import gzip
import io
import os
import struct
import uuid
from pathlib import Path

import numpy as np
import pytest
from cli_runs import COMMANDS, PIPELINE_TOML, SMALL_AUDIT, run
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

DOCUMENTED = {0, 2, 3, 4, 5}


def _idx(path: Path, arr: np.ndarray) -> None:
    head = b"\x00\x00\x08" + bytes([arr.ndim]) + struct.pack(">" + "I" * arr.ndim, *arr.shape)
    path.write_bytes(gzip.compress(head + arr.astype(np.uint8).tobytes()))


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> Path:
    """Valid inputs (a trained model, its NIR graph and plan, an IDX folder, a config) and
    corrupted copies of each."""
    root = tmp_path_factory.mktemp("fuzz_inputs")
    cwd = os.getcwd()
    os.chdir(root)
    try:
        (root / "small.toml").write_text(PIPELINE_TOML)
        assert run(COMMANDS["train"][0]) == 0
        assert run(COMMANDS["export"][0]) == 0
    finally:
        os.chdir(cwd)
    rng = np.random.default_rng(0)
    idx = root / "idx"
    idx.mkdir()
    for split, n in (("train", 30), ("t10k", 12)):
        _idx(idx / f"{split}-images-idx3-ubyte.gz", rng.integers(0, 256, (n, 28, 28)))
        _idx(idx / f"{split}-labels-idx1-ubyte.gz", rng.integers(0, 10, n))
    sources = {"ckpt": root / "tr" / "model.pt", "nir": root / "ex" / "model.nir",
               "plan": root / "ex" / "plan.npz", "toml": root / "small.toml"}
    bad = root / "bad"
    bad.mkdir()
    for kind, src in sources.items():
        data = src.read_bytes()
        for k, mutate in enumerate(_MUTATIONS):
            (bad / f"{kind}{k}{src.suffix}").write_bytes(mutate(data, k))
    for k, mutate in enumerate(_MUTATIONS):  # an IDX folder with one damaged file
        d = bad / f"idx{k}"
        d.mkdir()
        for f in idx.iterdir():
            data = f.read_bytes()
            if f.name.startswith("t10k-images"):
                data = mutate(data, k)
            (d / f.name).write_bytes(data)
    _payloads(root, bad)
    (bad / "text.pt").write_text("not a checkpoint\n")
    (bad / "cfg_typo.toml").write_text("[trian]\nepochs = 1\n")
    (bad / "cfg_type.toml").write_text('[train]\nepochs = "ten"\n')
    (bad / "cfg_audit.toml").write_text('[audit]\nattacks = ["pgdd"]\n')
    (bad / "cfg_backend.toml").write_text('[simulate]\nbackends = ["emulater"]\n')
    return root


class _Payload:
    """Unpickling this would create the file ``PWNED`` (the stand-in for code execution)."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def _payloads(root: Path, bad: Path) -> None:
    """Files whose loading would run code (pickles in a checkpoint, an attack state, a plan)
    and NIR graphs with arrays of bytes or complex numbers."""
    import h5py
    import torch

    marker = root / "PWNED"
    rec = torch.load(root / "tr" / "model.pt", weights_only=True)
    torch.save({**rec, "x": _Payload(marker)}, bad / "pickle_ckpt.pt")
    state = {"format": "neurodeploy-robustness-state", "fingerprint": _Payload(marker)}
    torch.save(state, bad / "attack_state.pt")
    with np.load(root / "ex" / "plan.npz", allow_pickle=False) as z:
        files = {k: z[k] for k in z.files}
    files[next(k for k in files if k != "header")] = np.array([_Payload(marker)], dtype=object)
    np.savez(bad / "pickle_plan.npz", **files)
    for kind in ("complex", "bytes"):
        f_path = bad / f"{kind}.nir"
        f_path.write_bytes((root / "ex" / "model.nir").read_bytes())
        with h5py.File(f_path, "r+") as f:
            names: list[str] = []
            f.visit(names.append)
            key = next(n for n in names if n.endswith("/weight"))
            w = f[key][()]
            del f[key]
            f[key] = w + 1j if kind == "complex" else np.full(w.shape, b"ab")
    (bad / "deep.json").write_text("[" * 100_000 + "]" * 100_000)
    for name, text in (("cfg_lava.toml", "[audit]\nlava_samples = -1\n"),
                       ("cfg_steps.toml", "[model]\nnum_steps = 1000000000\n"),
                       ("cfg_seed.toml", f"seed = {10**20}\n"),
                       ("cfg_square.toml", "[audit]\nsquare_queries = -5\n")):
        (bad / name).write_text(text)


def _flip(data: bytes, k: int) -> bytes:
    b = bytearray(data)
    pos = (len(b) * ((k % 8) + 3)) // 12
    b[pos] ^= 1 << (k % 8)
    return bytes(b)


_MUTATIONS = [
    lambda d, k: d[: len(d) // 2],                       # truncated
    lambda d, k: d[:7],                                  # header only
    lambda d, k: b"",                                    # empty
    _flip,                                               # one bit flipped
    lambda d, k: _flip(_flip(d, k), k + 5),              # two bits flipped
    lambda d, k: bytes(reversed(d[:64])) + d[64:],       # scrambled header
    lambda d, k: d + b"trailing garbage",                # extra bytes
]

NUMBERS = st.sampled_from(["-3", "-1", "0", "1", "2", "nan", "inf", "-inf", "1.5", "0.05",
                           "1e400", "abc", "", " ", "0x10", "3.0", "1,2"])
EPS_LISTS = st.sampled_from(["0.1,,0.2", ",", "", "0.05", "0.05,0.1", "-0.1", "2", "nan",
                             "0.1;0.2", "1e-9", "x", "0.05,"])
NAMES = st.sampled_from(["pgd", "pgdd", "", ",", "pgd,,fgsm", "apgd-ce", "auto", "PGD", "ibp",
                         "crown", "alpha-crown", "ibp,bogus", "loihi2", "loihi9", "none"])


def _file(kind: str, ext: str):
    return st.one_of(st.integers(0, len(_MUTATIONS) - 1).map(lambda k: f"@bad/{kind}{k}{ext}"),
                     st.sampled_from([f"@{p}" for p in
                                      ("tr/model.pt", "ex/plan.npz", "ex/model.nir", "idx",
                                       "bad/text.pt", "small.toml", "missing.pt", "bad",
                                       "bad/pickle_ckpt.pt", "bad/pickle_plan.npz",
                                       "bad/complex.nir", "bad/bytes.nir", "bad/deep.json")]))


# budgets (counts, seeds) and Ray addresses
BUDGETS = st.sampled_from(["-5", "-1", "0", "1", "abc", "1e9", str(10**20), "-0", "2"])
BAD_BUDGETS = st.sampled_from(["-5", "-2", "0", "abc", "1e9", str(10**20)])  # no Ray/Lava run
RAY_ADDRESSES = st.sampled_from(["127.0.0.1:1", "not an address", "host:99999", "ray://:1",
                                 "http://x:1", "", "a:b:c", "[::1]:1", "127.0.0.1:0"])


DATA = st.one_of(st.sampled_from(["digits", "@idx", "@missing", "@bad/text.pt", "@ex"]),
                 st.integers(0, len(_MUTATIONS) - 1).map(lambda k: f"@bad/idx{k}"))
OUT = st.sampled_from(["out/o", "out/o.json", "@tr/model.pt", "@bad", "out/deep/er/x", "",
                       "/proc/nd-fuzz/o"])

# per command: the base argv (small, fast when valid) and the options hypothesis may change
FUZZ: dict[str, tuple[list[str], dict]] = {
    "train": (["train", "--train-limit", "20", "--test-limit", "10", "--epochs", "1",
               "--arch", "FC8-FC10", "--steps", "2"],
              {"--epochs": NUMBERS, "--train-limit": NUMBERS, "--steps": NUMBERS,
               "--alpha": NUMBERS, "--theta": NUMBERS, "--lr": NUMBERS, "--batch-size": NUMBERS,
               "--data": DATA, "--arch": st.sampled_from(["FC8-FC10", "C4K9-FC10", "FC", "",
                                                          "FC-1", "XYZ"]),
               "--surrogate": st.sampled_from(["rect", "rectt", "atan:-1", "atan:x"]),
               "--defense": NAMES, "--init-from": _file("ckpt", ".pt")}),
    "evaluate": (["evaluate", "--model", "@tr/model.pt", "--limit", "10"],
                 {"--model": _file("ckpt", ".pt"), "--limit": NUMBERS, "--seeds": NUMBERS,
                  "--data": DATA, "--batch-size": NUMBERS, "--arch": st.sampled_from(
                      ["FC32-FC10", "FC8-FC10", "bad"])}),
    "export": (["export", "--model", "@tr/model.pt"],
               {"--model": _file("ckpt", ".pt"), "--profile": NAMES, "--dt": NUMBERS}),
    "simulate": (["simulate", "--plan", "@ex/plan.npz", "--samples", "5"],
                 {"--plan": _file("plan", ".npz"), "--model": _file("ckpt", ".pt"),
                  "--samples": NUMBERS, "--data": DATA, "--batch-size": NUMBERS}),
    "attack": (["attack", "--model", "@tr/model.pt", "--eps", "0.05", "--samples", "4",
                "--attacks", "pgd", "--set", "pgd.n_iter=2", "--threat", "known"],
               {"--model": _file("ckpt", ".pt"), "--eps": EPS_LISTS, "--attacks": NAMES,
                "--samples": NUMBERS, "--data": DATA, "--draws": NUMBERS,
                "--resume-from": st.just("@bad/attack_state.pt")}),
    "certify": (["certify", "--model", "@tr/model.pt", "--eps", "0.05", "--samples", "5",
                 "--method", "ibp"],
                {"--model": _file("ckpt", ".pt"), "--eps": NUMBERS, "--method": NAMES,
                 "--samples": NUMBERS, "--draws": NUMBERS, "--data": DATA}),
    "audit": (["audit", "--model", "@tr/model.pt", *SMALL_AUDIT[:-4], "--samples", "4"],
              {"--model": _file("ckpt", ".pt"), "--eps": EPS_LISTS, "--attacks": NAMES,
               "--samples": NUMBERS, "--profile": NAMES, "--data": DATA,
               "--square-queries": BUDGETS, "--lava-samples": BAD_BUDGETS, "--seed": BUDGETS,
               "--workers": BAD_BUDGETS, "--ray-address": RAY_ADDRESSES}),
    "compare": (["compare", "@bad/deep.json", "@bad/deep.json"],
                {"--out": st.sampled_from(["cmp", "/proc/nd-fuzz"])}),
    "pipeline": (["pipeline", "--config", "@bad/cfg_typo.toml"],
                 {"--config": st.one_of(_file("toml", ".toml"), st.sampled_from(
                     ["@bad/cfg_typo.toml", "@bad/cfg_type.toml", "@bad/cfg_audit.toml",
                      "@bad/cfg_backend.toml", "@bad/cfg_lava.toml", "@bad/cfg_steps.toml",
                      "@bad/cfg_seed.toml", "@bad/cfg_square.toml"])),
                  "--stages": st.sampled_from(["train,bogus", "", ",", "simulate", "audit"]),
                  "--seed": NUMBERS}),
}


@st.composite
def command_lines(draw) -> list[str]:
    command = draw(st.sampled_from(sorted(FUZZ)))
    base, options = FUZZ[command]
    argv = list(base)
    for opt in draw(st.lists(st.sampled_from(sorted(options)), min_size=1, max_size=3,
                             unique=True)):
        argv += [opt, draw(options[opt])]
    out = draw(OUT)
    if out:
        argv += ["--out", out]
    if command == "pipeline" and "--stages" not in argv:
        argv += ["--stages", "train,bogus"]  # a valid config must not start a full run
    return argv


def _snapshot(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


#: One command line per class of issue 24, always run beside the drawn ones.
_AUDIT = FUZZ["audit"][0]
CLASSES = [
    [*FUZZ["attack"][0], "--resume-from", "@bad/attack_state.pt"],      # state payload
    ["evaluate", "--model", "@bad/pickle_ckpt.pt", "--limit", "5"],       # checkpoint payload
    ["simulate", "--plan", "@bad/pickle_plan.npz", "--samples", "3", "--out", "s.json"],
    ["audit", "--model", "@bad/complex.nir", "--samples", "2", "--out", "a"],  # NIR arrays
    ["export", "--nir", "@bad/bytes.nir", "--producer", "neurodeploy", "--out", "e"],
    [*_AUDIT, "--ray-address", "127.0.0.1:1", "--out", "a"],             # Ray addresses
    [*_AUDIT, "--ray-address", "not an address", "--out", "a"],
    [*_AUDIT, "--square-queries", "-5", "--out", "a"],                    # budgets
    [*_AUDIT, "--lava-samples", "-5", "--out", "a"],
    ["pipeline", "--config", "@bad/cfg_steps.toml", "--out", "p"],
    ["pipeline", "--config", "@bad/cfg_seed.toml", "--out", "p"],
    ["compare", "@bad/deep.json", "@bad/deep.json", "--out", "c"],       # deep JSON
    ["evaluate", "--model", "@tr/model.pt", "--out", "/proc/nd-fuzz/e.json"],
]


def _with_classes(test):
    for argv in CLASSES:
        test = example(argv=argv)(test)
    return test


@_with_classes
@settings(max_examples=70, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(argv=command_lines())
def test_fuzzed_command_lines_fail_cleanly(inputs: Path, argv: list[str]) -> None:
    argv = [a.replace("@", str(inputs) + "/", 1) if a.startswith("@") else a for a in argv]
    work = inputs / "work" / uuid.uuid4().hex  # a fresh folder: examples do not interact
    work.mkdir(parents=True)
    if "--resume-from" in argv:  # a crafted attack state where --resume would load it
        i = argv.index("--resume-from")
        state = Path(argv[i + 1])
        del argv[i:i + 2]
        argv = [*argv[:-2], "--out", "att.json", "--resume"] if "--out" in argv[-2:] \
            else [*argv, "--out", "att.json", "--resume"]
        (work / "att.json.state-known.pt").write_bytes(state.read_bytes())
    before_inputs = _snapshot(inputs)
    err, outs = io.StringIO(), io.StringIO()
    cwd = os.getcwd()
    os.chdir(work)
    try:
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(outs):
            try:
                rc = run(argv)
            except SystemExit as exc:  # argparse
                rc = exc.code if isinstance(exc.code, int) else 2
    finally:
        os.chdir(cwd)
    text = err.getvalue()
    assert not (inputs / "PWNED").exists(), ("a payload ran", argv)
    assert rc in DOCUMENTED, (argv, rc, text)
    assert "Traceback" not in text, (argv, text)
    if rc != 0:
        lines = [ln for ln in text.splitlines() if "error:" in ln]
        assert len(lines) == 1, (argv, text)
        after = _snapshot(inputs)
        assert after == before_inputs, (argv, sorted(after - before_inputs))
    else:  # a run that succeeded may write only into work/
        new = _snapshot(inputs) - before_inputs
        assert all(p.startswith("work") for p in new), (argv, sorted(new))
