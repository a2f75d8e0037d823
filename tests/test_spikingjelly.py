"""SpikingJelly 2.0 networks in (issue 23, point 1): converted with SpikingJelly's own
discretisation and compared spike for spike, layer by layer, with SpikingJelly's own forward.

The float comparisons run both sides in float64: SpikingJelly evaluates
``V + (X − (V − V_r))/τ`` and the converted neuron ``(1 − 1/τ)·u + X/τ`` on ``u = V − V_r``,
equal in real arithmetic but rounded in a different order; float64 puts that rounding far
below any spike boundary a random input reaches. Equality is then exact (no tolerance).
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

sj = pytest.importorskip("spikingjelly")

from spikingjelly.activation_based import functional, layer, neuron  # noqa: E402

from neurodeploy.errors import ConfigError  # noqa: E402
from neurodeploy.exporters.nir_interp import NIRModel  # noqa: E402
from neurodeploy.exporters.spikingjelly import compile_module, convert, run_module  # noqa: E402

torch.set_num_threads(1)
T, B = 20, 6

NEURONS = {
    "if-hard": lambda: neuron.IFNode(v_threshold=0.8),
    "if-soft": lambda: neuron.IFNode(v_threshold=0.8, v_reset=None),
    "lif-decay-hard": lambda: neuron.LIFNode(tau=2.0, decay_input=True, v_threshold=0.6),
    "lif-decay-hard-vr": lambda: neuron.LIFNode(tau=3.0, decay_input=True, v_threshold=0.5,
                                                v_reset=-0.3),
    "lif-nodecay-hard": lambda: neuron.LIFNode(tau=2.5, decay_input=False, v_threshold=1.2),
    "lif-decay-soft": lambda: neuron.LIFNode(tau=2.0, decay_input=True, v_reset=None,
                                             v_threshold=0.6),
    "lif-nodecay-soft": lambda: neuron.LIFNode(tau=4.0, decay_input=False, v_reset=None),
    "plif-decay-hard": lambda: neuron.ParametricLIFNode(init_tau=2.5, v_threshold=0.6,
                                                        v_reset=0.2),
    "plif-nodecay-soft": lambda: neuron.ParametricLIFNode(init_tau=3.0, decay_input=False,
                                                          v_reset=None, v_threshold=0.9),
}


def _spikes_by_layer(net: nn.Module, x: torch.Tensor) -> list[torch.Tensor]:
    """Every neuron layer's spikes ``[T, B, …]`` from SpikingJelly's own forward (hooks)."""
    rec: dict[nn.Module, list[torch.Tensor]] = {}
    nodes = [m for m in net.modules() if isinstance(m, neuron.BaseNode)]
    hooks = [m.register_forward_hook(lambda m, i, o: rec.setdefault(m, []).append(o.detach()))
             for m in nodes]
    try:
        run_module(net, x)
    finally:
        for h in hooks:
            h.remove()
    # multi-step: one call with [T, B, …]; single-step: T calls with [B, …]
    return [rec[m][0] if m.step_mode == "m" else torch.stack(rec[m]) for m in nodes]


def _exact(net: nn.Module, shape: tuple[int, ...], seed: int = 0, p: float = 0.5) -> None:
    net = net.double().eval()
    g = torch.Generator().manual_seed(seed)
    x = (torch.rand((T, B) + shape, generator=g) < p).double()
    ref = _spikes_by_layer(net, x)
    ours = NIRModel(convert(net, shape), dtype=torch.float64).run(x).spikes
    assert len(ref) == len(ours)
    for k, (a, b) in enumerate(zip(ref, ours, strict=True)):
        a = a.reshape(b.shape)
        assert int((a != b).sum()) == 0, f"layer {k}: {int((a != b).sum())} of {a.numel()} differ"
        assert 0 < int(a.sum()) < a.numel(), f"layer {k}: {int(a.sum())} spikes proves nothing"


def _mlp(make, mode: str, seed: int = 1) -> nn.Sequential:
    torch.manual_seed(seed)
    net = nn.Sequential(layer.Linear(12, 10), make(), layer.Linear(10, 6), make())
    with torch.no_grad():
        for m in (net[0], net[2]):
            m.weight.mul_(3.0)
            m.bias.add_(0.15)
    functional.set_step_mode(net, mode)
    return net


@pytest.mark.parametrize("mode", ["s", "m"])
@pytest.mark.parametrize("kind", sorted(NEURONS))
def test_every_neuron_option_spike_for_spike(kind, mode):
    _exact(_mlp(NEURONS[kind], mode), (12,))


@pytest.mark.parametrize("mode", ["s", "m"])
def test_cnn_with_batchnorm_pool_flatten_spike_for_spike(mode):
    torch.manual_seed(3)
    net = nn.Sequential(layer.Conv2d(2, 4, 3, padding=1), layer.BatchNorm2d(4),
                        neuron.LIFNode(tau=2.0, v_threshold=0.4), layer.AvgPool2d(2),
                        layer.Conv2d(4, 6, 3, stride=1, bias=False), layer.BatchNorm2d(6),
                        neuron.IFNode(v_reset=None, v_threshold=0.7), layer.Flatten(),
                        layer.Linear(24, 8), layer.BatchNorm1d(8),
                        neuron.ParametricLIFNode(init_tau=2.0, v_threshold=0.5))
    with torch.no_grad():
        for bn in (net[1], net[5], net[9]):
            bn.running_mean.uniform_(-0.3, 0.3)
            bn.running_var.uniform_(0.5, 2.0)
            bn.weight.uniform_(0.5, 2.0)
            bn.bias.uniform_(-0.2, 0.2)
    functional.set_step_mode(net, mode)
    _exact(net, (2, 8, 8), p=0.6)


def test_spike_at_equality_follows_spikingjelly():
    """SpikingJelly fires on V ≥ V_th: an IF fed exactly its threshold fires; the conversion
    keeps '>=' (the chip compares '>', stated as a chip note)."""
    lin = layer.Linear(1, 1, bias=False)
    with torch.no_grad():
        lin.weight.fill_(0.5)
    net = nn.Sequential(lin, neuron.IFNode(v_threshold=1.0)).double()
    x = torch.ones(4, 1, 1, dtype=torch.float64)
    want = run_module(net, x).reshape(-1)
    g = convert(net, (1,))
    assert want.tolist() == [0.0, 1.0, 0.0, 1.0]
    assert NIRModel(g, dtype=torch.float64).run(x).spikes[0].reshape(-1).tolist() == \
        want.tolist()
    assert g.nodes["1"].spike_op == ">="


def test_hard_reset_to_v_reset_is_shifted_exactly():
    g = convert(_mlp(NEURONS["lif-decay-hard-vr"], "s"), (12,))
    n = g.nodes["1"]
    assert n.reset == "zero" and float(n.v_reset.max()) == 0.0
    assert float(n.theta.ravel()[0]) == pytest.approx(0.8, abs=1e-15)  # 0.5 − (−0.3)
    assert any("v_reset = -0.3" in s for s in g.notes)


@pytest.mark.parametrize("bad, name", [
    (lambda: nn.Sequential(layer.Conv2d(1, 2, 3), neuron.IFNode(), layer.MaxPool2d(2),
                           layer.Flatten(), layer.Linear(2, 2), neuron.IFNode()),
     "'2' (spikingjelly.activation_based.layer.stateless_wrapper.MaxPool2d)"),
    (lambda: nn.Sequential(layer.Linear(4, 4), neuron.QIFNode()), "QIFNode"),
    (lambda: nn.Sequential(layer.Linear(4, 4), nn.ReLU(), layer.Linear(4, 2), neuron.IFNode()),
     "'1' (torch.nn.modules.activation.ReLU)"),
    (lambda: nn.Sequential(neuron.IFNode(), layer.BatchNorm1d(4), layer.Linear(4, 2),
                           neuron.IFNode()), "BatchNorm must follow a Linear or Conv2d"),
    (lambda: nn.Sequential(layer.Linear(4, 4), neuron.IFNode(), layer.Linear(4, 2)),
     "last layer '2' is not a neuron"),
])
def test_unsupported_modules_are_refused_naming_them(bad, name):
    with pytest.raises(ConfigError, match=name.replace("(", r"\(").replace(")", r"\)")):
        convert(bad(), (1, 4, 4) if isinstance(bad()[0], nn.Conv2d) else (4,))


class _Skips(nn.Module):
    """A forward that is not the chain of its layers (it skips ``a``'s neuron)."""

    def __init__(self) -> None:
        super().__init__()
        self.a, self.na = layer.Linear(6, 6), neuron.IFNode(v_threshold=0.3)
        self.b, self.nb = layer.Linear(6, 3), neuron.IFNode(v_threshold=0.3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.nb(self.b(self.a(x)))


def test_forward_that_is_not_the_chain_is_refused():
    torch.manual_seed(0)
    with pytest.raises(ConfigError, match="differs from the module's own forward"):
        convert(_Skips(), (6,))


def test_soft_reset_network_compiles_and_emulator_tracks_float():
    from neurodeploy.exporters.profiles import load_profile
    from neurodeploy.sims.emulator import Emulator

    net = _mlp(NEURONS["lif-decay-soft"], "m")
    dep = compile_module(net, load_profile("loihi2"), T, (12,))
    assert dep.dgraph.semantics.producer == "spikingjelly"
    assert any("v ≥ θ" in c for c in dep.chip_notes)
    x = (torch.rand((T, B, 12), generator=torch.Generator().manual_seed(2)) < 0.5)
    ref = NIRModel(dep.dgraph).run(x.float()).spikes
    emu = Emulator(dep.plan).run(x.to(torch.uint8)).layer_spikes
    agree = [float((a.reshape(T, B, -1) > 0).eq(b.reshape(T, B, -1) > 0).double().mean())
             for a, b in zip(ref, emu, strict=True)]
    assert min(agree) >= 0.9, agree


def test_written_nir_reads_back_to_the_same_spikes():
    """OUT/model.nir (the canonical NIR graph, neurodeploy convention) read back by the generic
    NIR reader reproduces SpikingJelly's forward spike for spike."""
    from neurodeploy.exporters.nir_import import read_graph, to_canonical_nir

    torch.manual_seed(4)
    net = nn.Sequential(layer.Conv2d(1, 4, 3, padding=1), layer.BatchNorm2d(4),
                        neuron.LIFNode(tau=3.0, decay_input=False, v_reset=-0.2,
                                       v_threshold=0.4),
                        layer.AvgPool2d(2), layer.Flatten(), layer.Linear(16, 6),
                        neuron.IFNode(v_reset=None, v_threshold=0.6)).double().eval()
    with torch.no_grad():
        net[5].weight.mul_(3.0)
    g = read_graph(to_canonical_nir(convert(net, (1, 4, 4))))
    assert g.semantics.producer == "neurodeploy"
    x = (torch.rand((T, B, 1, 4, 4), generator=torch.Generator().manual_seed(5)) < 0.5).double()
    ref = _spikes_by_layer(net, x)
    ours = NIRModel(g, dtype=torch.float64).run(x).spikes
    for k, (a, b) in enumerate(zip(ref, ours, strict=True)):
        assert int((a.reshape(b.shape) != b).sum()) == 0, f"layer {k}"
        assert 0 < int(a.sum()) < a.numel(), f"layer {k}: {int(a.sum())} spikes"
