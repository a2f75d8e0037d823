"""Architecture strings: shapes, defaults, case, errors that name the token."""

from __future__ import annotations

import pytest

from neurodeploy.architecture import parse_architecture
from neurodeploy.errors import ConfigError


def test_certify_snn_mnist_conv():
    a = parse_architecture("C64K3S2-C128K3S2-FC256-FC10", (1, 28, 28))
    kinds = [layer.kind for layer in a.layers]
    assert kinds == ["conv", "conv", "fc", "fc"]
    # (28 + 2·1 − 3)//2 + 1 = 14, then 7: certify_snn's FC 6272 = 128·7·7
    assert [layer.out_shape for layer in a.layers] == [(64, 14, 14), (128, 7, 7), (256,), (10,)]
    assert a.layers[2].in_size == 6272
    assert a.layers[2].flatten_before and not a.layers[3].flatten_before
    assert a.num_classes == 10
    assert a.layers[0].padding == 1  # default k // 2


def test_fc_only_and_case_insensitive():
    a = parse_architecture("fc512-Fc256-FC10", (1, 28, 28))
    assert [layer.in_size for layer in a.layers] == [784, 512, 256]
    assert [layer.out_size for layer in a.layers] == [512, 256, 10]
    assert a.layers[0].flatten_before


def test_explicit_stride_padding_and_pools():
    a = parse_architecture("C8K5S1P0-AP2-SP2-FC10", (2, 34, 34))
    assert a.layers[0].out_shape == (8, 30, 30)  # 34 − 5 + 1
    assert a.layers[1].kind == "avgpool" and a.layers[1].out_shape == (8, 15, 15)
    assert a.layers[2].kind == "sumpool" and a.layers[2].out_shape == (8, 7, 7)
    assert not a.layers[1].has_weights and a.layers[0].has_weights
    assert a.layers[3].in_size == 8 * 7 * 7


@pytest.mark.parametrize(
    "text, shape, fragment",
    [
        ("FC10-XY3", (1, 8, 8), "'XY3'"),
        ("", (1, 8, 8), "empty"),
        ("C8K3-AP2", (1, 8, 8), "last layer must be FC"),
        ("FC32-C8K3-FC10", (1, 8, 8), "'C8K3'"),
        ("C8K9P0-FC10", (1, 8, 8), "empty output"),
        ("FC0-FC10", (1, 8, 8), "no neurons"),
        ("FC10", (0, 8, 8), "positive"),
        ("FC10--FC10", (1, 8, 8), "token 2"),
    ],
)
def test_bad_strings_raise_config_error_naming_the_problem(text, shape, fragment):
    with pytest.raises(ConfigError) as err:
        parse_architecture(text, shape)
    assert fragment in str(err.value)


def test_model_built_from_string_has_matching_layers():
    from neurodeploy.models import ModelConfig, build_model, num_parameters

    m = build_model(ModelConfig("C4K3S2-FC16-FC10", (1, 8, 8)))
    assert m.synapses[0].weight.shape == (4, 1, 3, 3)
    assert m.synapses[1].weight.shape == (16, 4 * 4 * 4)
    assert num_parameters(m) == 4 * 9 + 4 + 64 * 16 + 16 + 16 * 10 + 10
