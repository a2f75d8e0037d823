"""One backend contract: float model, emulator, twin and Lava all run ``run(spikes, record)``
and return the one frozen Trace; the integer backends agree spike for spike."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from neurodeploy.exporters.compiler import compile_model
from neurodeploy.models import ModelConfig, build_model
from neurodeploy.sims.backends import BACKENDS, make_backend
from neurodeploy.sims.lava_env import lava_available
from neurodeploy.trace import Backend, Trace


def _model_plan_spikes():
    torch.manual_seed(0)
    model = build_model(ModelConfig("FC24-FC5", (1, 4, 4), readout="count"))
    plan = compile_model(model)
    x = (torch.rand(6, 5, 1, 4, 4, generator=torch.Generator().manual_seed(1)) < 0.5).float()
    return model, plan, x


def _check_trace(tr: Trace, T: int, B: int, layers: int, record: bool) -> None:
    assert isinstance(tr, Trace) and tr.backend
    assert tuple(tr.out_spikes.shape) == (T, B, 5)
    assert tuple(tr.logits.shape) == (B, 5)
    assert len(tr.spikes) == (layers if record else 0)
    with pytest.raises(dataclasses.FrozenInstanceError):
        tr.logits = tr.logits  # type: ignore[misc]


@pytest.mark.parametrize("record", [False, True])
def test_every_backend_runs_the_contract(record):
    model, plan, x = _model_plan_spikes()
    names = ["float", "emulator", "twin"] + (["lava"] if lava_available() else [])
    traces = {}
    for name in names:
        be = make_backend(name, model=model, plan=plan)
        assert isinstance(be, Backend) and be.name == name
        tr = be.run(x, record=record)
        _check_trace(tr, 6, 5, 2, record)
        traces[name] = tr
    e = traces["emulator"]
    for name in names[2:]:
        assert torch.equal(traces[name].out_spikes.to(torch.uint8), e.out_spikes)
        assert torch.equal(traces[name].counts, e.counts)
        for a, b in zip(traces[name].spikes, e.spikes, strict=True):
            assert torch.equal(a.to(torch.uint8), b)
    if record:  # pre-reset membranes: float and twin record them with `record`
        assert len(traces["float"].v) == 2 and len(traces["twin"].v) == 2


def test_emulator_records_v_before_and_after_reset_like_the_twin():
    _, plan, x = _model_plan_spikes()
    e = make_backend("emulator", plan=plan).run(x, record=True, record_v=True)
    t = make_backend("twin", plan=plan).run(x, record=True)
    for k in range(2):
        assert torch.equal(e.v[k].to(torch.float64), t.v[k])
        assert torch.equal(e.v_after[k], (t.v[k] * (1 - t.spikes[k])).to(torch.int64))
        assert e.layer_v[k] is e.v_after[k]


def test_unknown_backend_and_missing_inputs_are_named():
    from neurodeploy.errors import ConfigError

    assert set(BACKENDS) == {"float", "emulator", "twin", "lava"}
    with pytest.raises(ConfigError, match="unknown backend 'loihi'"):
        make_backend("loihi")
    with pytest.raises(ConfigError, match="needs the deployment plan"):
        make_backend("emulator")
    with pytest.raises(ConfigError, match="needs the model"):
        make_backend("float", plan=np.zeros(1))
