"""Clean accuracy of a classifier over a dataset: batched, seeded, without side effects.

``accuracy = (1/N) Σ_i 1[argmax_c f(x_i)_c = y_i]``. For a stochastic classifier (Bernoulli
input coding, noisy neurons) the figure depends on the random draw; :func:`evaluate` fixes it
with ``seed`` — the classifier's own generator (an
:class:`~neurodeploy.classifier.SNNClassifier`'s ``reseed``) and torch's global RNG are set from
the seed for the evaluation and restored afterwards, so evaluating in the middle of training
does not change the training run. With several seeds the accuracy of each draw is reported and
their mean is the headline figure.

Ties in the logits (possible with spike-count readouts) go to the lowest class index
(``torch.argmax``), as in certify_snn.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from tqdm.auto import tqdm

from neurodeploy.data.core import Dataset
from neurodeploy.errors import ConfigError
from neurodeploy.runtime import progress_disabled


@dataclass(frozen=True)
class EvalResult:
    """Accuracy over ``total`` samples for each seed; ``accuracy`` is the mean over seeds."""

    accuracy: float
    correct: tuple[int, ...]
    total: int
    seeds: tuple[int, ...]
    per_seed_accuracy: tuple[float, ...]
    per_class_accuracy: tuple[float, ...] = field(default_factory=tuple)
    dataset: str = ""
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@contextlib.contextmanager
def seeded(classifier: Any, seed: int) -> Iterator[None]:
    """Run the body with the classifier's generator and torch's RNG seeded by ``seed``, then
    restore both (so the caller's random streams continue as if nothing had happened)."""
    has_gen = hasattr(classifier, "reseed") and hasattr(classifier, "generator")
    if has_gen:
        old_seed = classifier.seed
        old_state = classifier.generator.get_state()
    devices = []
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        devices = list(range(torch.cuda.device_count()))
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        if has_gen:
            classifier.reseed(seed)
        try:
            yield
        finally:
            if has_gen:
                classifier.reseed(old_seed)
                classifier.generator.set_state(old_state)


def _device_of(classifier: Any) -> torch.device:
    try:
        return next(classifier.parameters()).device
    except (AttributeError, StopIteration):
        return torch.device("cpu")


@torch.no_grad()
def predict(
    classifier: Any,
    dataset: Dataset,
    batch_size: int = 256,
    seed: int = 0,
    quiet: bool = True,
) -> torch.Tensor:
    """Predicted classes ``[N]`` (int64, CPU) for one seeded draw."""
    if batch_size < 1:
        raise ConfigError(f"batch_size must be >= 1, got {batch_size}")
    device = _device_of(classifier)
    was_training = getattr(classifier, "training", False)
    if hasattr(classifier, "eval"):
        classifier.eval()
    preds = []
    try:
        with seeded(classifier, seed):
            starts = range(0, len(dataset), batch_size)
            for i in tqdm(
                starts, desc=f"eval {dataset.name}", leave=False, disable=progress_disabled(quiet)
            ):
                x = dataset.take(slice(i, i + batch_size)).to(device)
                preds.append(classifier(x).argmax(1).cpu())
    finally:
        if was_training:
            classifier.train()
    return torch.cat(preds) if preds else torch.zeros(0, dtype=torch.int64)


def evaluate(
    classifier: Any,
    dataset: Dataset,
    batch_size: int = 256,
    seeds: Sequence[int] | int = 0,
    quiet: bool = True,
) -> EvalResult:
    """Clean accuracy of ``classifier`` (``x → logits``) on ``dataset`` for each seed."""
    seeds = (int(seeds),) if isinstance(seeds, int) else tuple(int(s) for s in seeds)
    if not seeds:
        raise ConfigError("evaluate needs at least one seed")
    if len(dataset) == 0:
        raise ConfigError(f"dataset {dataset.name} is empty")
    t0 = time.perf_counter()
    y = dataset.y.cpu()
    correct, per_class_hits = [], torch.zeros(dataset.num_classes)
    for s in seeds:
        hit = predict(classifier, dataset, batch_size, s, quiet) == y
        correct.append(int(hit.sum()))
        per_class_hits += torch.bincount(y[hit], minlength=dataset.num_classes)[
            : dataset.num_classes
        ].float()
    counts = torch.bincount(y, minlength=dataset.num_classes)[: dataset.num_classes].float()
    per_class = per_class_hits / (counts * len(seeds)).clamp(min=1)
    per_seed = tuple(c / len(dataset) for c in correct)
    return EvalResult(
        accuracy=sum(per_seed) / len(per_seed),
        correct=tuple(correct),
        total=len(dataset),
        seeds=seeds,
        per_seed_accuracy=per_seed,
        per_class_accuracy=tuple(float(v) for v in per_class),
        dataset=dataset.name,
        seconds=time.perf_counter() - t0,
    )


def accuracy(classifier: Any, dataset: Dataset, batch_size: int = 256, seed: int = 0) -> float:
    """Clean accuracy in [0, 1] for one seeded draw (see :func:`evaluate`)."""
    return evaluate(classifier, dataset, batch_size, seed).accuracy
