"""α-S-CROWN: optimised relaxation parameters (beyond the paper; its §3.1 notes the fire bound
"can be potentially optimized by solving the decent gradient").

Every unstable neuron of every layer and step gets four fractions in [0, 1], optionally one
set per specification row (per margin j):

- fire lower slope  a = f·a_max,  a_max = 1/(m_U − θ)   (line through (θ, 0));
- fire upper slope  c = f·c_max,  c_max = 1/(θ − m_L)   (line through (θ, 1));
- temporal lower mix β_l (0: the paper's y_L·x, 1: McCormick y − y_U(1 − x));
- temporal upper mix β_u (0: the paper's θ·x, 1: y − θ·s).

Every choice is a valid relaxation (:mod:`neurodeploy.bounds.ops`), so every iterate gives a
sound lower bound; we keep the elementwise best over iterates (each (sample, row) has its own
parameters when ``per_spec=True``, so the maximum is attained by one parameter setting). The
start is the paper's choice, hence the result is never below S-CROWN. The intermediate bounds
stay the S-IBP ones (CROWN-IBP); the parameters are optimised by projected Adam on
−Σ lb.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from neurodeploy.bounds.crown import RelaxParams, crown_margin_lower
from neurodeploy.bounds.ibp import LayerBounds
from neurodeploy.bounds.network import BoundLayer
from neurodeploy.bounds.perturbation import InputBox
from neurodeploy.errors import ConfigError


@dataclass(frozen=True)
class AlphaConfig:
    """Optimisation settings: ``iterations`` Adam steps of size ``lr`` on the fractions;
    ``per_spec``: one parameter set per margin row; ``fire``/``temporal``: which families
    are optimised (the other keeps the paper's relaxation)."""

    iterations: int = 20
    lr: float = 0.2
    per_spec: bool = True
    fire: bool = True
    temporal: bool = True
    init: str = "zero"

    def __post_init__(self) -> None:
        if self.init not in ("zero", "paper"):
            raise ConfigError(f"alpha-crown init must be 'zero' or 'paper', got {self.init!r}")
        if self.iterations < 0:
            raise ConfigError(f"alpha-crown iterations must be >= 0, got {self.iterations}")
        if not self.lr > 0:
            raise ConfigError(f"alpha-crown lr must be > 0, got {self.lr}")


def _init_params(layers: list[BoundLayer], bounds: list[LayerBounds], spec_rows: int,
                 cfg: AlphaConfig) -> RelaxParams:
    p = RelaxParams()
    for k, (layer, lb) in enumerate(zip(layers, bounds, strict=True)):
        steps = lb.m_lo.shape[0]
        for t in range(steps):
            m_lo, m_hi = lb.m_lo[t].detach(), lb.m_hi[t].detach()

            def lift(v: torch.Tensor) -> torch.Tensor:
                if cfg.per_spec:
                    v = v.unsqueeze(1).expand(v.shape[0], spec_rows, *v.shape[1:])
                return v.clone().requires_grad_(True)

            if cfg.fire:
                if cfg.init == "paper":
                    fl, fh = layer.fire.paper_fracs(m_lo, m_hi)
                else:  # constant relaxation s ∈ [s_L, s_U]: the start equals S-IBP
                    fl, fh = torch.zeros_like(m_lo), torch.zeros_like(m_lo)
                p.fire_lo[(k, t)] = lift(fl)
                p.fire_hi[(k, t)] = lift(fh)
            if cfg.temporal and t > 0:
                z = torch.zeros_like(m_lo)
                p.temp_lo[(k, t)] = lift(z)
                p.temp_hi[(k, t)] = lift(z)
    return p


def alpha_crown_margin_lower(
    layers: list[BoundLayer],
    bounds: list[LayerBounds],
    spec: torch.Tensor,
    box: InputBox,
    config: AlphaConfig | None = None,
    **overrides,
) -> torch.Tensor:
    """Best margin lower bound ``[B, S]`` over the optimisation (≥ S-CROWN's, see module doc)."""
    cfg = config or AlphaConfig(**overrides)
    bounds = [LayerBounds(b.m_lo.detach(), b.m_hi.detach(), b.s_lo.detach(), b.s_hi.detach())
              for b in bounds]
    params = _init_params(layers, bounds, spec.shape[1], cfg)
    tensors = params.tensors()
    with torch.no_grad():
        best = crown_margin_lower(layers, bounds, spec, box, params)
    if not tensors or cfg.iterations == 0:
        return best
    opt = torch.optim.Adam(tensors, lr=cfg.lr)
    for _ in range(cfg.iterations):
        with torch.enable_grad():
            lb = crown_margin_lower(layers, bounds, spec, box, params)
            loss = -lb.sum()
            grads = torch.autograd.grad(loss, tensors)
        for t, g in zip(tensors, grads, strict=True):
            t.grad = g
        opt.step()
        with torch.no_grad():
            for t in tensors:
                t.clamp_(0.0, 1.0)
            best = torch.maximum(best, lb.detach())
    with torch.no_grad():
        best = torch.maximum(best, crown_margin_lower(layers, bounds, spec, box, params))
    return best
