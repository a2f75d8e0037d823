"""Per-example random streams for the known-draw flip searches (issue 21).

An example's search must not depend on the other examples of the batch: with one shared
generator, an example that stops drawing (broken, aborted, gated) shifts every later draw of the
batch, so the other examples' trajectories change. Here every example row draws from its own
generator.

1. a search draws one 63-bit ``key`` from the attack's generator;
2. row r gets an identity ``id_r`` that hashes its own content — the float32 bits ``b_{k,i}`` of
   its parts k = 0, 1 (clean image, known map): ``v_k = Σ_i mix(b_{k,i} + (i + 1 + k·2⁴⁰)·γ)``
   (sum mod 2⁶⁴), ``h_0 = v_0``, ``h_k = mix(h_{k−1} + v_k·γ)``, ``id_r = mix(h_last)``, with
   splitmix64's finaliser (Steele et al., OOPSLA 2014)

       mix(z) = h₃,  h₁ = (z ⊕ (z ≫ 30))·C₁,  h₂ = (h₁ ⊕ (h₁ ≫ 27))·C₂,  h₃ = h₂ ⊕ (h₂ ≫ 31)

   (mod 2⁶⁴, ``≫`` logical, C₁ = 0xBF58476D1CE4E5B9, C₂ = 0x94D049BB133111EB,
   γ = 0x9E3779B97F4A7C15) — so the stream follows the example, not its position in the batch
   (the preset's later steps run on the still-robust examples only);
3. row r's stream is a ``torch.Generator`` seeded with ``mix(key + id_r·γ) mod 2⁶³``; a draw for
   rows R of per-row shape S is ``torch.rand(S)`` from each of their generators, stacked
   ``[|R|, *S]`` — U(0, 1) — and advances only those generators (the per-row counter).

So row r's c-th draw is a function of (key, the example, c, S) alone. A loop over the rows of R:
at the searches' draw sizes (≥ one image per row) it costs ≈ 1.2–2× one shared ``torch.rand``
of the same size, a small part of a search (``benchmarks/RESULTS_flips.md``, round 4).
"""

from __future__ import annotations

import torch

_MASK64 = (1 << 64) - 1


def _signed(v: int) -> int:
    """A 64-bit constant as a signed int64."""
    v &= _MASK64
    return v - (1 << 64) if v >= 1 << 63 else v


GAMMA = _signed(0x9E3779B97F4A7C15)
C1 = _signed(0xBF58476D1CE4E5B9)
C2 = _signed(0x94D049BB133111EB)


def _lsr(z: torch.Tensor, s: int) -> torch.Tensor:
    """Logical right shift of int64 ``z`` by ``s`` bits (torch shifts signed ints arithmetically)."""
    return (z >> s) & ((1 << (64 - s)) - 1)


def mix(z: torch.Tensor) -> torch.Tensor:
    """splitmix64's finaliser on int64 (module docstring; wrapping arithmetic), a new tensor."""
    z = z ^ _lsr(z, 30)
    z.mul_(C1)
    z.bitwise_xor_(_lsr(z, 27))
    z.mul_(C2)
    return z.bitwise_xor_(_lsr(z, 31))


def mix_int(z: int) -> int:
    """Reference splitmix64 finaliser on Python ints (unsigned 64-bit), for the tests."""
    z &= _MASK64
    z = ((z ^ (z >> 30)) * (C1 & _MASK64)) & _MASK64
    z = ((z ^ (z >> 27)) * (C2 & _MASK64)) & _MASK64
    return z ^ (z >> 31)


def content_ids(*parts: torch.Tensor) -> torch.Tensor:
    """``id_r`` ``[B]`` (module docstring, step 2) of row-first float tensors ``[B, …]``: a hash
    of the float32 bits of each row's elements and their positions."""
    if not parts:
        raise ValueError("content_ids needs at least one tensor")
    h = None
    for k, t in enumerate(parts):
        bits = t.detach().to(torch.float32).reshape(t.shape[0], -1).contiguous()
        bits = bits.view(torch.int32).to(torch.int64) & 0xFFFFFFFF
        pos = torch.arange(1, bits.shape[1] + 1, dtype=torch.int64, device=bits.device)
        v = mix(bits + (pos + (k << 40)) * GAMMA).sum(1)  # wrapping sum: order-free
        h = v if h is None else mix(h + v * GAMMA)
    return mix(h)


class RowStreams:
    """One random stream (a seeded ``torch.Generator``) per example row of a batch (module
    docstring)."""

    def __init__(self, key: int, ids: torch.Tensor) -> None:
        self.key = int(key)
        seeds = mix(int(key) + ids.to(torch.int64).cpu() * GAMMA) & ((1 << 63) - 1)
        self.gens = [torch.Generator().manual_seed(int(s)) for s in seeds.tolist()]

    @classmethod
    def for_batch(cls, gen: torch.Generator, *parts: torch.Tensor) -> RowStreams:
        """Streams of a batch: the key from ``gen`` (one draw), the identities from the rows'
        content ``parts`` (row-first tensors, e.g. the clean images and the known maps)."""
        key = int(torch.randint(0, (1 << 63) - 1, (1,), generator=gen, device=gen.device))
        return cls(key, content_ids(*parts))

    def uniform(self, rows: torch.Tensor, shape: tuple[int, ...] | torch.Size,
                like: torch.Tensor) -> torch.Tensor:
        """The next draw of rows ``rows`` (``[m]``, batch positions): ``[m, *shape]`` U(0, 1)
        on ``like``'s device and dtype; advances only those rows' streams."""
        shape = tuple(int(d) for d in shape)
        out = torch.empty((rows.numel(), *shape))
        for i, r in enumerate(rows.tolist()):
            torch.rand(shape, generator=self.gens[r], out=out[i])
        return out.to(like.device, like.dtype)

    def at(self, rows: torch.Tensor) -> RowDraw:
        """The streams of rows ``rows`` as a draw object for code that works on those rows."""
        return RowDraw(self, rows)


class RowDraw:
    """The streams of some rows of a batch: ``rand(shape, like)`` draws ``[m, *shape]``;
    ``at(sub)`` narrows to the rows ``sub`` (local indices) of these."""

    def __init__(self, streams: RowStreams, rows: torch.Tensor) -> None:
        self.streams, self.rows = streams, rows

    def rand(self, shape: tuple[int, ...] | torch.Size, like: torch.Tensor) -> torch.Tensor:
        return self.streams.uniform(self.rows, shape, like)

    def at(self, sub: torch.Tensor) -> RowDraw:
        return RowDraw(self.streams, self.rows[sub.to(self.rows.device)])
