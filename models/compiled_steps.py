"""The recurrent loops' time steps compiled by ``torch.compile``: their fast path on GPUs.

The loops of ``models.lstm_scan`` and ``models.hyper_lstm_scan`` run here, forward and backward,
when ``compiled_update.usable`` says so (CUDA tensors by default). A compiled call covers
``STEPS_PER_CALL`` time steps, matrix products and LSTM updates together: Inductor fuses the
elementwise work into a few kernels around the products, where the eager operations launch ~40
kernels per LN-LSTM step and ~90 per HyperLSTM step, and the call's own host cost (guards, the
wrapper: ~100–150 µs on this project's CPU machines) is paid once per block of steps. The functions
read and write the same sequence buffers as the CPU loop bodies, so the rest of the hand-written
backward (the weight gradients summed after the loop) is shared. The CPU bodies cannot be traced
as they are (oneDNN's packed products, the fused C++ kernels, ``out=`` writes): these are the
same equations in plain tensor operations, held to them by ``tests/test_compiled_update.py``.

Every block size met compiles once (a sequence of 100 steps: blocks of 4, no remainder); if
compiling fails, the same functions run uncompiled, with one warning (``compiled_update.guarded``).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from models import compiled_update
from models.compiled_update import Sums, update, update_grad
from models.lstm_update import Saved, UpdateWeights

KINDS_GATES = 12  # (z_h, z_x, z_b) × (i, f, g, o), as models.hyper_lstm_scan
# Steps per compiled call: the call's host cost is shared by these steps, while the compile time
# grows with them (the loop is unrolled). Tests set it lower.
STEPS_PER_CALL = 4


def _blocks(steps: int) -> list[tuple[int, int]]:
    return [(t, min(t + STEPS_PER_CALL, steps)) for t in range(0, steps, STEPS_PER_CALL)]


def _run(fn: Callable, variant: tuple, *args):
    return compiled_update.guarded(compiled_update.compiled(fn, variant), fn, *args)


def _key(*tensors: Tensor) -> tuple:
    """What a compiled variant is specialised to: the tensors' sizes, dtype and device."""
    return (tensors[0].dtype, tensors[0].device.type, *(tuple(t.shape) for t in tensors))


def _block(tensor: Tensor | None, start: int, stop: int) -> Tensor | None:
    return None if tensor is None else tensor[start:stop]


def lstm_forward(
    h: Tensor, c: Tensor, xw: Tensor, weight_h: Tensor, w: UpdateWeights, mask: Tensor | None, saved: Saved | None,
    output: Tensor,
) -> tuple[Tensor, Tensor]:
    """``lstm_scan._forward``'s loop: h_0, c_0 (B, H), W_x x_t + b for every step (T, B, 4H) →
    h_T, c_T; the outputs written into ``output`` (T, B, H), the backward's tensors into
    ``saved`` (sequence buffers) when given. ``mask`` (T, B, H) or None."""
    h, c, weight_h = h.detach(), c.detach(), weight_h.detach()  # requires_grad is part of the guards
    mask = None if mask is None else mask.contiguous()  # and so are strides
    for start, stop in _blocks(xw.shape[0]):
        variant = (w.layer_norm, mask is None, saved is None, _key(h, xw[start:stop]))
        h, c = _run(_lstm_steps, variant, h, c, xw[start:stop], weight_h, w, _block(mask, start, stop),
                    None if saved is None else saved.block(start, stop), output[start:stop])
    return h, c


def _lstm_steps(h, c, xw, weight_h, w, mask, saved, output):
    for k in range(xw.shape[0]):
        y = torch.addmm(xw[k], h, weight_h.t()).view(h.shape[0], 4, -1)  # W_h h_{t-1} + W_x x_t + b
        h, c = update(y, c, None if mask is None else mask[k], w, None if saved is None else saved.at(k), output[k])
    return h, c


def lstm_backward(
    d_output: Tensor, d_h: Tensor, d_c: Tensor, saved: Saved, weight_h: Tensor, w: UpdateWeights, sums: Sums | None,
    d_y: Tensor,
) -> tuple[Tensor, Tensor]:
    """``lstm_scan``'s backward loop: ∂L/∂output (T, B, H), ∂L/∂h_T, ∂L/∂c_T → ∂L/∂h_0,
    ∂L/∂c_0; every step's ∂L/∂y_t written into ``d_y`` (T, B, 4, H), the layer-norm parameters'
    gradients added into ``sums``."""
    # autograd may hand over broadcast or transposed gradients: strides are part of the guards
    d_output, d_h, d_c, weight_h = d_output.contiguous(), d_h.contiguous(), d_c.contiguous(), weight_h.detach()
    for start, stop in reversed(_blocks(d_output.shape[0])):
        variant = (w.layer_norm, _key(d_h, d_output[start:stop], weight_h))
        d_h, d_c = _run(_lstm_steps_backward, variant, d_output[start:stop], d_h, d_c, saved.block(start, stop),
                        weight_h, w, sums, d_y[start:stop])
    return d_h, d_c


def _lstm_steps_backward(d_output, d_h, d_c, saved, weight_h, w, sums, d_y):
    for k in reversed(range(d_output.shape[0])):
        dy, d_c = update_grad(d_output[k] + d_h, d_c, saved.at(k), w, sums, d_y[k])
        d_h = dy.flatten(1) @ weight_h  # ∂L/∂h_{t-1} = ∂L/∂y_t W_h
    return d_h, d_c


class HyperStepTensors:
    """What every HyperLSTM step reads besides its own views: the weights (``HyperTensors``'
    fields, detached), b_0 laid out as d's bias kind (12, B, H), and both updates' weights."""

    def __init__(self, weights, d_bias: Tensor | None, main_w: UpdateWeights, hyper_w: UpdateWeights) -> None:
        self.main_w = main_w
        self.args = (
            weights.weight_from_h.detach(), weights.hyper_weight_h.detach(), weights.weight_z.detach(),
            weights.bias_z.detach(), weights.weight_dz.detach().contiguous(), d_bias, main_w, hyper_w,
        )


def hyper_lstm_forward(
    state: tuple[Tensor, Tensor, Tensor, Tensor], xw: Tensor, hyper_xw: Tensor, mask: Tensor | None,
    fixed: HyperStepTensors, saved, output: Tensor,
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """``hyper_lstm_scan._forward``'s loop: the state (h, c, ĥ, ĉ) at 0, W_x x_t (T, B, 4, H), the
    hyper LSTM's x-part (T, B, 4Ĥ) → the state at T; outputs written into ``output`` (T, B, H).
    ``saved`` (``hyper_lstm_scan._Saved``, training) gets every step's from_h, z, d, ĥ and both
    updates' tensors; None when not training."""
    state = tuple(v.detach() for v in state)  # requires_grad is part of the guards
    mask = None if mask is None else mask.contiguous()  # and so are strides
    for start, stop in _blocks(xw.shape[0]):
        if saved is None:
            rows = (None,) * 6
        else:
            rows = (saved.from_h[start:stop], saved.z[start:stop], saved.d[start:stop], saved.main.block(start, stop),
                    saved.hyper.block(start, stop), saved.hyper_output[start:stop])
        variant = (fixed.main_w.layer_norm, mask is None, saved is None, _key(*state, xw[start:stop], hyper_xw[start:stop]))
        state = _run(_hyper_lstm_steps, variant, *state, xw[start:stop], hyper_xw[start:stop], _block(mask, start, stop),
                     *fixed.args, *rows, output[start:stop])
    return state


def _hyper_lstm_steps(
    h, c, h_hat, c_hat, xw, hyper_xw, mask, weight_from_h, hyper_weight_h, weight_z, bias_z, weight_dz, d_bias,
    main_w, hyper_w, from_h_rows, z_rows, d_rows, main_saved, hyper_saved, hyper_output, output,
):
    batch, hidden = h.shape
    saving = from_h_rows is not None
    for k in range(xw.shape[0]):
        from_h = h @ weight_from_h.t()  # W_h h_{t-1}, W_ĥx,h h_{t-1}
        hyper_y = torch.addmm(hyper_xw[k], h_hat, hyper_weight_h.t()) + from_h[:, 4 * hidden :]
        h_hat, c_hat = update(hyper_y.view(batch, 4, -1), c_hat, None, hyper_w, hyper_saved.at(k) if saving else None,
                              hyper_output[k] if saving else None)
        z = torch.addmm(bias_z, h_hat, weight_z.t())  # z_h, z_x, z_b of every gate: (B, 12 N_z)
        d = torch.baddbmm(d_bias, z.view(batch, KINDS_GATES, -1).transpose(0, 1), weight_dz)  # (12, B, H)
        d_h, d_x, d_b = d.view(3, 4, batch, hidden).transpose(1, 2).unbind(0)  # (B, 4, H) each
        y = d_b + d_h * from_h[:, : 4 * hidden].view(batch, 4, hidden) + d_x * xw[k]
        h, c = update(y, c, None if mask is None else mask[k], main_w, main_saved.at(k) if saving else None, output[k])
        if saving:
            from_h_rows[k].copy_(from_h)
            z_rows[k].copy_(z)
            d_rows[k].copy_(d)
    return h, c, h_hat, c_hat


def hyper_lstm_backward(
    d_output: Tensor, carried: tuple[Tensor, Tensor, Tensor, Tensor], saved, fixed: HyperStepTensors,
    sums: tuple[Sums | None, Sums | None, Tensor, Tensor], grads_out: tuple[Tensor, Tensor, Tensor],
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """``hyper_lstm_scan``'s backward loop (``_Backward.step`` of every step, last first).

    d_output: ∂L/∂output (T, B, H). carried: ∂L/∂h_T, ∂L/∂c_T, ∂L/∂ĥ_T, ∂L/∂ĉ_T. saved: the
    forward's ``_Saved``. sums: both updates' ``Sums``, ∂L/∂b_0 (1, 4, H) and ∂L/∂W_dz
    (12, N_z, H), added to. grads_out: ∂L/∂(W_x x) (T, B, 4, H), ∂L/∂from_h (T, B, 4H + 4Ĥ) and
    ∂L/∂z (T, B, 12 N_z), written. Returns the carried gradients at step 0.
    """
    # autograd may hand over broadcast or transposed gradients: strides are part of the guards
    d_output, carried = d_output.contiguous(), tuple(g.contiguous() for g in carried)
    xw = saved.xw.view(*d_output.shape[:2], 4, -1)
    for start, stop in reversed(_blocks(d_output.shape[0])):
        rows = (saved.main.block(start, stop), saved.hyper.block(start, stop), saved.z[start:stop],
                saved.d[start:stop], saved.from_h[start:stop], xw[start:stop])
        variant = (fixed.main_w.layer_norm, _key(*carried, d_output[start:stop], saved.z[start:stop]))
        carried = _run(_hyper_lstm_steps_backward, variant, d_output[start:stop], *carried, *rows, *fixed.args, *sums,
                       *(g[start:stop] for g in grads_out))
    return carried


def _hyper_lstm_steps_backward(
    d_output, d_h, d_c, d_h_hat, d_c_hat, main_saved, hyper_saved, z_rows, d_rows, from_h_rows, xw, weight_from_h,
    hyper_weight_h, weight_z, bias_z, weight_dz, d_bias, main_w, hyper_w, main_sums, hyper_sums, d_bias_sum,
    d_weight_dz, d_xw_out, d_from_h_out, d_z_out,
):
    batch, hidden = d_h.shape
    for k in reversed(range(d_output.shape[0])):
        dy, d_c = update_grad(d_output[k] + d_h, d_c, main_saved.at(k), main_w, main_sums)  # (B, 4, H)
        d_bias_sum.add_(dy.sum(0, keepdim=True))
        scale_h, scale_x, _ = d_rows[k].view(3, 4, batch, hidden).transpose(1, 2).unbind(0)  # d_h, d_x
        d_wh = dy * scale_h  # into W_h h_{t-1}, through d_h
        d_xw_out[k].copy_(dy * scale_x)  # into W_x x_t, through d_x
        wh = from_h_rows[k, :, : 4 * hidden].view(batch, 4, hidden)
        # ∂L/∂d = ∂L/∂y ⊙ (W_h h, W_x x, 1), gate-major (12, B, H) as d
        dd = torch.stack([dy * wh, dy * xw[k], dy]).transpose(1, 2).reshape(KINDS_GATES, batch, hidden)
        z_gates = z_rows[k].view(batch, KINDS_GATES, -1).transpose(0, 1)  # (12, B, N_z)
        d_weight_dz.add_(torch.bmm(z_gates.transpose(1, 2), dd))  # Σ_b z ⊗ ∂L/∂d per (kind, gate)
        d_z = torch.bmm(dd, weight_dz.transpose(1, 2)).transpose(0, 1).reshape(batch, -1)  # (B, 12 N_z)
        d_z_out[k].copy_(d_z)
        d_h_hat = torch.addmm(d_h_hat, d_z, weight_z)  # ∂L/∂ĥ_t: through z_t, and from step t + 1
        d_hyper_y, d_c_hat = update_grad(d_h_hat, d_c_hat, hyper_saved.at(k), hyper_w, hyper_sums)
        d_from_h = torch.cat([d_wh.flatten(1), d_hyper_y.flatten(1)], dim=1)
        d_from_h_out[k].copy_(d_from_h)
        # into h_{t-1} through W_h h and through ŷ; into ĥ_{t-1} through ŷ
        d_h, d_h_hat = d_from_h @ weight_from_h, d_hyper_y.flatten(1) @ hyper_weight_h
    return d_h, d_c, d_h_hat, d_c_hat
