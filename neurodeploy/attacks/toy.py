"""Small, quickly trained models for attack tests, benchmarks and examples (seconds on a CPU).

:func:`train_digits_snn` trains a :class:`~neurodeploy.models.SpikingNet` on scikit-learn's
digits with a plain Adam/BPTT loop (no defense): the "normal model" of the gradient-masking
checks and the target of the APGD-vs-PGD strength tests. :func:`masked_copy` returns the same
network with a Heaviside spike without surrogate (zero gradient): the deliberately masked
model the checks must flag.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from neurodeploy.classifier import SNNClassifier
from neurodeploy.models import ModelConfig, build_model


def train_digits_snn(
    encoding: str = "direct",
    arch: str = "FC64-FC10",
    num_steps: int = 5,
    epochs: int = 3,
    seed: int = 0,
    readout: str = "count",
    x: torch.Tensor | None = None,
    y: torch.Tensor | None = None,
    lr: float = 1e-2,
) -> SNNClassifier:
    """Train on digits/train (or on the given ``x``, ``y``) and return the classifier in eval mode.

    For ``encoding="spikes"`` pass ``x`` as time-first spikes ``[T, N, 1, 8, 8]``.
    """
    if x is None or y is None:
        from neurodeploy.data.core import load_digits_split

        sp = load_digits_split()
        x, y = sp.train.x, sp.train.y
    spikes = encoding == "spikes"
    shape = tuple(x.shape[2:]) if spikes else tuple(x.shape[1:])
    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    model = build_model(ModelConfig(arch, shape, num_steps=num_steps, encoding=encoding, readout=readout))
    clf = SNNClassifier(model, seed=seed)
    opt = torch.optim.Adam(model.parameters(), lr)
    n = y.shape[0]
    for _ in range(epochs):
        perm = torch.randperm(n, generator=g)
        for i in range(0, n, 64):
            b = perm[i:i + 64]
            xb = x[:, b] if spikes else x[b]
            loss = F.cross_entropy(clf(xb), y[b])
            opt.zero_grad()
            loss.backward()
            opt.step()
    model.eval()
    return clf


def _heaviside(v: torch.Tensor) -> torch.Tensor:
    return (v > 0).to(v.dtype)


def masked_copy(clf: SNNClassifier) -> SNNClassifier:
    """Deep copy whose spiking neurons use a Heaviside without surrogate (no gradient)."""
    model = build_model(clf.model.config)
    model.load_state_dict(clf.model.state_dict())
    model.eval()
    out = SNNClassifier(model, clf.encoder, seed=clf.seed)
    for n in out.model.neurons:
        if hasattr(n, "spike_fn") and getattr(n, "kind", "") != "li":
            n.spike_fn = _heaviside
    return out


def cached_digits_snn(cache_dir: str, name: str = "digits_direct", **kwargs: object) -> SNNClassifier:
    """:func:`train_digits_snn` with a checkpoint cache in ``cache_dir`` (keyed by ``name`` and
    the arguments; training is deterministic, so a cached model equals a fresh one)."""
    import hashlib
    import json
    from pathlib import Path

    from neurodeploy.models import load_checkpoint, save_checkpoint

    key = hashlib.sha256(json.dumps(kwargs, sort_keys=True, default=str).encode()).hexdigest()[:12]
    path = Path(cache_dir) / f"{name}_{key}.pt"
    if path.is_file():
        model, _ = load_checkpoint(path)
        return SNNClassifier(model, seed=int(kwargs.get("seed", 0)))  # type: ignore[arg-type]
    clf = train_digits_snn(**kwargs)  # type: ignore[arg-type]
    save_checkpoint(path, clf.model)
    return clf
