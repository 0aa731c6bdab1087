"""An (LN-)LSTM layer over a whole sequence as one autograd operation, backward by hand.

    output, h_T, c_T = lstm_layer_scan(x, weight_x, bias, h_0, c_0, weight_h, ...)

Forward: W_x x_t + b for every step in one matmul, then per step one matmul W_h h_{t-1} (all
four gates, the input projection added in the same oneDNN call) and the update of
``models.lstm_update``. Tensors are time-major, (T, B, ·), so step t is a contiguous slice.

Backward runs the steps in reverse carrying ∂L/∂h and ∂L/∂c; per step it costs the update's
backward and one matmul (∂L/∂h_{t-1} = ∂L/∂y_t W_h). Weight gradients are not accumulated step
by step: ∂L/∂W_h = Σ_t ∂L/∂y_t^T h_{t-1} and ∂L/∂W_x are one (4H × TB)·(TB × ·) product each
after the loop. Autograd records one node for the layer instead of ~30 per step.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

from models import compiled_steps, compiled_update, workspace
from models.cpu_linear import StepLinear, matmul_nt
from models.lstm_update import (
    Saved,
    UpdateGrads,
    UpdateWeights,
    saved_buffers,
    update_backward,
    update_forward,
    update_weights,
)


class Norms(NamedTuple):
    """An update's layer-norm parameters, all None without layer norm."""

    gate_weight: Tensor | None  # (4, H)
    gate_bias: Tensor | None  # (4, H)
    cell_weight: Tensor | None  # (H,)
    cell_bias: Tensor | None  # (H,)


def lstm_layer_scan(
    x: Tensor,
    weight_x: Tensor,
    bias: Tensor,
    h: Tensor,
    c: Tensor,
    weight_h: Tensor,
    gate_weight: Tensor | None,
    gate_bias: Tensor | None,
    cell_weight: Tensor | None,
    cell_bias: Tensor | None,
    *,
    forget_bias: float,
    eps: float = 1e-5,
    mask: Tensor | None = None,
) -> tuple[Tensor, Tensor, Tensor]:
    """x (T, B, I), weight_x (4H, I), bias (4H,), h, c (B, H), weight_h (4H, H) →
    output (T, B, H), h_T, c_T.

    ``gate_*`` (4, H) and ``cell_*`` (H,) are the LN parameters, all None for a plain LSTM;
    ``mask`` (T, B, H) multiplies tanh(g) (recurrent dropout), None for none.
    """
    tensors = (x, weight_x, bias, h, c, weight_h, gate_weight, gate_bias, cell_weight, cell_bias)
    if torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in tensors):
        return _LSTMLayerScan.apply(*tensors, mask, forget_bias, eps)
    with torch.no_grad():
        w = _update_weights(weight_h, gate_weight, gate_bias, cell_weight, cell_bias, forget_bias, eps)
        output, h, c, _ = _forward(x, weight_x, bias, h, c, weight_h, w, mask, save=False)
    return output, h, c


def _update_weights(weight_h, gate_weight, gate_bias, cell_weight, cell_bias, forget_bias, eps) -> UpdateWeights:
    return update_weights(
        gate_weight=gate_weight, gate_bias=gate_bias, cell_weight=cell_weight, cell_bias=cell_bias,
        forget_bias=forget_bias, hidden_size=weight_h.shape[1], eps=eps, like=weight_h,
    )


def _forward(
    x: Tensor,
    weight_x: Tensor,
    bias: Tensor,
    h: Tensor,
    c: Tensor,
    weight_h: Tensor,
    w: UpdateWeights,
    mask: Tensor | None,
    *,
    save: bool,
) -> tuple[Tensor, Tensor, Tensor, Saved | None]:
    """output (T, B, H), h_T, c_T and, with ``save``, the updates' sequence buffers."""
    steps, batch, hidden = x.shape[0], h.shape[0], h.shape[1]
    xw = matmul_nt(x.flatten(0, 1), weight_x, bias).view(steps, batch, 4 * hidden)  # every step's input at once
    saved = saved_buffers(steps, batch, hidden, layer_norm=w.layer_norm, like=h) if save else None
    if compiled_update.usable(x):  # GPUs: the loop below, compiled
        output = x.new_empty(steps, batch, hidden)
        h, c = compiled_steps.lstm_forward(h, c, xw, weight_h, w, mask, saved, output)
        return output, h, c, saved
    recurrent, output = StepLinear(weight_h, batch), x.new_empty(steps, batch, hidden)
    # every step's views at once (``Saved.steps``)
    masks, saved_steps = (None,) * steps if mask is None else mask.unbind(0), [None] * steps if saved is None else saved.steps()
    for t, (xw_t, output_t) in enumerate(zip(xw.unbind(0), output.unbind(0))):
        y = recurrent(h, add=xw_t).view(batch, 4, hidden)  # W_h h_{t-1} + W_x x_t + b, all gates
        h, c = update_forward(y, c, w, masks[t], out=saved_steps[t], h_out=output_t)
    return output, h, c, saved


class _LSTMLayerScan(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, weight_x, bias, h0, c0, weight_h, gate_weight, gate_bias, cell_weight, cell_bias, mask, forget_bias, eps):
        w = _update_weights(weight_h, gate_weight, gate_bias, cell_weight, cell_bias, forget_bias, eps)
        output, h, c, saved = _forward(x, weight_x, bias, h0, c0, weight_h, w, mask, save=True)
        ctx.w = w
        ctx.save_for_backward(x, weight_x, h0, weight_h, output, *saved)
        return output, h, c.clone()  # c_T is a view of a pooled buffer

    @staticmethod
    @once_differentiable
    def backward(ctx, d_output, d_h, d_c):
        x, weight_x, h0, weight_h, output, *saved = ctx.saved_tensors
        saved, w = Saved(*saved), ctx.w
        steps, batch, hidden = output.shape
        d_xw = workspace.take((steps, batch, 4 * hidden), d_output)  # ∂L/∂y_t for every step
        grads = UpdateGrads(w, batch)
        if grads.compiled:  # GPUs: the loop below, compiled
            d_y = d_xw.view(steps, batch, 4, hidden)
            d_h, d_c = compiled_steps.lstm_backward(d_output, d_h, d_c, saved, weight_h, w, grads.sums(), d_y)
        else:
            recurrent_t = StepLinear(weight_h.t(), batch)  # ∂L/∂h_{t-1} = ∂L/∂y_t W_h
            saved_steps, d_outputs, d_xw_steps = saved.steps(), d_output.unbind(0), d_xw.unbind(0)
            for t in reversed(range(steps)):
                d_y = d_xw_steps[t].view(batch, 4, hidden)  # ∂L/∂y_t goes straight into its sequence buffer
                _, d_c = update_backward(d_outputs[t] + d_h, d_c, saved_steps[t], w, grads, dy_out=d_y)
                d_h = recurrent_t(d_xw_steps[t])
        input_grads = _input_grads(ctx.needs_input_grad[:3], d_xw, x, weight_x)
        d_weight_h = _recurrent_weight_grad(d_xw, h0, output)
        workspace.give(d_xw)
        if not workspace.graph_kept():
            workspace.give(*saved)
        return (*input_grads, d_h, d_c, d_weight_h, *grads.finish(), None, None, None)


def _input_grads(needed: tuple[bool, ...], d_xw: Tensor, x: Tensor, weight_x: Tensor) -> tuple[Tensor | None, ...]:
    """∂L/∂x (T, B, I), ∂L/∂W_x (4H, I), ∂L/∂b (4H,) from ∂L/∂(W_x x_t + b) (T, B, 4H)."""
    flat = d_xw.flatten(0, 1)  # (TB, 4H)
    d_x = matmul_nt(flat, weight_x.t()).view_as(x) if needed[0] else None
    # (W's gradient)ᵀ = x^T·∂L/∂y: oneDNN ran this orientation fastest (~30% over ∂L/∂y^T·x)
    d_weight_x = matmul_nt(x.flatten(0, 1).t().contiguous(), flat.t()).t() if needed[1] else None
    d_bias = flat.sum(0) if needed[2] else None
    return d_x, d_weight_x, d_bias


def _recurrent_weight_grad(d_y: Tensor, h0: Tensor, output: Tensor) -> Tensor:
    """Σ_t ∂L/∂y_t^T h_{t-1}: h_{t-1} is h_0 for the first step and output[t - 1] after it."""
    first = matmul_nt(h0.t(), d_y[0].t())  # transposed, like ∂L/∂W_x's
    if len(d_y) == 1:
        return first.t()
    return (matmul_nt(output[:-1].flatten(0, 1).t(), d_y[1:].flatten(0, 1).t()) + first).t()
