"""Expectation over Transformation: loss and input gradient averaged over stochastic draws.

For a stochastic classifier f (Bernoulli encoding, noisy neurons) the attacker ascends

    ∇_x E_ω[ l(f(x; ω), y) ]  ≈  (1/N) Σ_{n=1..N} ∇_x l(f(x; ω_n), y)

The N draws are folded into the batch dimension (one forward of ``N·B`` inputs instead of N
sequential passes); ``chunk`` bounds the folded batch to limit memory. The returned logits
are the mean over draws and decide "misclassified" inside attacks; the evaluation engine
re-decides with its own replay (see :mod:`neurodeploy.attacks.engine`).

A classifier whose output does not depend differentiably on x (e.g. a Heaviside without
surrogate, detached spikes) yields a zero gradient rather than an error: that *is* gradient
masking, and :mod:`neurodeploy.attacks.masking` detects it.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def eot_loss_grad(
    f: Callable[[torch.Tensor], torch.Tensor],
    x: torch.Tensor,
    y: torch.Tensor,
    loss_fn: LossFn,
    eot_iter: int = 1,
    chunk: int | None = None,
    need_grad: bool = True,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Mean logits ``[B, K]``, mean per-example loss ``[B]`` and mean input gradient.

    ``chunk`` (number of draws per folded forward) defaults to all ``eot_iter`` at once.
    """
    B = x.shape[0]
    per = eot_iter if chunk is None else max(1, min(chunk, eot_iter))
    logit_sum: torch.Tensor | None = None
    loss_sum = torch.zeros(B, device=x.device)
    grad = torch.zeros_like(x)
    done = 0
    while done < eot_iter:
        n = min(per, eot_iter - done)
        xg = x.detach().requires_grad_(need_grad)
        with torch.enable_grad() if need_grad else torch.no_grad():
            if n == 1:
                z = f(xg)
                li = loss_fn(z, y)
            else:
                xr = xg.unsqueeze(0).expand(n, *x.shape).reshape(n * B, *x.shape[1:])
                zr = f(xr)
                li = loss_fn(zr, y.repeat(n)).view(n, B).sum(0)
                z = zr.view(n, B, -1).sum(0)
            if need_grad and li.requires_grad:
                grad += torch.autograd.grad(li.sum(), xg)[0].detach()
        loss_sum += li.detach()
        logit_sum = z.detach() if logit_sum is None else logit_sum + z.detach()
        done += n
    if logit_sum is None:
        from neurodeploy.errors import ConfigError

        raise ConfigError(f"eot_iter must be >= 1, got {eot_iter}")
    return logit_sum / eot_iter, loss_sum / eot_iter, grad / eot_iter


def eot_logits(
    f: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, eot_iter: int = 1
) -> torch.Tensor:
    """Mean logits over ``eot_iter`` draws, without gradients."""
    B = x.shape[0]
    with torch.no_grad():
        if eot_iter == 1:
            return f(x)
        xr = x.unsqueeze(0).expand(eot_iter, *x.shape).reshape(eot_iter * B, *x.shape[1:])
        return f(xr).view(eot_iter, B, -1).mean(0)
