"""Weight quantisation of any network: per-channel symmetric int8 / int4, ternary and binary.

Each quantised tensor is a ``torch.nn.utils.parametrize`` parametrization of the parameter: the
parameter keeps its float ("latent") values, and every forward pass uses their quantised and
dequantised copy, so the accuracy measured is that of the network running the quantised
weights. Training through it is quantisation-aware training: the gradient passes straight
through the rounding (the straight-through estimator). ``hyper.storage`` reads each tensor's
``storage_format``: codes packed at ``bits`` plus one fp32 scale per channel.

Codes, per channel c (a slice along the first axis: a conv's or linear's output channel, a
row of an embedding table), with scale s_c:

- ``bits=8`` / ``4``: q = clamp(round(w / s_c), -Q, Q), Q = 2^(bits-1) - 1, s_c = max|w_c| / Q
  (symmetric min-max: no value clips, so |w - s_c q| ≤ s_c / 2);
- ``bits=2``, ternary (Li & Liu 2016, TWN): q ∈ {-1, 0, 1}, s_c the mean |w| of the entries
  above Δ = 0.7 · mean|w_c|, rounded at s_c / 2;
- ``bits=1``, binary (Rastegari et al. 2016, BWN): q = sign(w), s_c = mean|w_c|.

A tensor whose channels hold fewer than ``MIN_CHANNEL_SIZE`` entries (a 1-wide embedding,
a bias-like vector) gets one scale for the whole tensor: a 4-byte scale per 1-4 codes would
cost more than it saves.

Why not torchao / torch.ao's modules: torchao's ``quantize_`` and its QAT configs rewrite
``nn.Linear`` (and ``nn.Embedding``) weights only, and torch.ao's eager quantisation swaps whole
modules for int8 kernels; neither reaches conv kernels and raw parameters (a hypernetwork's
embeddings and generator) alike, nor has ternary or binary codes. The rounding itself is
torch's per-channel fake-quantisation op (the one torch.ao's ``FakeQuantize`` runs), which
also gives the straight-through gradient; binary codes (no zero level) use the identity STE.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch import Tensor, nn
from torch.nn.utils import parametrize

from hyper.storage import TensorFormat

BITS = (1, 2, 4, 8)
MIN_CHANNEL_SIZE = 16
TERNARY_THRESHOLD = 0.7  # TWN's Δ = 0.7 · mean|w|


def check_bits(bits: object) -> None:
    if isinstance(bits, bool) or bits not in BITS:
        raise ValueError(f"bits must be one of 8, 4, 2 (ternary), 1 (binary), got {bits!r}")


class Quantizer(nn.Module):
    """A parametrization: w -> its per-channel symmetric quantised (dequantised) values.

    Args:
        bits: 8, 4, 2 (ternary) or 1 (binary).
    """

    def __init__(self, *, bits: int) -> None:
        super().__init__()
        check_bits(bits)
        self.bits = bits

    @property
    def levels(self) -> int:
        """Q: codes run over -Q..Q (binary: ±1, no zero)."""
        return max(2 ** (self.bits - 1) - 1, 1)

    def forward(self, w: Tensor) -> Tensor:
        rows = channel_rows(w)  # (C, entries per channel)
        scales = self.scales(rows.detach())
        if self.bits == 1:  # sign(w)·s forward, identity backward
            binary = torch.where(rows >= 0, 1.0, -1.0) * scales[:, None]
            return (rows + (binary - rows).detach()).reshape(w.shape)
        zero = torch.zeros(len(scales), dtype=torch.int32, device=w.device)
        fake = torch.fake_quantize_per_channel_affine(rows, scales, zero, 0, -self.levels, self.levels)
        return fake.reshape(w.shape)

    def scales(self, rows: Tensor) -> Tensor:
        """(C, n) latent values -> (C,) scales, never zero."""
        magnitude = rows.abs()
        if self.bits == 1:
            scale = magnitude.mean(dim=1)
        elif self.bits == 2:
            above = magnitude > TERNARY_THRESHOLD * magnitude.mean(dim=1, keepdim=True)
            scale = (magnitude * above).sum(dim=1) / above.sum(dim=1).clamp_min(1)
        else:
            scale = magnitude.amax(dim=1) / self.levels
        return scale.float().clamp_min(torch.finfo(torch.float32).tiny)

    @torch.no_grad()
    def codes(self, w: Tensor) -> Tensor:
        """The integer codes (as stored), shaped like ``w``."""
        rows = channel_rows(w)
        return torch.round(self(w).reshape(rows.shape) / self.scales(rows)[:, None]).to(torch.int8).reshape(w.shape)

    def storage_format(self, shape: torch.Size) -> TensorFormat:
        return TensorFormat(bits=self.bits, scales=channels(shape))


def channels(shape: torch.Size) -> int:
    """Scales a tensor of this shape gets: one per first-axis slice, or one (small slices)."""
    if len(shape) < 2 or shape.numel() // shape[0] < MIN_CHANNEL_SIZE:
        return 1
    return shape[0]


def channel_rows(w: Tensor) -> Tensor:
    """``w`` as (channels, entries per channel)."""
    return w.reshape(channels(w.shape), -1)


def quantizable(model: nn.Module) -> Iterator[tuple[nn.Module, str]]:
    """(module, name) of every parameter with two or more dimensions: conv and linear weights,
    a hypernetwork's embeddings and generator. Biases and norm gains stay fp32, as is usual:
    they are few, and the rounding of a bias is not shared by many products."""
    for module in model.modules():
        for name, p in module.named_parameters(recurse=False):
            if p.dim() >= 2 and not parametrize.is_parametrized(module, name):
                yield module, name


def quantize(model: nn.Module, *, bits: int) -> nn.Module:
    """Quantise every weight (two or more dimensions) of ``model`` in place; returns ``model``.

    Works on any module, a generated network's weight source included (its generated kernels
    are then made from quantised embeddings and generator). Quantised tensors are skipped, so
    calling it twice changes nothing.
    """
    check_bits(bits)
    for module, name in list(quantizable(model)):
        parametrize.register_parametrization(module, name, Quantizer(bits=bits))
    return model


def dequantize(model: nn.Module) -> nn.Module:
    """Remove every quantiser, leaving the float (latent) values; returns ``model``."""
    for module in list(model.modules()):
        if not parametrize.is_parametrized(module):
            continue
        for name in list(module.parametrizations):
            if any(isinstance(p, Quantizer) for p in module.parametrizations[name]):
                parametrize.remove_parametrizations(module, name, leave_parametrized=False)
    return model


def is_quantized(model: nn.Module) -> bool:
    return any(isinstance(m, Quantizer) for m in model.modules())
