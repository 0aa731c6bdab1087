"""The LSTM update in plain tensor operations, and the machinery that compiles the GPU steps.

On CPU the recurrent loops run their steps with the fused C++ kernels (``models.fused_kernels``)
and oneDNN's matrix products, neither of which exists on a GPU. There, the eager operations of
``models.lstm_update`` would launch ~20 kernels per update forward and ~12 backward, each costing
the host more than the GPU spends on its arithmetic. ``models.compiled_steps`` instead compiles
the loops' steps, a block of them per call, matrix products and updates together, with
``torch.compile`` (TorchInductor: Triton kernels on CUDA). This module holds what those steps share: the update's
arithmetic written for tracing (``update``, ``update_grad``), when the compiled steps run
(``usable``), and how they are compiled (``compiled``) and guarded (``guarded``).

When: on CUDA tensors by default. ``HYPER_COMPILED_STEPS=0`` turns it off (the eager operations
run), ``=1`` turns it on for CPU tensors as well, which is how the tests hold the compiled steps
to the eager path without a GPU. If compiling fails (no Triton, no C++ compiler), a warning says
so once and the eager operations run from then on.

The first sequence compiles each variant it meets (with or without layer norm and a dropout
mask, training or evaluation, forward and backward; ~5–20 s each on first use on this project's
2-core CPU machines, cached on disk by Inductor after); later sequences reuse them.
"""

from __future__ import annotations

import logging
import os
import types
import warnings
from collections.abc import Callable
from typing import TYPE_CHECKING, NamedTuple

import torch
from torch import Tensor

from models import fused_kernels

if TYPE_CHECKING:
    from models.lstm_update import Saved, UpdateWeights

_log = logging.getLogger(__name__)
ENV_SWITCH = "HYPER_COMPILED_STEPS"


def _read_mode(value: str | None) -> str | None:
    """The switch's value: "0" (never), "1" (on every device) or None (on CUDA). Anything else
    is a mistake that should not pass unseen: a warning, and None."""
    if value in (None, "", "0", "1"):
        return value or None
    warnings.warn(f"{ENV_SWITCH} must be 0 or 1, got {value!r}: ignored (the compiled steps run on CUDA only)",
                  RuntimeWarning, stacklevel=2)
    return None


mode = _read_mode(os.environ.get(ENV_SWITCH))
_broken = False  # set once compiling failed: the eager operations run from then on


def usable(like: Tensor) -> bool:
    """Whether the loops' steps on tensors like ``like`` run compiled (``models.compiled_steps``).
    Where the fused CPU kernels run, they do."""
    if _broken or mode == "0" or not like.is_floating_point():
        return False
    if like.device.type == "cpu":
        return mode == "1" and not fused_kernels.usable(like)
    return mode == "1" or like.device.type == "cuda"


class Sums(NamedTuple):
    """The layer-norm parameters' gradients summed over the batch and the steps (``UpdateGrads``'
    tensors: the gate gain and bias (1, 4, H), the cell gain and bias (H,))."""

    gate_weight: Tensor
    gate_bias: Tensor
    cell_weight: Tensor
    cell_bias: Tensor


def _layer_norm_stats(x: Tensor, eps: float) -> tuple[Tensor, Tensor]:
    """Mean and 1/σ over the last dimension, kept (layer norm without gain)."""
    mean = x.mean(-1, keepdim=True)
    return mean, torch.rsqrt(x.var(-1, unbiased=False, keepdim=True) + eps)


def _normalized_backward(d: Tensor, x_hat: Tensor, rstd: Tensor) -> Tensor:
    """∂L/∂x of x̂ = (x − mean)·rstd from ∂L/∂x̂ (layer norm's backward, without gain)."""
    return rstd * (d - d.mean(-1, keepdim=True) - x_hat * (d * x_hat).mean(-1, keepdim=True))


def update(
    y: Tensor, c_prev: Tensor, mask: Tensor | None, w: UpdateWeights, out: Saved | None, h_out: Tensor | None
) -> tuple[Tensor, Tensor]:
    """``lstm_update.update_forward``'s arithmetic in plain tensor operations, the same identities (tanh through σ, the
    gate gains doubled for g), writing what the backward needs into ``out`` when given."""
    layer_norm = w.cell_scale is not None
    if layer_norm:
        mean, rstd = _layer_norm_stats(y, w.eps)
        y_hat = (y - mean) * rstd
    else:
        y_hat = y
    s = torch.sigmoid(y_hat * w.scale + w.shift)  # σ(a_i), σ(a_f + 1), σ(2a_g), σ(a_o)
    i, f, s_g, o = s.unbind(-2)
    g = s_g * 2 - 1
    if mask is not None:
        g = g * mask
    c = f * c_prev + i * g
    if layer_norm:
        cell_mean, cell_rstd = _layer_norm_stats(c, w.eps)
        c2 = (c - cell_mean) * cell_rstd * w.cell_scale + w.cell_shift
    else:
        c2 = c * 2
    tanh_c = torch.sigmoid(c2) * 2 - 1
    h = o * tanh_c
    if h_out is not None:
        h_out.copy_(h)
    if out is not None:
        i_m = i * 2 if mask is None else i * mask * 2
        out.k.copy_(torch.stack([g, c_prev, i_m, tanh_c], dim=-2) * (s - s * s))
        out.e.copy_(o - h * tanh_c)
        out.f.copy_(f)
        out.c.copy_(c)
        if layer_norm:
            out.y_hat.copy_(y_hat)
            out.mean.copy_(mean)
            out.rstd.copy_(rstd)
            out.cell_mean.copy_(cell_mean)
            out.cell_rstd.copy_(cell_rstd)
    return h, c


def update_grad(
    dh: Tensor, dc: Tensor, saved: Saved, w: UpdateWeights, sums: Sums | None, dy_out: Tensor | None = None
) -> tuple[Tensor, Tensor]:
    """``lstm_update.update_backward``'s arithmetic → ∂L/∂y_t (also written into ``dy_out`` if
    given), ∂L/∂c_{t-1}. The layer-norm parameters' gradients, summed over the batch, are added
    into ``sums``."""
    d_cell = dh * saved.e  # ∂L/∂ĉ_t
    layer_norm = w.cell_weight is not None
    if layer_norm:
        c_hat = (saved.c - saved.cell_mean) * saved.cell_rstd
        dc = dc + _normalized_backward(d_cell * w.cell_weight, c_hat, saved.cell_rstd)
        sums.cell_weight.add_((d_cell * c_hat).sum(0))
        sums.cell_bias.add_(d_cell.sum(0))
    else:
        dc = dc + d_cell
    da = torch.stack([dc, dc, dc, dh], dim=-2) * saved.k  # (B, 4, H)
    dc_prev = dc * saved.f
    if not layer_norm:
        dy = da * w.scale
    else:
        sums.gate_weight.add_((da * saved.y_hat).sum(0, keepdim=True))
        sums.gate_bias.add_(da.sum(0, keepdim=True))
        dy = _normalized_backward(da * w.scale, saved.y_hat, saved.rstd)
    if dy_out is not None:
        dy_out.copy_(dy)
    return dy, dc_prev


_variants: dict[tuple, Callable] = {}


def compiled(fn: Callable, variant: tuple) -> Callable:
    """``fn`` compiled for one variant: which optional inputs are None, and the sizes.

    Each variant compiles a copy of ``fn`` under its own code object: torch.compile keeps at
    most 8 compiled versions per code object and then fails, and one process can meet more
    than that (a model's cores, training and evaluation batches, dropout on and off). Sizes are
    compiled static (``dynamic=False``): symbolic sizes cost ~40% more host time per call here,
    and the host's time per call is what these small steps are bound by. ``fullgraph``: a graph
    break would put eager operations back into the loop unnoticed."""
    key = (fn.__name__, variant)
    if not _variants:  # the first compile holds the first sequence up: say so, not a silent pause
        _log.warning("Compiling the recurrent steps with torch.compile (first use: tens of seconds; %s=0 skips it)",
                     ENV_SWITCH)
    if key not in _variants:
        code = fn.__code__.replace(co_name=f"{fn.__name__}_{len(_variants)}")
        copy = types.FunctionType(code, fn.__globals__, code.co_name, fn.__defaults__, fn.__closure__)
        _variants[key] = torch.compile(copy, fullgraph=True, dynamic=False)
    return _variants[key]


def guarded(compiled: Callable, eager: Callable, *args):
    """``compiled(*args)``; if compiling fails, a warning and ``eager(*args)``, and eager from then on."""
    global _broken
    if not _broken:
        try:
            return compiled(*args)
        except torch.OutOfMemoryError:
            raise  # the eager operations would need as much
        except Exception as error:  # noqa: BLE001 — any failure to compile means: run eagerly
            _broken = True
            warnings.warn(
                f"torch.compile of the recurrent steps failed ({type(error).__name__}: {str(error).splitlines()[0]}); "
                f"the recurrent loops run their eager operations (set {ENV_SWITCH}=0 to skip the attempt)",
                RuntimeWarning,
                stacklevel=3,
            )
    return eager(*args)
