"""Tiles to weights: where the hypernetwork's output becomes the target's kernels.

A weight of shape (m·t, k·t, *kernel) is m × k tiles of (t, t, *kernel), stored in the
embedding table in row-major order of (m, k). Assembling puts tile (row a, column b) at
``weight[a·t:(a+1)·t, b·t:(b+1)·t]``, then crops a padded weight to its true shape.

Two ways, the same numbers:

- ``assemble(tiles, layout)``: the generator's tiles through einops, with autograd doing the
  rest. Simple, and what tracing (``torch.export``) sees.
- ``generate_and_assemble(z, weight, bias, layout, buffers)``: the training hot path. One
  matmul (z · W + b, the generator folded into one matrix) into a buffer, one strided copy per
  weight into another; backward mirrors it: one strided copy per weight's gradient into a third
  buffer, two matmuls for the gradients of z and W. The buffers are reused from call to call,
  so a training step allocates no tile-sized memory: fresh multi-MB allocations cost page faults
  (they are returned to the OS on free, and glibc never keeps blocks over 32 MB), which on
  WRN-28-10 cost more than the generator's arithmetic. A buffer is reused only when nothing
  else holds it (weights kept from an earlier call, or saved by a graph not yet backpropagated,
  keep theirs), so reuse can never change a tensor someone still has.

Axes: m/k tiles along out/in channels, o/i channels within a tile, f kernel positions.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from einops import rearrange
from torch import Tensor


@dataclass(frozen=True)
class Placement:
    """Where one weight's tiles sit in the table and its values in the assembled buffer.

    Args:
        first_tile: index of its first tile in the kernel size's tile table.
        m: tiles along the out-channels.
        k: tiles along the in-channels.
        shape: the weight's true shape (out, in, *kernel), at most (m·t, k·t, *kernel).
        offset: where its values start in the flat buffer of assembled weights.
    """

    first_tile: int
    m: int
    k: int
    shape: tuple[int, ...]
    offset: int

    @property
    def tiles(self) -> int:
        return self.m * self.k


def layout(shapes: list[tuple[int, ...]], tile: int) -> tuple[Placement, ...]:
    """Placements of weights of these shapes, in order, for square tiles of ``tile`` channels."""
    placements, first, offset = [], 0, 0
    for shape in shapes:
        m, k = -(-shape[0] // tile), -(-shape[1] // tile)
        placements.append(Placement(first, m, k, tuple(shape), offset))
        first += m * k
        offset += m * k * tile * tile * _area(shape)
    return tuple(placements)


def _area(shape: tuple[int, ...]) -> int:
    return int(torch.Size(shape[2:]).numel())


def _crop(weight: Tensor, shape: tuple[int, ...]) -> Tensor:
    return weight if tuple(weight.shape[:2]) == shape[:2] else weight[: shape[0], : shape[1]]


def assemble(tiles: Tensor, placements: tuple[Placement, ...]) -> list[Tensor]:
    """(T, o, i, *kernel) tiles -> one weight per placement (autograd's own backward)."""
    chunks = tiles.split([p.tiles for p in placements])
    return [
        _crop(rearrange(chunk, "(m k) o i ... -> (m o) (k i) ...", m=p.m, k=p.k), p.shape)
        for p, chunk in zip(placements, chunks)
    ]


class ReusedBuffer:
    """A flat tensor handed out again while nothing but this object holds it."""

    def __init__(self) -> None:
        self.tensor: Tensor | None = None

    def get(self, numel: int, like: Tensor) -> Tensor:
        t = self.tensor
        if t is None or t.numel() != numel or t.dtype != like.dtype or t.device != like.device or _held_elsewhere(t):
            t = self.tensor = torch.empty(numel, dtype=like.dtype, device=like.device)
        return t


def _held_elsewhere(t: Tensor) -> bool:
    """Whether any other tensor (a view handed out, a graph's saved tensor) shares t's memory."""
    use_count = getattr(torch._C, "_storage_Use_Count", None)
    if use_count is None:  # no way to tell: never reuse, allocate afresh
        return True
    return use_count(t.untyped_storage()._cdata) > 2  # t itself and the temporary storage object


class Buffers:
    """The three buffers of one kernel size: tiles, assembled weights, tile gradients."""

    def __init__(self) -> None:
        self.tiles, self.weights, self.grad = ReusedBuffer(), ReusedBuffer(), ReusedBuffer()


def _tile_view(flat: Tensor, p: Placement, tile_shape: tuple[int, ...]) -> Tensor:
    """The placement's tiles as (m, o, k, i, *kernel): the assembled weight's axis order."""
    o, i, *kernel = tile_shape
    return flat[p.first_tile : p.first_tile + p.tiles].view(p.m, p.k, o, i, *kernel).transpose(1, 2)


class _GenerateAndAssemble(torch.autograd.Function):
    @staticmethod
    def forward(z, weight, bias, placements, tile_shape, buffers):  # noqa: ANN001, ANN205
        (o, i, *kernel), per_tile = tile_shape, weight.shape[1]
        tiles = buffers.tiles.get(z.shape[0] * per_tile, z).view(z.shape[0], *tile_shape)
        torch.addmm(bias, z, weight, out=tiles.view(z.shape[0], per_tile))  # (T, o·i·f)
        last = placements[-1]
        flat = buffers.weights.get(last.offset + last.tiles * per_tile, z)
        outputs = []
        for p in placements:
            assembled = flat[p.offset : p.offset + p.tiles * per_tile].view(p.m, o, p.k, i, *kernel)
            assembled.copy_(_tile_view(tiles, p, tile_shape))
            outputs.append(_crop(assembled.view(p.m * o, p.k * i, *kernel), p.shape))
        return tuple(outputs)

    @staticmethod
    def setup_context(ctx, inputs, output):  # noqa: ANN001, ANN205
        z, weight, _, placements, tile_shape, buffers = inputs
        ctx.save_for_backward(z, weight)
        ctx.placements, ctx.tile_shape, ctx.buffers = placements, tile_shape, buffers
        # A weight the loss did not use gets None, not a weight-sized tensor of zeros made for it:
        # backward zeroes its slice of the reused gradient buffer instead (no allocation).
        ctx.set_materialize_grads(False)

    @staticmethod
    def backward(ctx, *grads):  # noqa: ANN001, ANN205
        z, weight = ctx.saved_tensors
        o, i, *kernel = ctx.tile_shape
        d_tiles = ctx.buffers.grad.get(z.shape[0] * weight.shape[1], z).view(z.shape[0], *ctx.tile_shape)
        for p, grad in zip(ctx.placements, grads):
            target = _tile_view(d_tiles, p, ctx.tile_shape)  # (m, o, k, i, *kernel) view
            if grad is None:  # a weight the step did not use
                target.zero_()
                continue
            if tuple(grad.shape[:2]) != (p.m * o, p.k * i):  # cropped: the padding gets no gradient
                full = grad.new_zeros(p.m * o, p.k * i, *kernel)
                full[: p.shape[0], : p.shape[1]] = grad
                grad = full
            target.copy_(grad.reshape(p.m, o, p.k, i, *kernel))
        flat = d_tiles.view(z.shape[0], -1)  # (T, o·i·f)
        return flat @ weight.t(), z.t() @ flat, flat.sum(0), None, None, None


def generate_and_assemble(
    z: Tensor, weight: Tensor, bias: Tensor, placements: tuple[Placement, ...], tile_shape: tuple[int, ...], buffers: Buffers
) -> list[Tensor]:
    """The weights of ``placements`` from z (T, N_z) and the folded generator weight (N_z, o·i·f)
    and bias (o·i·f,), through reused buffers (see the module docstring).

    Under autocast the weights come out in its lower precision, as ``assemble``'s path gives them
    (autocast runs addmm in it): the inputs are cast here, by autograd's casts (fp32 parameters
    get fp32 gradients), and the rest runs with autocast off, whose casts ``out=`` writes refuse.
    """
    device = z.device.type
    if torch.is_autocast_enabled(device):
        dtype = torch.get_autocast_dtype(device)
        with torch.autocast(device, enabled=False):
            z, weight, bias = z.to(dtype), weight.to(dtype), bias.to(dtype)
            return list(_GenerateAndAssemble.apply(z, weight, bias, placements, tile_shape, buffers))
    return list(_GenerateAndAssemble.apply(z, weight, bias, placements, tile_shape, buffers))
