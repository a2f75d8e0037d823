"""Architecture strings in the notation of the papers, parsed into frozen layer specs.

Grammar (tokens joined by ``-``, case-insensitive)::

    FC<n>                 fully connected layer with n LIF neurons          e.g. FC512
    C<c>K<k>[S<s>][P<p>]  2-D convolution, c output channels, k×k kernel,
                          stride s (default 1), zero padding p (default k//2)  e.g. C64K3S2
    AP<k>                 k×k average pooling (stride k) followed by LIF neurons
    SP<k>                 k×k sum pooling (stride k) followed by LIF neurons

Every token is a synaptic layer followed by a population of spiking neurons ("spiking
pool" for AP/SP: the pooled spikes drive LIF neurons, which is what a Loihi core can run).
An implicit flatten precedes the first FC layer after a spatial layer. The last token must
be FC and its width is the number of classes.

This module is pure Python (no torch, no numpy): the exporters and the Lava side use it too.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from neurodeploy.errors import ConfigError

_TOKEN = re.compile(
    r"^(?:FC(?P<fc>\d+)"
    r"|C(?P<c>\d+)K(?P<k>\d+)(?:S(?P<s>\d+))?(?:P(?P<p>\d+))?"
    r"|(?P<pool>AP|SP)(?P<pk>\d+))$",
    re.IGNORECASE,
)

LAYER_KINDS = ("fc", "conv", "avgpool", "sumpool")


@dataclass(frozen=True)
class LayerSpec:
    """One synaptic layer followed by spiking neurons.

    Attributes
    ----------
    kind : one of ``"fc"``, ``"conv"``, ``"avgpool"``, ``"sumpool"``.
    in_shape, out_shape : shapes without batch/time: ``(C, H, W)`` or ``(N,)``.
    out_channels : output features (fc) or channels (conv/pool).
    kernel, stride, padding : spatial parameters (0 for fc).
    flatten_before : True when the input must be flattened first (fc after a spatial layer).
    token : the source token, for error messages.
    """

    kind: str
    in_shape: tuple[int, ...]
    out_shape: tuple[int, ...]
    out_channels: int
    kernel: int = 0
    stride: int = 0
    padding: int = 0
    flatten_before: bool = False
    token: str = ""

    @property
    def in_size(self) -> int:
        return math.prod(self.in_shape)

    @property
    def out_size(self) -> int:
        return math.prod(self.out_shape)

    @property
    def has_weights(self) -> bool:
        return self.kind in ("fc", "conv")


@dataclass(frozen=True)
class Architecture:
    """A parsed architecture: the string, the input shape and the layer specs."""

    text: str
    input_shape: tuple[int, ...]
    layers: tuple[LayerSpec, ...]

    @property
    def num_classes(self) -> int:
        return self.layers[-1].out_channels


def _conv_out(size: int, k: int, s: int, p: int) -> int:
    return (size + 2 * p - k) // s + 1


def parse_architecture(text: str, input_shape: tuple[int, ...] | list[int]) -> Architecture:
    """Parse ``text`` (e.g. ``"C64K3S2-C128K3S2-FC256-FC10"``) for inputs of ``input_shape``.

    Raises
    ------
    ConfigError
        On an unknown token, a layer that would produce an empty output, a spatial layer on a
        flat input, or a last layer that is not FC. The message names the token.
    """
    if not isinstance(text, str) or not text.strip():
        raise ConfigError("architecture string is empty")
    input_shape = tuple(int(v) for v in input_shape)
    if not input_shape or any(v <= 0 for v in input_shape):
        raise ConfigError(f"input shape must be positive, got {input_shape}")
    tokens = [t.strip() for t in text.strip().split("-")]
    shape = input_shape
    layers: list[LayerSpec] = []
    for i, tok in enumerate(tokens):
        m = _TOKEN.match(tok)
        if m is None:
            raise ConfigError(
                f"architecture {text!r}: token {i + 1} {tok!r} is not FC<n>, C<c>K<k>[S<s>][P<p>], "
                f"AP<k> or SP<k>"
            )
        if m.group("fc"):
            n = int(m.group("fc"))
            if n <= 0:
                raise ConfigError(f"architecture {text!r}: {tok!r} has no neurons")
            layers.append(
                LayerSpec("fc", shape, (n,), n, flatten_before=len(shape) > 1, token=tok)
            )
            shape = (n,)
            continue
        if len(shape) != 3:
            raise ConfigError(
                f"architecture {text!r}: spatial layer {tok!r} needs a (C, H, W) input, got {shape}"
            )
        c_in, h, w = shape
        if m.group("c"):
            c, k = int(m.group("c")), int(m.group("k"))
            s = int(m.group("s")) if m.group("s") else 1
            p = int(m.group("p")) if m.group("p") is not None else k // 2
            kind = "conv"
        else:
            k = int(m.group("pk"))
            c, s, p = c_in, k, 0
            kind = "avgpool" if m.group("pool").upper() == "AP" else "sumpool"
        if k <= 0 or s <= 0 or c <= 0:
            raise ConfigError(f"architecture {text!r}: {tok!r} has a zero size")
        ho, wo = _conv_out(h, k, s, p), _conv_out(w, k, s, p)
        if ho <= 0 or wo <= 0:
            raise ConfigError(
                f"architecture {text!r}: {tok!r} on input {shape} gives an empty output"
            )
        layers.append(LayerSpec(kind, shape, (c, ho, wo), c, k, s, p, token=tok))
        shape = (c, ho, wo)
    if layers[-1].kind != "fc":
        raise ConfigError(f"architecture {text!r}: the last layer must be FC<classes>")
    return Architecture(text.strip(), input_shape, tuple(layers))
