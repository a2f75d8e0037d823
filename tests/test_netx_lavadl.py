"""lava-dl in (issue 23, point 2): networks built from SLAYER's own CUBA blocks and written by
SLAYER's own ``export_hdf5`` (in the Lava environment, tests/slayer_nets.py) are read into a
plan (:func:`~neurodeploy.exporters.netx.read_netx`); lava-dl's ``netx.hdf5.Network`` loads the
same file and runs it in Lava (``fixed_pt``); our emulator of the plan equals it spike for
spike in every block. Blocks netx cannot load (pool) are refused naming the block.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch

from neurodeploy.errors import ConfigError
from neurodeploy.exporters.netx import read_netx

pytestmark = [pytest.mark.lava, pytest.mark.long]  # SLAYER + Lava runs: minutes together
T, B = 10, 5
NETS = Path(__file__).with_name("slayer_nets.py")


@pytest.fixture(scope="module")
def slayer_files(tmp_path_factory):
    """dense.net, conv.net, pool.net, delay.net written by SLAYER (one Lava-env process for all)."""
    from neurodeploy.sims.lava_env import find_lava_python
    from neurodeploy.sims.netx_runner import netx_available

    why = netx_available()
    if why:
        pytest.skip(why)
    d = tmp_path_factory.mktemp("slayer")
    r = subprocess.run([find_lava_python(), str(NETS), str(d), "dense,conv,pool,delay", "0"],
                       capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stderr[-2000:]
    return d


@pytest.mark.parametrize("kind", ["dense", "conv"])
def test_slayer_export_runs_in_netx_as_in_our_emulator(kind, slayer_files):
    from neurodeploy.sims.emulator import Emulator
    from neurodeploy.sims.netx_runner import run_netx

    path = slayer_files / f"{kind}.net"
    plan, notes = read_netx(path, T)
    assert [L.du for L in plan.layers] == [1023] * len(plan.layers)  # netx: iDecay − 1
    g = torch.Generator().manual_seed(3)
    x = (torch.rand((T, B) + tuple(plan.input_shape), generator=g) < 0.5).to(torch.uint8)
    emu = Emulator(plan).run(x).layer_spikes
    lava, _ = run_netx(path, x.numpy(), timeout_s=900)
    assert len(lava) == len(plan.layers)
    for k, (a, b) in enumerate(zip(emu, lava, strict=True)):
        a = np.asarray(a).reshape(b.shape)
        assert int((a != b).sum()) == 0, f"block {k}: {int((a != b).sum())} of {a.size} differ"
        assert 0 < int(a.sum()) < a.size, f"block {k}: {int(a.sum())} spikes proves nothing"


def test_pool_block_is_refused_naming_it(slayer_files):
    with pytest.raises(ConfigError, match=r"netx block layer/1 \(pool\): netx cannot load"):
        read_netx(slayer_files / "pool.net", T)


def test_axonal_delays_are_refused_naming_the_block(slayer_files):
    import h5py

    with h5py.File(slayer_files / "delay.net") as f:
        assert np.asarray(f["layer/0/delay"][()]).max() > 0  # SLAYER wrote real delays
    with pytest.raises(ConfigError, match=r"netx block layer/0 \(dense\): axonal delays"):
        read_netx(slayer_files / "delay.net", T)


def test_cli_export_and_audit_read_a_netx_file(slayer_files, tmp_path, capsys):
    from neurodeploy.cli import main
    from neurodeploy.exporters.plan import DeploymentPlan

    src = slayer_files / "dense.net"
    out = tmp_path / "o"
    assert main(["export", "--model", str(src), "--steps", str(T), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "netx" in printed
    plan = DeploymentPlan.load(out / "plan.npz")
    want, _ = read_netx(src, T)
    for a, b in zip(plan.layers, want.layers, strict=True):
        assert np.array_equal(a.weights, b.weights) and (a.vth, a.du, a.dv) == (b.vth, b.du, b.dv)
    bad = tmp_path / "bad.net"
    bad.write_bytes(b"not hdf5")
    assert main(["export", "--model", str(bad), "--out", str(tmp_path / "b")]) == 2
    assert "not an HDF5 file" in capsys.readouterr().err
    assert not (tmp_path / "b").exists()
