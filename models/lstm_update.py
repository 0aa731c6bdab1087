"""The LSTM update of one time step, forward and backward by hand, for the fused time loops.

Every LSTM-shaped cell here (LN-LSTM, plain LSTM, the HyperLSTM's main and hyper cells) ends in
the same update from the gate pre-activations y = (y_i, y_f, y_g, y_o) and c_{t-1}:

    a_t     = LN(y_t) ⊙ γ + β                 per gate (γ, β: (4, H)); without layer norm a_t = y_t
    c_t     = σ(a_f + forget_bias) ⊙ c_{t-1} + σ(a_i) ⊙ tanh(a_g) ⊙ m_t
    h_t     = σ(a_o) ⊙ tanh(ĉ_t),   ĉ_t = LN(c_t) ⊙ γ_c + β_c      without layer norm ĉ_t = c_t

m_t is the recurrent-dropout mask on the cell update (Semeniuta et al. 2016), 1 without it.

``update_forward`` runs a step with autograd off. When training, it also writes what its
derivative needs into step t of sequence-long buffers (``Saved``, allocated once per sequence
by ``saved_buffers``); ``update_backward`` reads them back, takes ∂L/∂h_t and ∂L/∂c_t to
∂L/∂y_t and ∂L/∂c_{t-1}, and adds the step's share of the parameter gradients to a
``UpdateGrads``.

Why by hand: on CPU a step is a few dozen operations on (B, H) tensors, each costing more in
dispatch and autograd bookkeeping than in arithmetic. Written out, a step is ~20 operations
forward and ~12 backward, with no graph. Three choices keep the count and the memory traffic
down, measured on one CPU thread:
- tanh(x) = 2σ(2x) − 1, an exact identity: torch's CPU tanh ran ~8× slower than its sigmoid,
  and the factor 2 folds into the gate and cell gains;
- the four gates' derivatives are gathered into one (B, 4, H) tensor ``k`` while their factors
  are at hand in the forward pass, so the backward multiplies once;
- saved tensors go into buffers made once per sequence, not into a hundred per-step tensors
  kept alive until the backward (those made Python's garbage collector walk every object of
  the process several times per sequence, and kept the allocator growing the heap).

On CPU, in float32 and float64, both functions run as one call of a fused C++ kernel instead
(``models.fused_kernels``: one pass over memory instead of ~20, ~3× faster per step), writing
the same buffers; the operations below are the fallback where the kernels cannot be built, and
the reference the tests hold both to.
"""

from __future__ import annotations

from itertools import repeat
from typing import NamedTuple

import torch
from torch import Tensor

from models import compiled_update, fused_kernels, workspace

# σ(2·a_g) gives tanh(a_g) = 2σ(2a_g) − 1: g's row of the gate gain and bias is doubled.
_G_DOUBLED = (1.0, 1.0, 2.0, 1.0)
_ALL_GRADS = [True, True, True]
_INPUT_GRAD = [True, False, False]


class UpdateWeights(NamedTuple):
    """The update's parameters in the form the loops use, derived once per sequence.

    scale, shift (4, H): gate LN gain and bias (1 and 0 without layer norm), the forget bias
    added to f's shift, g's row doubled. ones (H,): the gate LN's own gain, 1 (torch's CPU layer
    norm ran ~2× faster given a gain than without one). cell_weight, cell_bias (H,): the cell
    LN's gain and bias (its backward kernel takes them); cell_scale, cell_shift (H,): 2γ_c and
    2β_c. The cell entries are None without layer norm. eps: the LN epsilon.
    """

    scale: Tensor
    shift: Tensor
    ones: Tensor
    cell_weight: Tensor | None
    cell_bias: Tensor | None
    cell_scale: Tensor | None
    cell_shift: Tensor | None
    eps: float

    @property
    def layer_norm(self) -> bool:
        return self.cell_weight is not None


def update_weights(
    *,
    gate_weight: Tensor | None,
    gate_bias: Tensor | None,
    cell_weight: Tensor | None,
    cell_bias: Tensor | None,
    forget_bias: float,
    hidden_size: int,
    eps: float,
    like: Tensor,
) -> UpdateWeights:
    """``UpdateWeights`` from the parameters (the four LN tensors all None: no layer norm)."""
    with torch.no_grad():
        doubled = like.new_tensor(_G_DOUBLED)[:, None]  # (4, 1)
        forget = like.new_tensor([0.0, forget_bias, 0.0, 0.0])[:, None]
        ones = like.new_ones(hidden_size)
        if gate_weight is None:
            scale, shift = doubled.expand(4, hidden_size), (forget * doubled).expand(4, hidden_size)
            return UpdateWeights(scale.contiguous(), shift.contiguous(), ones, None, None, None, None, eps)
        scale, shift = gate_weight * doubled, (gate_bias + forget) * doubled
        cell = (cell_weight.detach(), cell_bias.detach(), cell_weight * 2, cell_bias * 2)
        return UpdateWeights(scale, shift, ones, *cell, eps)


class Saved(NamedTuple):
    """What the backward of the update needs: sequence buffers (T, B, ...), or step t's views.

    Entries marked LN are None without layer norm.
    """

    y_hat: Tensor | None  # (B, 4, H) LN(y_t)                                               LN
    mean: Tensor | None  # (B, 4, 1) the gate LN's mean (written, not needed)              LN
    rstd: Tensor | None  # (B, 4, 1) the gate LN's 1/σ                                     LN
    k: Tensor  # (B, 4, H) ∂c_t/∂a for i, f, g and ∂h_t/∂a_o (see update_forward)
    e: Tensor  # (B, H) ∂h_t/∂ĉ_t = σ(o)(1 − tanh² ĉ_t)
    f: Tensor  # (B, H) σ(f) = ∂c_t/∂c_{t-1}
    c: Tensor  # (B, H) c_t, the cell LN's input; also the state the next step reads
    cell_mean: Tensor | None  # (B, 1)                                                    LN
    cell_rstd: Tensor | None  # (B, 1)                                                    LN

    def block(self, start: int, stop: int) -> Saved:
        """Steps start to stop − 1 of sequence buffers, as (stop − start, B, ...) views."""
        return Saved(*(None if buffer is None else buffer[start:stop] for buffer in self))

    def at(self, t: int) -> Saved:
        """Step t's views of sequence buffers."""
        return Saved(*(None if buffer is None else buffer[t] for buffer in self))

    def steps(self) -> list[Saved]:
        """Every step's views of sequence buffers, made at once (an index per buffer and step
        cost about as much in Python as a small elementwise op)."""
        columns = [repeat(None) if buffer is None else buffer.unbind(0) for buffer in self]
        return [Saved(*views) for views in zip(*columns)]


def saved_buffers(steps: int, batch: int, hidden: int, *, layer_norm: bool, like: Tensor) -> Saved:
    """Sequence buffers for ``steps`` updates of (batch, hidden), from ``models.workspace``
    (hand them back with ``workspace.give(*saved)``)."""
    gates, cells, stats, cell_stats = (steps, batch, 4, hidden), (steps, batch, hidden), (steps, batch, 4, 1), (steps, batch, 1)
    shapes = [gates, stats, stats, gates, cells, cells, cells, cell_stats, cell_stats]
    layer_norm_only = {"y_hat", "mean", "rstd", "cell_mean", "cell_rstd"}
    return Saved(*(
        None if name in layer_norm_only and not layer_norm else workspace.take(shape, like)
        for name, shape in zip(Saved._fields, shapes)
    ))


def update_forward(
    y: Tensor,
    c_prev: Tensor,
    w: UpdateWeights,
    mask: Tensor | None = None,
    *,
    out: Saved | None = None,
    h_out: Tensor | None = None,
) -> tuple[Tensor, Tensor]:
    """y (B, 4, H), c_{t-1} (B, H) → h_t (written into ``h_out`` if given), c_t. With ``out``
    (step t's views of ``saved_buffers``) the backward's tensors are written there, c_t too.
    Runs without autograd."""
    if out is not None and fused_kernels.usable(y):
        return _fused_forward(y, c_prev, w, mask, out, h_out)
    hidden = y.shape[-1]
    if not w.layer_norm:
        y_hat = y
    elif out is None:
        y_hat = torch.native_layer_norm(y, (hidden,), w.ones, None, w.eps)[0]
    else:
        y_hat = torch.ops.aten.native_layer_norm.out(
            y, (hidden,), w.ones, None, w.eps, out0=out.y_hat, out1=out.mean, out2=out.rstd
        )[0]
    s = torch.sigmoid(torch.addcmul(w.shift, y_hat, w.scale))  # σ(a_i), σ(a_f + 1), σ(2a_g), σ(a_o)
    i, f, s_g, o = s.unbind(-2)
    g = (s_g * 2).sub_(1)  # tanh(a_g)
    if mask is not None:
        g.mul_(mask)
    c = torch.addcmul(f * c_prev, i, g, out=None if out is None else out.c)
    c2 = _doubled_cell(c, w, out)  # 2ĉ_t, for tanh through σ
    tanh_c = torch.sigmoid(c2).mul_(2).sub_(1)
    h = torch.mul(o, tanh_c, out=h_out) if h_out is not None else o * tanh_c
    if out is not None:
        # ∂/∂σ of c_t (i, f, g) and of h_t (o), times σ' = σ(1 − σ): ∂/∂a of each gate
        i_m = i * 2 if mask is None else i * mask * 2  # c_t = … + σ(a_i)·(2σ(2a_g) − 1)·m
        torch.stack([g, c_prev, i_m, tanh_c], dim=-2, out=out.k).mul_(torch.addcmul(s, s, s, value=-1))
        torch.addcmul(o, h, tanh_c, value=-1, out=out.e)  # σ(o) − σ(o)·tanh²(ĉ)
        out.f.copy_(f)
    return h, c


def _fused_forward(
    y: Tensor, c_prev: Tensor, w: UpdateWeights, mask: Tensor | None, out: Saved, h_out: Tensor | None
) -> tuple[Tensor, Tensor]:
    """``update_forward`` in one call of the fused kernel (``models.fused_kernels``)."""
    h = torch.empty_like(out.c) if h_out is None or not h_out.is_contiguous() else h_out
    fused_kernels.kernels().update_forward(
        y.contiguous(), c_prev.contiguous(), None if mask is None else mask.contiguous(), w.scale, w.shift,
        w.cell_scale, w.cell_shift, w.eps, *out[:3], out.k, out.e, out.f, out.c, out.cell_mean, out.cell_rstd, h,
    )
    if h_out is not None and h is not h_out:
        h = h_out.copy_(h)
    return h, out.c


def _doubled_cell(c: Tensor, w: UpdateWeights, out: Saved | None) -> Tensor:
    """2ĉ_t: the cell LN with doubled gain and bias (2c_t without layer norm)."""
    if not w.layer_norm:
        return c * 2
    hidden = c.shape[-1]
    if out is None:
        return torch.native_layer_norm(c, (hidden,), w.cell_scale, w.cell_shift, w.eps)[0]
    return torch.ops.aten.native_layer_norm.out(
        c, (hidden,), w.cell_scale, w.cell_shift, w.eps, out0=torch.empty_like(c), out1=out.cell_mean,
        out2=out.cell_rstd,
    )[0]


class UpdateGrads:
    """The LN parameters' gradients, summed over the steps of one backward pass.

    The gate gain and bias accumulate (B, 4, H) sums in place, reduced over the batch once at
    the end; the cell LN's come per step from its backward kernel.
    """

    def __init__(self, w: UpdateWeights, batch_size: int) -> None:
        self.layer_norm = w.layer_norm
        self.fused = fused_kernels.usable(w.scale)  # the fused kernel sums over the batch itself
        # and so do the compiled steps (``models.compiled_steps``), which add into ``sums()``
        self.compiled = compiled_update.usable(w.scale)
        if self.fused:
            hidden = w.scale.shape[1]
            self.dy = w.scale.new_empty(batch_size, 4, hidden)  # one step's ∂L/∂y, unless given a place
            self.dc = w.scale.new_empty(2, batch_size, hidden)  # ∂L/∂c_{t-1}, alternating (read t, write t − 1)
            self.steps = 0
        if self.layer_norm:
            self.zero_mean = w.scale.new_zeros(batch_size, 4, 1)  # for the LN backward from y_hat
            self.unit_rstd = w.scale.new_ones(batch_size, 4, 1)
            self.gate_weight = w.scale.new_zeros(1 if self.fused or self.compiled else batch_size, *w.scale.shape)
            self.gate_bias = torch.zeros_like(self.gate_weight)
            self.cell_weight = torch.zeros_like(w.cell_weight)
            self.cell_bias = torch.zeros_like(w.cell_bias)

    def sums(self) -> compiled_update.Sums | None:
        """The layer-norm sums for a compiled step to add into (None without layer norm)."""
        if not self.layer_norm:
            return None
        return compiled_update.Sums(self.gate_weight, self.gate_bias, self.cell_weight, self.cell_bias)

    def finish(self) -> tuple[Tensor | None, Tensor | None, Tensor | None, Tensor | None]:
        """Gradients of gate_weight, gate_bias (4, H), cell_weight, cell_bias (H,), or Nones."""
        if not self.layer_norm:
            return None, None, None, None
        doubled = self.gate_weight.new_tensor(_G_DOUBLED)[:, None]
        # scale = γ·doubled and shift = (β + forget)·doubled: ∂L/∂γ = doubled·Σ ∂L/∂scale, same for β
        return self.gate_weight.sum(0) * doubled, self.gate_bias.sum(0) * doubled, self.cell_weight, self.cell_bias


def update_backward(
    dh: Tensor, dc: Tensor, saved: Saved, w: UpdateWeights, grads: UpdateGrads, dy_out: Tensor | None = None
) -> tuple[Tensor, Tensor]:
    """∂L/∂h_t, ∂L/∂c_t (B, H) → ∂L/∂y_t (B, 4, H), ∂L/∂c_{t-1} (B, H); ``saved`` is step t's
    views. Adds the step's parameter gradients to ``grads``. With ``dy_out`` (B, 4, H) ∂L/∂y_t
    is written there. The fused kernel returns buffers of ``grads`` that the next call but one
    overwrites: read or copy them before."""
    if grads.fused:
        return _fused_backward(dh, dc, saved, w, grads, dy_out)
    hidden = dh.shape[-1]
    d_cell = dh * saved.e  # ∂L/∂ĉ_t
    if w.layer_norm:
        d_c, d_gain, d_bias = torch.ops.aten.native_layer_norm_backward(
            d_cell, saved.c, (hidden,), saved.cell_mean, saved.cell_rstd, w.cell_weight, w.cell_bias, _ALL_GRADS
        )
        dc = dc + d_c
        grads.cell_weight.add_(d_gain)
        grads.cell_bias.add_(d_bias)
    else:
        dc = dc + d_cell
    da = torch.stack([dc, dc, dc, dh], dim=-2).mul_(saved.k)  # (B, 4, H)
    dc_prev = dc * saved.f
    if not w.layer_norm:
        dy = da.mul_(w.scale)
        return (dy, dc_prev) if dy_out is None else (dy_out.copy_(dy), dc_prev)
    grads.gate_weight.addcmul_(da, saved.y_hat)
    grads.gate_bias.add_(da)
    # The LN backward from y_hat (mean 0 and rstd 1 given) lacks the factor rstd: applied to its
    # input instead (the map is linear in it, and rstd is constant along H). y is not kept.
    dy = torch.ops.aten.native_layer_norm_backward(
        (da * w.scale).mul_(saved.rstd), saved.y_hat, (hidden,), grads.zero_mean, grads.unit_rstd, w.ones,
        None, _INPUT_GRAD,
    )[0]
    return (dy, dc_prev) if dy_out is None else (dy_out.copy_(dy), dc_prev)


def _fused_backward(
    dh: Tensor, dc: Tensor, saved: Saved, w: UpdateWeights, grads: UpdateGrads, dy_out: Tensor | None
) -> tuple[Tensor, Tensor]:
    """``update_backward`` in one call of the fused kernel (``models.fused_kernels``)."""
    # the kernel writes rows of H values at any row stride
    dy = dy_out if dy_out is not None and dy_out.stride()[1:] == (dy_out.shape[2], 1) else grads.dy
    dc_prev = grads.dc[grads.steps % 2]
    grads.steps += 1
    sums = (grads.gate_weight[0], grads.gate_bias[0], grads.cell_weight, grads.cell_bias) if grads.layer_norm else (None,) * 4
    fused_kernels.kernels().update_backward(
        dh.contiguous(), dc.contiguous(), saved.y_hat, saved.rstd, saved.k, saved.e, saved.f, saved.c,
        saved.cell_mean, saved.cell_rstd, w.scale, w.cell_weight, dy, dc_prev, *sums,
    )
    if dy_out is not None and dy is not dy_out:
        dy = dy_out.copy_(dy)
    return dy, dc_prev
