"""SLAYER (lava-dl 0.6.0) networks exported with SLAYER's own ``export_hdf5`` — run in the Lava
environment: ``python tests/slayer_nets.py OUTDIR dense,conv,pool,delay SEED`` writes OUTDIR/<kind>.net.

Each block writes its own group (``block.export_hdf5(layer.create_group(str(i)))``), the way
lava-dl's examples write a network; the conv networks start with an input group that states
the input shape (netx reads it from there).
"""

from __future__ import annotations

import sys

import h5py
import numpy as np
import torch
from lava.lib.dl import slayer

NEURON = {"threshold": 1.25, "current_decay": 0.25, "voltage_decay": 0.03,
          "tau_grad": 0.03, "scale_grad": 3, "requires_grad": False}


def blocks(kind: str) -> tuple[list[torch.nn.Module], tuple[int, ...]]:
    cuba = slayer.block.cuba
    if kind == "dense":
        return [cuba.Dense(NEURON, 40, 24, weight_scale=2, weight_norm=False),
                cuba.Dense({**NEURON, "voltage_decay": 0.1}, 24, 10, weight_scale=2,
                           weight_norm=False)], (40,)
    if kind == "conv":
        return [cuba.Conv(NEURON, 2, 6, 3, padding=1, stride=1, weight_scale=2,
                          weight_norm=False),
                cuba.Conv(NEURON, 6, 8, 3, padding=0, stride=2, weight_scale=2,
                          weight_norm=False),
                cuba.Flatten(),
                cuba.Dense(NEURON, 8 * 3 * 3, 10, weight_scale=2, weight_norm=False)], (2, 8, 8)
    if kind == "delay":  # axonal delays of 0…3 steps per neuron
        return [cuba.Dense(NEURON, 40, 10, weight_scale=2, weight_norm=False, delay=True)], (40,)
    if kind == "pool":
        return [cuba.Pool(NEURON, 2), cuba.Flatten(),
                cuba.Dense(NEURON, 2 * 4 * 4, 10, weight_scale=2, weight_norm=False)], (2, 8, 8)
    raise SystemExit(f"unknown kind {kind!r}")


def main(out: str, kind: str, seed: int) -> None:
    torch.manual_seed(seed)
    net, shape = blocks(kind)
    x = (torch.rand((1,) + shape + (4,)) < 0.5).float()  # N, C(, H, W), T: sets the shapes
    y = x if len(shape) > 1 else x.reshape(1, shape[0], 4)
    with torch.no_grad():
        for b in net:
            y = b(y)
        if kind == "delay":  # the delays exist after the first forward: 0…3 steps per neuron
            d = net[0].delay.delay
            d.copy_(torch.randint(0, 4, d.shape, generator=torch.Generator().manual_seed(seed))
                    .to(d.dtype))
    with h5py.File(out, "w") as f:
        layer = f.create_group("layer")
        i = 0
        if len(shape) > 1:
            g = layer.create_group("0")
            g.create_dataset("type", (1,), "S10", [b"input"])
            g.create_dataset("shape", data=np.array(shape))
            i = 1
        for k, b in enumerate(net):
            b.export_hdf5(layer.create_group(str(i + k)))


if __name__ == "__main__":
    for k in sys.argv[2].split(","):
        main(f"{sys.argv[1]}/{k}.net", k, int(sys.argv[3]) if len(sys.argv) > 3 else 0)
