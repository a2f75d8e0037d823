"""NIR import by node-type tables: semantics, exact rewrites (each checked for equality with the
interpreter before/after), the float interpreter, the canonical writer, refusals."""

from __future__ import annotations

import math

import nir
import numpy as np
import pytest
import torch

from neurodeploy.errors import ConfigError, HardwareFitError
from neurodeploy.exporters.nir_deploy import chip_notes, compile_nir
from neurodeploy.exporters.nir_import import (
    READERS,
    WRITERS,
    DConv,
    DLinear,
    DNeuron,
    DPool,
    read_graph,
    to_canonical_nir,
    to_dgraph,
)
from neurodeploy.exporters.nir_interp import NIRModel
from neurodeploy.exporters.nir_rewrite import (
    fold_leak,
    fuse_pool,
    fuse_scale,
    mark_if,
    pool_matrix,
)
from neurodeploy.exporters.nir_semantics import PRODUCERS, resolve_semantics

torch.set_num_threads(1)


def _spikes(shape, T=25, B=6, p=0.4, seed=0):
    g = torch.Generator().manual_seed(seed)
    return (torch.rand((T, B) + tuple(shape), generator=g) < p).double()


def _run(dg, x):
    return NIRModel(dg, dtype=torch.float64).run(x)


def _assert_same(a, b):
    assert len(a.spikes) == len(b.spikes)
    for sa, sb in zip(a.spikes, b.spikes, strict=True):
        assert torch.equal(sa, sb)
    assert torch.allclose(a.output, b.output, atol=1e-9)


def _lif(n, tau=2e-4, r=None, theta=0.5, v_leak=0.0, dt=1e-4, **kw):
    r = tau / dt if r is None else r
    return nir.LIF(tau=np.full(n, tau), r=np.full(n, r), v_leak=np.full(n, v_leak),
                   v_threshold=np.full(n, theta), v_reset=np.zeros(n), **kw)


def _graph(nodes, edges, meta=None):
    return nir.NIRGraph(nodes=nodes, edges=edges, metadata=meta or {}, type_check=False)


def _fc(seed=0, n_in=6, n_out=4, scale=1.5):
    rng = np.random.default_rng(seed)
    return rng.normal(0, scale, (n_out, n_in)), rng.normal(0, 0.2, n_out)


# ----------------------------------------------------------------------------- semantics


def test_every_producer_has_a_convention_and_no_silent_default():
    assert set(PRODUCERS) == {"neurodeploy", "snntorch", "norse", "sinabs", "rockpool",
                              "lava-dl"}
    with pytest.raises(ConfigError, match="--producer"):
        resolve_semantics({})
    sem, notes = resolve_semantics({}, producer="snntorch")
    assert sem.reset == "subtract" and sem.reset_timing == "next-step" and sem.dt == 1e-4
    assert any("Leaky default" in n for n in notes)
    sem, notes = resolve_semantics({"dt": 2e-3, "producer": "neurodeploy 0.1"}, reset="zero")
    assert sem.producer == "neurodeploy" and sem.dt == 2e-3 and sem.reset == "zero"
    assert any("from the graph metadata" in n for n in notes)
    with pytest.raises(ConfigError, match="unknown producer"):
        resolve_semantics({}, producer="brian")
    with pytest.raises(ConfigError, match="--reset"):
        resolve_semantics({}, producer="norse", reset="half")


def test_tables_cover_both_directions():
    for t in (nir.Affine, nir.Linear, nir.Scale, nir.Conv2d, nir.SumPool2d, nir.AvgPool2d,
              nir.Flatten, nir.LIF, nir.IF, nir.LI, nir.I, nir.CubaLIF, nir.CubaLI):
        assert t in READERS
    assert {c.__name__ for c in WRITERS} >= {"DLinear", "DConv", "DPool", "DNeuron", "DScale",
                                              "DFlatten"}


def test_unknown_node_type_is_refused_naming_it():
    g = _graph({"input": nir.Input(input_type={"input": np.array([3])}),
                "d": nir.Delay(delay=np.ones(3)),
                "output": nir.Output(output_type={"output": np.array([3])})},
               [("input", "d"), ("d", "output")])
    with pytest.raises(ConfigError, match=r"node 'd': NIR type Delay has no converter"):
        read_graph(g, producer="neurodeploy")


def test_out_of_range_decay_names_node_and_field():
    W, b = _fc()
    g = _graph({"input": nir.Input(input_type={"input": np.array([6])}),
                "fc": nir.Affine(weight=W, bias=b), "lif": _lif(4, tau=5e-5),
                "output": nir.Output(output_type={"output": np.array([4])})},
               [("input", "fc"), ("fc", "lif"), ("lif", "output")])
    with pytest.raises(ConfigError, match=r"node 'lif' \(LIF\): decay 1 − dt/τ = -1.*--dt"):
        read_graph(g, producer="neurodeploy")
    # with dt = τ the decay is 0, and float32 round-off below 0 is snapped with a note
    tau32 = np.full(4, np.float32(1e-4) / np.float32(1.0 - np.float32(0.0)), dtype=np.float32)
    g.nodes["lif"] = nir.LIF(tau=tau32, r=np.ones(4, np.float32), v_leak=np.zeros(4, np.float32),
                             v_threshold=np.full(4, 0.5, np.float32),
                             v_reset=np.zeros(4, np.float32))
    dg = read_graph(g, producer="snntorch", reset="zero")
    assert np.all(dg.nodes["lif"].alpha == 0.0)


def test_lif_tau_infinite_becomes_if_with_gain_one():
    """snntorch β = 1 exports τ = r = ∞ (division by zero); the limit r·dt/τ = 1."""
    W, b = _fc()
    g = _graph({"input": nir.Input(input_type={"input": np.array([6])}),
                "fc": nir.Affine(weight=W, bias=b),
                "lif": nir.LIF(tau=np.full(4, np.inf), r=np.full(4, np.inf), v_leak=np.zeros(4),
                               v_threshold=np.full(4, 0.5), v_reset=np.zeros(4)),
                "output": nir.Output(output_type={"output": np.array([4])})},
               [("input", "fc"), ("fc", "lif"), ("lif", "output")])
    dg = read_graph(g, producer="snntorch", reset="zero")
    n = dg.nodes["lif"]
    assert n.kind == "if" and np.all(n.alpha == 1) and np.all(n.gain == 1)
    ref = _graph({"input": nir.Input(input_type={"input": np.array([6])}),
                  "fc": nir.Affine(weight=W, bias=b),
                  "lif": nir.IF(r=np.ones(4), v_threshold=np.full(4, 0.5), v_reset=np.zeros(4)),
                  "output": nir.Output(output_type={"output": np.array([4])})},
                 [("input", "fc"), ("fc", "lif"), ("lif", "output")])
    x = _spikes((6,))
    _assert_same(_run(dg, x), _run(read_graph(ref, producer="snntorch", reset="zero"), x))


# ----------------------------------------------------------------------------- rewrites


def _sinabs_like(pool="sum", pad=0):
    rng = np.random.default_rng(1)
    cls = nir.SumPool2d if pool == "sum" else nir.AvgPool2d
    return _graph({
        "input": nir.Input(input_type={"input": np.array([2, 10, 10])}),
        "c1": nir.Conv2d(input_shape=(10, 10), weight=rng.normal(0, 1, (3, 2, 3, 3)),
                         stride=1, padding=0, dilation=1, groups=1, bias=np.zeros(3)),
        "n1": nir.IF(r=np.ones((3, 8, 8)), v_threshold=np.ones((3, 8, 8)),
                     v_reset=np.zeros((3, 8, 8))),
        "p": cls(kernel_size=np.array([2, 2]), stride=np.array([2, 2]), padding=np.array([0, 0])),
        "c2": nir.Conv2d(input_shape=(4, 4), weight=rng.normal(0, 1, (4, 3, 3, 3)),
                         stride=1, padding=pad, dilation=1, groups=1,
                         bias=rng.normal(0, .1, 4)),
        "n2": nir.IF(r=np.ones(4 * (2 + 2 * pad) ** 2), v_threshold=np.ones(4 * (2 + 2 * pad) ** 2),
                     v_reset=np.zeros(4 * (2 + 2 * pad) ** 2)),
        "output": nir.Output(output_type={"output": np.array([4, 2 + 2 * pad, 2 + 2 * pad])}),
    }, [("input", "c1"), ("c1", "n1"), ("n1", "p"), ("p", "c2"), ("c2", "n2"),
        ("n2", "output")])


@pytest.mark.parametrize("pool,pad", [("sum", 0), ("avg", 0), ("sum", 1)])
def test_pool_then_conv_fuses_exactly(pool, pad):
    g = _sinabs_like(pool, pad)
    before = read_graph(g, producer="sinabs", rewrite=False)
    after = fuse_pool(read_graph(g, producer="sinabs", rewrite=False))
    assert "p" not in after.nodes and isinstance(after.nodes["c2"], DConv)
    assert after.nodes["c2"].stride == (2, 2) and after.nodes["c2"].weight.shape[2:] == (6, 6)
    x = _spikes((2, 10, 10), T=15)
    a, b = _run(before, x), _run(after, x)
    _assert_same(a, b)
    assert a.spikes[1].sum() > 0


def test_pool_flatten_affine_fuses_exactly():
    rng = np.random.default_rng(2)
    g = _graph({
        "input": nir.Input(input_type={"input": np.array([2, 6, 6])}),
        "c1": nir.Conv2d(input_shape=(6, 6), weight=rng.normal(0, 1, (3, 2, 3, 3)), stride=1,
                         padding=1, dilation=1, groups=1, bias=np.zeros(3)),
        "n1": _lif((3, 6, 6), tau=3e-4, theta=0.5),
        "p": nir.AvgPool2d(kernel_size=np.array([3, 3]), stride=np.array([3, 3]),
                           padding=np.array([0, 0])),
        "f": nir.Flatten(input_type={"input": np.array([3, 2, 2])}, start_dim=0, end_dim=-1),
        "fc": nir.Affine(weight=rng.normal(0, 2, (5, 12)), bias=rng.normal(0, .1, 5)),
        "n2": _lif(5, tau=3e-4, theta=0.3),
        "output": nir.Output(output_type={"output": np.array([5])}),
    }, [("input", "c1"), ("c1", "n1"), ("n1", "p"), ("p", "f"), ("f", "fc"), ("fc", "n2"),
        ("n2", "output")])
    before = read_graph(g, producer="neurodeploy", rewrite=False)
    after = fuse_pool(read_graph(g, producer="neurodeploy", rewrite=False))
    assert "p" not in after.nodes and after.nodes["fc"].weight.shape == (5, 108)
    x = _spikes((2, 6, 6))
    _assert_same(_run(before, x), _run(after, x))


def test_pool_matrix_is_the_pool():
    p = DPool(source="p", in_shape=(2, 5, 5), out_shape=(2, 2, 2), mode="avg", kernel=(2, 2),
              stride=(2, 2))
    x = torch.randn(2, 5, 5, dtype=torch.float64)
    ref = torch.nn.functional.avg_pool2d(x[None], 2, 2)[0].reshape(-1)
    assert torch.allclose(torch.as_tensor(pool_matrix(p)) @ x.reshape(-1), ref)


@pytest.mark.parametrize("where", ["before", "after"])
def test_scale_fuses_into_affine_exactly(where):
    W, b = _fc(3)
    s = np.random.default_rng(4).uniform(0.5, 2.0, 6 if where == "before" else 4)
    nodes = {"input": nir.Input(input_type={"input": np.array([6])}),
             "fc": nir.Affine(weight=W, bias=b), "s": nir.Scale(scale=s), "lif": _lif(4),
             "output": nir.Output(output_type={"output": np.array([4])})}
    chain = ["input", "s", "fc", "lif", "output"] if where == "before" else \
        ["input", "fc", "s", "lif", "output"]
    g = _graph(nodes, list(zip(chain[:-1], chain[1:], strict=True)))
    before = read_graph(g, producer="neurodeploy", rewrite=False)
    after = fuse_scale(read_graph(g, producer="neurodeploy", rewrite=False))
    assert "s" not in after.nodes
    x = _spikes((6,))
    _assert_same(_run(before, x), _run(after, x))


def test_v_leak_folds_into_bias_exactly():
    W, b = _fc(5)
    g = _graph({"input": nir.Input(input_type={"input": np.array([6])}),
                "fc": nir.Affine(weight=W, bias=b), "lif": _lif(4, v_leak=0.2),
                "output": nir.Output(output_type={"output": np.array([4])})},
               [("input", "fc"), ("fc", "lif"), ("lif", "output")])
    before = read_graph(g, producer="neurodeploy", rewrite=False)
    assert np.allclose(before.nodes["lif"].bias, 0.2 * 0.5)
    after = fold_leak(read_graph(g, producer="neurodeploy", rewrite=False))
    # Euler: v_leak enters as dt/τ·v_leak = 0.1 per step, the input with gain r·dt/τ = 1
    assert np.all(after.nodes["lif"].bias == 0) and np.allclose(after.nodes["fc"].bias,
                                                                 b + 0.1)
    x = _spikes((6,))
    a, c = _run(before, x), _run(after, x)
    _assert_same(a, c)
    assert a.spikes[0].sum() > 0


def test_mark_if_only_when_no_leak():
    W, b = _fc()
    g = _graph({"input": nir.Input(input_type={"input": np.array([6])}),
                "fc": nir.Affine(weight=W, bias=b), "lif": _lif(4),
                "output": nir.Output(output_type={"output": np.array([4])})},
               [("input", "fc"), ("fc", "lif"), ("lif", "output")])
    dg = read_graph(g, producer="neurodeploy", rewrite=False)
    assert mark_if(dg).nodes["lif"].kind == "lif"
    dg.nodes["lif"].alpha = np.ones(4)
    assert mark_if(dg).nodes["lif"].kind == "if"


def test_nested_subgraph_is_flattened_and_recurrent_edge_reads_previous_step():
    """A recurrent LIF written as a subgraph (snntorch RLeaky's form); the flattened graph
    runs the recurrence with a one-step delay, checked against a hand-written loop."""
    W, b = _fc(6)
    V = np.random.default_rng(7).normal(0, 0.8, (4, 4))
    sub = nir.NIRGraph(nodes={"input": nir.Input(input_type={"input": np.array([4])}),
                              "lif": _lif(4, tau=4e-4), "w_rec": nir.Linear(weight=V),
                              "output": nir.Output(output_type={"output": np.array([4])})},
                       edges=[("input", "lif"), ("lif", "w_rec"), ("w_rec", "lif"),
                              ("lif", "output")], type_check=False)
    g = _graph({"input": nir.Input(input_type={"input": np.array([6])}),
                "fc": nir.Affine(weight=W, bias=b), "rec": sub,
                "output": nir.Output(output_type={"output": np.array([4])})},
               [("input", "fc"), ("fc", "rec"), ("rec", "output")])
    dg = read_graph(g, producer="neurodeploy")
    assert set(dg.nodes) == {"input", "fc", "rec.lif", "rec.w_rec", "output"}
    assert ("rec.w_rec", "rec.lif") in dg.order()[1]
    x = _spikes((6,), T=30)
    out = _run(dg, x).spikes[0]
    v = torch.zeros(x.shape[1], 4, dtype=torch.float64)
    s = torch.zeros_like(v)
    Wt, bt, Vt = (torch.as_tensor(a) for a in (W, b, V))
    ref = []
    for t in range(x.shape[0]):
        v = 0.75 * v + (x[t] @ Wt.T + bt) + s @ Vt.T
        s = (v > 0.5).double()
        v = torch.where(s > 0, torch.zeros_like(v), v)
        ref.append(s)
    assert torch.equal(out, torch.stack(ref)) and out.sum() > 0


def test_skip_edges_sum_at_the_destination():
    W, b = _fc(8, 6, 6)
    W2, b2 = _fc(9, 6, 3)
    g = _graph({"input": nir.Input(input_type={"input": np.array([6])}),
                "fc1": nir.Affine(weight=W, bias=b), "l1": _lif(6),
                "fc2": nir.Affine(weight=W2, bias=b2), "skip": nir.Linear(weight=W2 * 0.5),
                "l2": _lif(3), "output": nir.Output(output_type={"output": np.array([3])})},
               [("input", "fc1"), ("fc1", "l1"), ("l1", "fc2"), ("fc2", "l2"),
                ("input", "skip"), ("skip", "l2"), ("l2", "output")])
    dg = read_graph(g, producer="neurodeploy")
    x = _spikes((6,))
    tr = _run(dg, x)
    s1 = tr.spikes[0]
    i2 = s1 @ torch.as_tensor(W2).T + torch.as_tensor(b2) + x @ torch.as_tensor(W2 * .5).T
    v = torch.zeros(x.shape[1], 3, dtype=torch.float64)
    ref = []
    for t in range(x.shape[0]):
        v = 0.5 * v + i2[t]
        s = (v > 0.5).double()
        v = v * (1 - s)
        ref.append(s)
    assert torch.equal(tr.spikes[1], torch.stack(ref))


def test_cubalif_and_subtract_reset_in_the_interpreter():
    """Per-neuron parameters, current decay, next-step subtract (snntorch) = immediate θ/α."""
    rng = np.random.default_rng(11)
    W, b = _fc(10)
    dt = 1e-4
    tau_syn, tau_mem = rng.uniform(2e-4, 8e-4, 4), rng.uniform(2e-4, 8e-4, 4)
    theta = rng.uniform(0.3, 1.0, 4)
    g = _graph({"input": nir.Input(input_type={"input": np.array([6])}),
                "fc": nir.Affine(weight=W, bias=b),
                "cu": nir.CubaLIF(tau_syn=tau_syn, tau_mem=tau_mem, r=tau_mem / dt,
                                  v_leak=np.zeros(4), v_threshold=theta, w_in=tau_syn / dt),
                "output": nir.Output(output_type={"output": np.array([4])})},
               [("input", "fc"), ("fc", "cu"), ("cu", "output")])
    dg = read_graph(g, producer="snntorch")
    x = _spikes((6,), T=40)
    out = _run(dg, x).spikes[0]
    a, bb = 1 - dt / tau_syn, 1 - dt / tau_mem
    a, bb, th = (torch.as_tensor(v) for v in (a, bb, theta))
    cur = x @ torch.as_tensor(W).T + torch.as_tensor(b)
    syn = torch.zeros(x.shape[1], 4, dtype=torch.float64)
    mem = torch.zeros_like(syn)
    spk = torch.zeros_like(syn)
    ref = []
    for t in range(x.shape[0]):  # snntorch Synaptic, reset_delay=True, subtract
        syn = a * syn + cur[t]
        mem = bb * mem + syn - spk * th
        spk = (mem > th).double()
        ref.append(spk)
    ref = torch.stack(ref)
    assert (out != ref).sum() <= 2  # θ/α vs θ: equal up to float round-off at exact ties
    assert ref.sum() > 20


def test_canonical_writer_round_trips():
    rng = np.random.default_rng(12)
    W, b = _fc(12)
    g = _graph({"input": nir.Input(input_type={"input": np.array([6])}),
                "fc": nir.Affine(weight=W, bias=b),
                "cu": nir.CubaLIF(tau_syn=rng.uniform(2e-4, 5e-4, 4),
                                  tau_mem=rng.uniform(2e-4, 5e-4, 4), r=np.full(4, 3.0),
                                  v_leak=np.full(4, .1), v_threshold=np.full(4, .4),
                                  w_in=np.full(4, 2.0)),
                "output": nir.Output(output_type={"output": np.array([4])})},
               [("input", "fc"), ("fc", "cu"), ("cu", "output")])
    d1 = read_graph(g, producer="snntorch")
    canon = to_canonical_nir(d1)
    d2 = read_graph(canon)  # the canonical file names its producer and semantics
    for f in ("alpha", "gain", "bias", "theta", "beta", "syn_gain", "reset_amount"):
        assert np.allclose(getattr(d1.nodes["cu"], f), getattr(d2.nodes["cu"], f),
                           rtol=1e-12), f
    x = _spikes((6,))
    _assert_same(_run(d1, x), _run(d2, x))


def test_subtract_reset_compiles_to_sublif_and_approximations_are_noted():
    g = _sinabs_like()
    dep = compile_nir(g, "loihi2", 10, producer="sinabs")
    assert [L.neuron for L in dep.plan.layers] == ["sublif", "sublif"]
    assert any("rest stays on v" in n for n in dep.chip_notes)
    with pytest.raises(HardwareFitError, match=r"layer 1 .*subtract reset \(node 'n1'\).*"
                                               r"programmable neurons.*--reset zero"):
        compile_nir(g, "loihi1", 10, producer="sinabs")
    dg = read_graph(g, producer="sinabs", reset="zero")
    notes = chip_notes(dg)
    assert any("multi-spikes" in n for n in notes) and any("v ≥ θ" in n for n in notes)
    dep = compile_nir(g, "loihi2", 10, producer="sinabs", reset="zero")
    meta = dep.plan.source["nir_metadata"]
    assert "multi-spikes" in meta["chip_notes"] and "sinabs" in meta["semantics"]
    assert [L.kind for L in dep.plan.layers] == ["conv", "conv"]
    assert [L.neuron for L in dep.plan.layers] == ["lif", "lif"]
    assert dep.plan.layers[1].stride == (2, 2)


def test_shapes_are_checked():
    W, b = _fc()
    g = _graph({"input": nir.Input(input_type={"input": np.array([5])}),
                "fc": nir.Affine(weight=W, bias=b), "lif": _lif(4),
                "output": nir.Output(output_type={"output": np.array([4])})},
               [("input", "fc"), ("fc", "lif"), ("lif", "output")])
    with pytest.raises(ConfigError, match=r"node 'fc'.*\(4, 6\).*\(5,\)"):
        to_dgraph(g, PRODUCERS["neurodeploy"])
    assert math.prod((2, 3)) == 6
    assert issubclass(DLinear, object) and issubclass(DNeuron, object)


def test_cubalif_compiles_with_current_decay_and_leak_bias():
    rng = np.random.default_rng(13)  # dt = 1e-4: the lava-dl convention
    W = rng.normal(0, 1.0, (4, 6))
    g = _graph({"input": nir.Input(input_type={"input": np.array([6])}),
                "fc": nir.Linear(weight=W),
                "cu": nir.CubaLIF(tau_syn=np.full(4, 4e-4), tau_mem=np.full(4, 5e-4),
                                  r=np.full(4, 5.0), v_leak=np.full(4, 0.3),
                                  v_threshold=np.full(4, 0.8), w_in=np.full(4, 4.0)),
                "output": nir.Output(output_type={"output": np.array([4])})},
               [("input", "fc"), ("fc", "cu"), ("cu", "output")])
    dep = compile_nir(g, "loihi2", 12, producer="lava-dl")
    L = dep.plan.layers[0]
    # β = 1 − dt/τ_syn = 0.75 → u factor 3072 = 4096 − du − 1; α = 0.8 → dv = 819
    assert (L.du, L.dv, L.neuron) == (1023, 819, "lif")
    q = dep.plan.quantization["layer1"]
    assert q["beta_q"] == 0.75 and q["u_headroom"] > 1
    # v_leak enters v each step: dt/τ_mem·v_leak = 0.06 in float units → the bias mantissa
    b_float = L.bias_mant * 2.0 ** (L.bias_exp - 6) / L.scale
    assert np.allclose(b_float, 0.06, atol=1e-3)
    # a bias into the current is a constant synaptic input; with export --nir's precision
    # scheme it is the fine current bias a_bias_mant << a_bias_exp in u units (weight units · 2^6)
    g.nodes["fc"] = nir.Affine(weight=W, bias=np.full(4, 0.1))
    L = compile_nir(g, "loihi2", 12, producer="lava-dl").plan.layers[0]
    assert L.neuron == "lif_cb" and "a_bias" not in L.neuron_arrays
    e = L.neuron_params["a_bias_exp"]
    a_bias = L.neuron_arrays["a_bias_mant"] * 2.0 ** (e - 6)  # weight units
    assert a_bias.shape == (4,)
    # the Affine's bias times the current input gain w_in·dt/τ_syn = 1 (×r·dt/τ_mem = 1),
    # within one step of the fine grid
    assert np.allclose(a_bias / L.scale, 0.1, atol=2.0 ** (e - 6) / L.scale)


def test_per_neuron_thresholds_normalise_exactly_and_compile():
    W, b = _fc(14)
    theta = np.random.default_rng(15).uniform(0.3, 1.2, 4)
    lif = nir.LIF(tau=np.full(4, 3e-4), r=np.full(4, 3.0), v_leak=np.full(4, 0.05),
                  v_threshold=theta, v_reset=np.zeros(4))
    g = _graph({"input": nir.Input(input_type={"input": np.array([6])}),
                "fc": nir.Affine(weight=W, bias=b), "lif": lif,
                "output": nir.Output(output_type={"output": np.array([4])})},
               [("input", "fc"), ("fc", "lif"), ("lif", "output")])
    for reset in ("zero", "subtract"):
        before = read_graph(g, producer="neurodeploy", reset=reset, rewrite=False)
        after = read_graph(g, producer="neurodeploy", reset=reset)
        assert np.all(after.nodes["lif"].theta == 1.0)
        x = _spikes((6,), T=40)
        a, c = _run(before, x), _run(after, x)
        assert torch.equal(a.spikes[0], c.spikes[0]) and a.spikes[0].sum() > 10
    dep = compile_nir(g, "loihi2", 10, producer="neurodeploy", reset="zero")
    assert dep.plan.layers[0].vth > 0
    # per-neuron decays cannot be rescaled: they compile to per-neuron dv (programmable
    # neurons); the fixed LIF of loihi1 refuses them naming the node
    g.nodes["lif"] = nir.LIF(tau=np.array([2e-4, 3e-4, 3e-4, 3e-4]), r=np.full(4, 3.0),
                             v_leak=np.zeros(4), v_threshold=theta, v_reset=np.zeros(4))
    L = compile_nir(g, "loihi2", 10, producer="neurodeploy", reset="zero").plan.layers[0]
    assert L.neuron_arrays["dv"].tolist() == [2048, 1365, 1365, 1365]  # 4096·dt/τ
    assert L.dv == 1365  # the largest α: the headroom checks' worst case
    with pytest.raises(HardwareFitError, match=r"'lif'.*per-neuron decays.*loihi2"):
        compile_nir(g, "loihi1", 10, producer="neurodeploy", reset="zero")


def test_surrogate_gradients_keep_the_forward_values():
    W, b = _fc(16)
    g = _graph({"input": nir.Input(input_type={"input": np.array([6])}),
                "fc": nir.Affine(weight=W, bias=b), "lif": _lif(4),
                "output": nir.Output(output_type={"output": np.array([4])})},
               [("input", "fc"), ("fc", "lif"), ("lif", "output")])
    dg = read_graph(g, producer="neurodeploy")
    x = _spikes((6,)).requires_grad_(True)
    plain = NIRModel(dg, dtype=torch.float64).run(x.detach())
    m = NIRModel(dg, dtype=torch.float64, surrogate="atan")
    logits = m(x)
    assert torch.equal(logits.detach(), plain.logits)
    logits.sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    with pytest.raises(ConfigError, match="surrogate"):
        NIRModel(dg).run(x, grad=True)


def test_talif_extension_is_refused_not_run_as_lif():
    W, b = _fc(17)
    lif = _lif(4, metadata={"neurodeploy.neuron": "talif", "theta_v": np.zeros(4),
                            "nds": np.zeros((3, 4))})
    g = _graph({"input": nir.Input(input_type={"input": np.array([6])}),
                "fc": nir.Affine(weight=W, bias=b), "lif": lif,
                "output": nir.Output(output_type={"output": np.array([4])})},
               [("input", "fc"), ("fc", "lif"), ("lif", "output")])
    with pytest.raises(ConfigError, match="'lif'.*neurodeploy.neuron.*export --model"):
        read_graph(g, producer="neurodeploy")


def test_recurrent_and_current_bias_need_programmable_neurons():
    W, b = _fc(18)
    V = np.random.default_rng(19).normal(0, 0.5, (4, 4))
    g = _graph({"input": nir.Input(input_type={"input": np.array([6])}),
                "fc": nir.Affine(weight=W, bias=b), "lif": _lif(4),
                "w_rec": nir.Linear(weight=V),
                "output": nir.Output(output_type={"output": np.array([4])})},
               [("input", "fc"), ("fc", "lif"), ("lif", "w_rec"), ("w_rec", "lif"),
                ("lif", "output")])
    L = compile_nir(g, "loihi2", 10, producer="neurodeploy").plan.layers[0]
    assert L.neuron == "lif_rec" and L.neuron_arrays["w_rec"].shape == (4, 4)
    with pytest.raises(HardwareFitError, match="recurrent connection.*programmable"):
        compile_nir(g, "loihi1", 10, producer="neurodeploy")
