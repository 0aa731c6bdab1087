"""Storage in bytes: what keeping a model's trained state takes, at the precision it is kept in.

Each parameter tensor is counted once (tied tensors too), in the cheapest of the layouts its
format allows:

- dense: numel × bits / 8, rounded up to whole bytes (fp32 4 B, bf16 2 B, int8 1 B per entry;
  a quantised tensor's codes packed at its bits: 4-bit ½ B, 1-bit ⅛ B);
- sparse, for a tensor with zeros (a pruned one): the non-zero values, plus either a bitmask
  (1 bit per entry) or their flat indices (the smallest of 1, 2, 4, 8 bytes that addresses
  the tensor), whichever is smaller. 50% pruning of fp32 therefore keeps 53% of the bytes,
  not half;
- plus a quantised tensor's scales, one fp32 (4 B) per channel.

A tensor's format: its dtype, unless a parametrization on it (``torch.nn.utils.parametrize``)
reports a ``storage_format`` (the quantisers of ``hyper.compression.quantize`` do). Zeros are
read off the tensor the network actually uses: a quantised tensor's dequantised values, a
pruned tensor's ``weight_orig * weight_mask``.

Like the parameter counts, buffers (batch-norm running statistics, pruning masks) are not
counted: a mask *is* the sparse layout, counted above.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor, nn

FP32_BYTES = 4


@dataclass(frozen=True)
class TensorFormat:
    """How one tensor's entries are stored.

    Args:
        bits: bits per stored entry (32 for fp32, 4 for int4 codes, ...).
        scales: fp32 scales stored beside the codes (a quantised tensor's, one per channel).
    """

    bits: float
    scales: int = 0


def tensor_bytes(numel: int, nonzero: int, fmt: TensorFormat) -> int:
    """Bytes of one tensor of ``numel`` entries, ``nonzero`` of them non-zero, in format ``fmt``."""
    dense = math.ceil(numel * fmt.bits / 8)
    values = math.ceil(nonzero * fmt.bits / 8)
    bitmask = values + math.ceil(numel / 8)
    indices = values + nonzero * index_bytes(numel)
    return min(dense, bitmask, indices) + fmt.scales * FP32_BYTES


def index_bytes(numel: int) -> int:
    """Bytes of the smallest unsigned integer that addresses every entry of the tensor."""
    return next(b for b in (1, 2, 4, 8) if numel <= 2 ** (8 * b))


def size_bytes(model: nn.Module) -> int:
    """What storing ``model``'s parameters takes, each in its own format (see the module doc)."""
    return sum(tensor_bytes(t.numel(), int(t.count_nonzero()), fmt) for t, fmt in stored_tensors(model))


@torch.no_grad()
def stored_tensors(model: nn.Module) -> list[tuple[Tensor, TensorFormat]]:
    """Every parameter as the network uses it (dequantised, masked), with its storage format."""
    buffers = dict(model.named_buffers())
    modules = dict(model.named_modules())
    stored = []
    for name, p in model.named_parameters():
        owner_name, _, leaf = name.rpartition(".")
        if leaf == "original" and ".parametrizations." in f".{owner_name}":
            stored.append(_parametrized(modules, owner_name))
        elif name.endswith("_orig") and name.removesuffix("_orig") + "_mask" in buffers:
            stored.append((p * buffers[name.removesuffix("_orig") + "_mask"], dtype_format(p.dtype)))
        else:
            stored.append((p, dtype_format(p.dtype)))
    return stored


def dtype_format(dtype: torch.dtype) -> TensorFormat:
    return TensorFormat(bits=torch.empty((), dtype=dtype).element_size() * 8)


def _parametrized(modules: dict[str, nn.Module], owner_name: str) -> tuple[Tensor, TensorFormat]:
    """``module.parametrizations.W.original``: the value ``module.W`` and the last reported format."""
    module_name, _, tensor_name = owner_name.rpartition(".parametrizations.")
    if not owner_name.startswith("parametrizations."):
        module = modules[module_name]
    else:  # the model itself is parametrized
        module, tensor_name = modules[""], owner_name.removeprefix("parametrizations.")
    value = getattr(module, tensor_name)
    fmt = dtype_format(value.dtype)
    for parametrization in module.parametrizations[tensor_name]:
        if hasattr(parametrization, "storage_format"):
            fmt = parametrization.storage_format(value.shape)
    return value, fmt
