"""SpikingJelly networks for the tests (``FILE.py:FACTORY`` targets of ``--torch-module``).

Imported only where spikingjelly is installed (the tests skip otherwise).
"""

from __future__ import annotations

import torch
from spikingjelly.activation_based import functional, layer, neuron
from torch import nn


def digits_cnn(step_mode: str = "m") -> nn.Sequential:
    """Conv(1→8, 3×3) + BN → LIF → AvgPool 2 → Flatten → Linear(128→10) → LIF, for 8×8 digits."""
    net = nn.Sequential(
        layer.Conv2d(1, 8, 3, padding=1, bias=False), layer.BatchNorm2d(8),
        neuron.LIFNode(tau=2.0, v_threshold=0.5, detach_reset=True),
        layer.AvgPool2d(2), layer.Flatten(), layer.Linear(128, 10),
        neuron.LIFNode(tau=2.0, v_threshold=0.5, detach_reset=True))
    functional.set_step_mode(net, step_mode)
    return net


def with_maxpool() -> nn.Sequential:
    return nn.Sequential(layer.Conv2d(1, 4, 3, padding=1), neuron.IFNode(),
                         layer.MaxPool2d(2), layer.Flatten(), layer.Linear(64, 10),
                         neuron.IFNode())


def not_a_module() -> int:
    return 3


def train_digits(steps: int = 6, epochs: int = 3, seed: int = 0) -> nn.Sequential:
    """The digits CNN trained with SpikingJelly's own surrogate (sigmoid) on the host's
    Bernoulli coding of the images, rate read-out, cross-entropy on spike counts."""
    from neurodeploy.data.core import load_dataset

    torch.manual_seed(seed)
    data = load_dataset("digits").train
    net = digits_cnn("m")
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    gen = torch.Generator().manual_seed(seed)
    for _ in range(epochs):
        order = torch.randperm(len(data.y), generator=gen)
        for i in range(0, len(order), 64):
            idx = order[i:i + 64]
            x = data.x[idx]
            s = (x.unsqueeze(0) > torch.rand((steps,) + tuple(x.shape), generator=gen)).float()
            loss = nn.functional.cross_entropy(net(s).sum(0), data.y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            functional.reset_net(net)
    return net.eval()


def soft_reset_mlp() -> nn.Sequential:
    """Soft reset (v_reset=None): the chip's ``sublif`` neuron, which netx cannot express."""
    return nn.Sequential(layer.Flatten(), layer.Linear(64, 16),
                         neuron.LIFNode(tau=2.0, v_reset=None), layer.Linear(16, 10),
                         neuron.LIFNode(tau=2.0, v_reset=None))
