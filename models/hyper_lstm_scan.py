"""A HyperLSTM layer over a whole sequence as one autograd operation, backward by hand.

The equations are in ``models.hyper_lstm``. Per step t the forward pass runs

    [W_h h_{t-1}; W_ĥx,h h_{t-1}]                                         one matmul
    ŷ_t        = W_ĥx,h h_{t-1} + W_ĥh ĥ_{t-1} + (W_ĥx,x x_t + b̂)         one matmul
    ĥ_t, ĉ_t   = the hyper LSTM's update of ŷ_t                               (models.lstm_update)
    z_t        = ĥ_t W_zᵀ + b_z               z_h, z_x, z_b of all gates: 3·4·N_z, one matmul
    d_t        = z_t · W_dz  per (kind, gate), + b_0 on the bias kind      one batched matmul
    y_t        = d_b + d_h ⊙ W_h h_{t-1} + d_x ⊙ W_x x_t
    h_t, c_t   = the main LSTM's update of y_t

with W_x x_t and the hyper LSTM's x_t-part projected for the whole sequence before the loop.
d_t is held gate-major, (kind·gate, B, H), the layout the batched matmul gives.

The backward pass carries ∂L/∂h, ∂L/∂c, ∂L/∂ĥ, ∂L/∂ĉ through the steps in reverse. Per step it
costs the two updates' backward, three matmuls (into ĥ through z, into h through both of its
uses at once, into ĥ through ŷ) and three batched ones (d_h, d_x again from z, into z, and
W_dz's gradient). The other weights' gradients are products over all steps at once after the
loop, as in ``models.lstm_scan``.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

from models import compiled_steps, compiled_update, fused_kernels, workspace
from models.cpu_linear import StepLinear, matmul_nt
from models.lstm_scan import Norms, _input_grads, _recurrent_weight_grad
from models.lstm_update import (
    Saved,
    UpdateGrads,
    UpdateWeights,
    saved_buffers,
    update_backward,
    update_forward,
    update_weights,
)

KINDS_GATES = 12  # (z_h, z_x, z_b) × (i, f, g, o)


class HyperTensors(NamedTuple):
    """The layer's weights in the form the loop uses (built with autograd by the layer)."""

    weight_x: Tensor  # (4H, I) W_x; no bias (the main bias is b_0 + W_bz z_b)
    hyper_weight_x: Tensor  # (4Ĥ, I) the hyper LSTM's columns for x_t
    hyper_bias: Tensor  # (4Ĥ,)
    weight_from_h: Tensor  # (4H + 4Ĥ, H) W_h, then the hyper LSTM's columns for h_{t-1}
    hyper_weight_h: Tensor  # (4Ĥ, Ĥ) the hyper LSTM's W_h
    weight_z: Tensor  # (12 N_z, Ĥ) W_ĥh, W_ĥx, W_ĥb
    bias_z: Tensor  # (12 N_z,) b_ĥh, b_ĥx, 0
    weight_dz: Tensor  # (12, N_z, H) W_hz, W_xz, W_bz per gate, transposed
    bias: Tensor  # (4H,) b_0


class _Saved(NamedTuple):
    """Sequence buffers the forward pass fills for the backward pass."""

    hyper: Saved  # the hyper LSTM's update
    main: Saved  # the main LSTM's update
    z: Tensor  # (T, B, 12 N_z)
    from_h: Tensor  # (T, B, 4H + 4Ĥ) W_h h_{t-1}, then the hyper LSTM's h-part
    d: Tensor  # (T, 12, B, H) d_h, d_x, d_b (gate-major, as the batched matmul writes them)
    xw: Tensor  # (T, B, 4H) W_x x_t
    hyper_output: Tensor  # (T, B, Ĥ) ĥ_t

    def buffers(self) -> tuple[Tensor | None, ...]:
        return (*self.hyper, *self.main, self.z, self.from_h, self.d, self.xw, self.hyper_output)

    def pooled(self) -> tuple[Tensor | None, ...]:
        """The buffers taken from ``models.workspace`` (all but W_x x, the matmul's own output:
        given to the pool too, it would grow the pool by one buffer every step)."""
        return tuple(b for b in self.buffers() if b is not self.xw)

    @classmethod
    def from_buffers(cls, buffers: tuple[Tensor | None, ...]) -> _Saved:
        n = len(Saved._fields)
        return cls(Saved(*buffers[:n]), Saved(*buffers[n : 2 * n]), *buffers[2 * n :])


def hyper_lstm_layer_scan(
    x: Tensor,
    state: tuple[Tensor, Tensor, Tensor, Tensor],
    weights: HyperTensors,
    main_norms: Norms,
    hyper_norms: Norms,
    *,
    forget_bias: float,
    eps: float = 1e-5,
    mask: Tensor | None = None,
) -> tuple[Tensor, tuple[Tensor, Tensor, Tensor, Tensor]]:
    """x (T, B, I), state (h, c, ĥ, ĉ) each (B, ·) → output (T, B, H), final state.

    ``mask`` (T, B, H) multiplies the main cell's tanh(g) (recurrent dropout), None for none.
    """
    tensors = (x, *state, *weights, *main_norms, *hyper_norms)
    if torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in tensors):
        output, *final = _HyperLSTMLayerScan.apply(*tensors, mask, forget_bias, eps)
        return output, tuple(final)
    with torch.no_grad():
        main_w, hyper_w = _update_weights(weights, main_norms, hyper_norms, forget_bias, eps)
        output, final, _ = _forward(x, state, weights, main_w, hyper_w, mask, save=False)
    return output, final


def _update_weights(
    weights: HyperTensors, main_norms: Norms, hyper_norms: Norms, forget_bias: float, eps: float
) -> tuple[UpdateWeights, UpdateWeights]:
    hidden, hyper_size, like = weights.weight_from_h.shape[1], weights.hyper_weight_h.shape[1], weights.bias
    main = update_weights(**main_norms._asdict(), forget_bias=forget_bias, hidden_size=hidden, eps=eps, like=like)
    hyper = update_weights(**hyper_norms._asdict(), forget_bias=forget_bias, hidden_size=hyper_size, eps=eps, like=like)
    return main, hyper


def _by_kind(d: Tensor) -> tuple[tuple[Tensor, ...], ...]:
    """d (T, 12, B, H) → every step's d_h, d_x, d_b as (B, 4, H) views, kind by kind."""
    steps, _, batch, hidden = d.shape
    kinds = d.view(steps, 3, 4, batch, hidden).transpose(2, 3)  # (T, 3, B, 4, H)
    return tuple(kinds[:, k].unbind(0) for k in range(3))


def _split_from_h(from_h: Tensor, hidden: int) -> tuple[tuple[Tensor, ...], tuple[Tensor, ...]]:
    """(T, B, 4H + 4Ĥ) → every step's main part as (B, 4, H) views and hyper part (B, 4Ĥ)."""
    return from_h[..., : 4 * hidden].unflatten(-1, (4, hidden)).unbind(0), from_h[..., 4 * hidden :].unbind(0)


def _forward(
    x: Tensor,
    state: tuple[Tensor, ...],
    ws: HyperTensors,
    main_w: UpdateWeights,
    hyper_w: UpdateWeights,
    mask: Tensor | None,
    *,
    save: bool,
) -> tuple[Tensor, tuple[Tensor, ...], _Saved | None]:
    """output (T, B, H), the final state and, with ``save``, the buffers for the backward.

    Every step's views of the sequence buffers are made before the loop (``unbind``), so that
    the loop body is the arithmetic alone; without ``save`` the HyperLSTM's own buffers hold
    one step, reused.
    """
    h, c, h_hat, c_hat = state
    (steps, batch, _), hidden, hyper_size = x.shape, h.shape[1], h_hat.shape[1]
    flat_x = x.flatten(0, 1)
    xw = matmul_nt(flat_x, ws.weight_x).view(steps, batch, 4 * hidden)  # W_x x_t, every step at once
    hyper_xw = matmul_nt(flat_x, ws.hyper_weight_x, ws.hyper_bias).view(steps, batch, 4 * hyper_size)
    from_h, hyper_rec = StepLinear(ws.weight_from_h, batch), StepLinear(ws.hyper_weight_h, batch)
    to_z = StepLinear(ws.weight_z, batch, ws.bias_z)
    # (12, B, H): b_0 in the bias kind's rows, repeated over the batch (baddbmm ran ~30% slower
    # given a broadcast input)
    d_bias = ws.bias.new_zeros(3, 4, batch, hidden)
    d_bias[2] = ws.bias.view(4, 1, hidden)
    d_bias = d_bias.view(KINDS_GATES, batch, hidden)
    output = x.new_empty(steps, batch, hidden)
    saved = _saved_buffers(steps if save else 1, batch, hidden, hyper_size, ws, main_w.layer_norm, xw, save)
    if compiled_update.usable(x):  # GPUs: the loop below, compiled
        fixed = compiled_steps.HyperStepTensors(ws, d_bias, main_w, hyper_w)
        xw_steps = xw.view(steps, batch, 4, hidden)
        final = compiled_steps.hyper_lstm_forward(state, xw_steps, hyper_xw, mask, fixed, saved if save else None, output)
        return _finish(output, final, saved, save)
    n = steps if save else 1  # steps the HyperLSTM's buffers hold
    z_rows, from_h_rows, d_steps = saved.z.unbind(0), saved.from_h.unbind(0), saved.d.unbind(0)
    z_gates = saved.z.view(n, batch, KINDS_GATES, -1).transpose(1, 2).unbind(0)  # (12, B, N_z) each
    wh, hyper_part = _split_from_h(saved.from_h, hidden)
    d_h, d_x, d_b = _by_kind(saved.d)
    main_steps, hyper_steps = (saved.main.steps(), saved.hyper.steps()) if save else ([None], [None])
    xw_steps, hyper_xw_steps = xw.view(steps, batch, 4, hidden).unbind(0), hyper_xw.unbind(0)
    outputs, hyper_outputs = output.unbind(0), saved.hyper_output.unbind(0)
    masks = (None,) * steps if mask is None else mask.unbind(0)
    y = x.new_empty(batch, 4, hidden)  # the main gates' pre-activations of one step
    fused = fused_kernels.kernels() if fused_kernels.usable(x) else None
    weight_dz, bias = ws.weight_dz.contiguous(), ws.bias.view(4, hidden)
    for t in range(steps):
        s = t if save else 0
        from_h_rows[s].copy_(from_h(h))  # W_h h_{t-1}, W_ĥx,h h_{t-1}: one matmul
        hyper_y = hyper_rec(h_hat, add=hyper_xw_steps[t]).add_(hyper_part[s]).view(batch, 4, hyper_size)
        h_hat, c_hat = update_forward(hyper_y, c_hat, hyper_w, out=hyper_steps[s], h_out=hyper_outputs[s])
        z_rows[s].copy_(to_z(h_hat))  # z_h, z_x, z_b of every gate: (B, 12 N_z)
        if fused is not None:  # d = z W_dz (+ b_0) and y = d_b + d_h ⊙ W_h h + d_x ⊙ W_x x, one call
            fused.hyper_gates(z_rows[s], weight_dz, bias, wh[s], xw_steps[t], d_steps[s], y)
        else:
            torch.baddbmm(d_bias, z_gates[s], ws.weight_dz, out=d_steps[s])  # d_h, d_x, d_b: (12, B, H)
            torch.addcmul(d_b[s], d_h[s], wh[s], out=y).addcmul_(d_x[s], xw_steps[t])
        h, c = update_forward(y, c, main_w, masks[t], out=main_steps[s], h_out=outputs[t])
    return _finish(output, (h, c, h_hat, c_hat), saved, save)


def _finish(
    output: Tensor, final: tuple[Tensor, ...], saved: _Saved, save: bool
) -> tuple[Tensor, tuple[Tensor, ...], _Saved | None]:
    h, c, h_hat, c_hat = final
    final = (h, c.clone(), h_hat.clone(), c_hat.clone())  # c and ĉ (and ĥ) are views of pooled buffers
    if not save:
        workspace.give(*saved.pooled())
        return output, final, None
    return output, final, saved


def _saved_buffers(
    steps: int, batch: int, hidden: int, hyper_size: int, ws: HyperTensors, layer_norm: bool, xw: Tensor, save: bool
) -> _Saved:
    """Pooled sequence buffers (``models.workspace``); W_x x is the forward's own. Without
    ``save`` the updates' buffers are left out (None)."""
    updates = (saved_buffers(steps, batch, size, layer_norm=layer_norm, like=xw) for size in (hyper_size, hidden))
    nothing = Saved(*(None,) * len(Saved._fields))
    return _Saved(
        *(updates if save else (nothing, nothing)),
        z=workspace.take((steps, batch, ws.weight_z.shape[0]), xw),
        from_h=workspace.take((steps, batch, ws.weight_from_h.shape[0]), xw),
        d=workspace.take((steps, KINDS_GATES, batch, hidden), xw),
        xw=xw,
        hyper_output=workspace.take((steps, batch, hyper_size), xw),
    )


class _HyperLSTMLayerScan(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, h0, c0, h_hat0, c_hat0, *rest):
        weights, main_norms, hyper_norms = HyperTensors(*rest[:9]), Norms(*rest[9:13]), Norms(*rest[13:17])
        mask, forget_bias, eps = rest[17:]
        main_w, hyper_w = _update_weights(weights, main_norms, hyper_norms, forget_bias, eps)
        output, final, saved = _forward(x, (h0, c0, h_hat0, c_hat0), weights, main_w, hyper_w, mask, save=True)
        ctx.main_w, ctx.hyper_w, ctx.n_weights = main_w, hyper_w, len(weights)
        ctx.save_for_backward(x, h0, h_hat0, output, *weights, *saved.buffers())
        return (output, *final)

    @staticmethod
    @once_differentiable
    def backward(ctx, d_output, d_h, d_c, d_h_hat, d_c_hat):
        x, h0, h_hat0, output, *tensors = ctx.saved_tensors
        ws, saved = HyperTensors(*tensors[: ctx.n_weights]), _Saved.from_buffers(tuple(tensors[ctx.n_weights :]))
        grads = _Backward(ctx, ws, saved, d_output)
        if grads.compiled:  # GPUs: the loop below, compiled
            d_h, d_c, d_h_hat, d_c_hat = grads.compiled_steps(d_output, (d_h, d_c, d_h_hat, d_c_hat))
        else:
            d_outputs = d_output.unbind(0)
            for t in reversed(range(output.shape[0])):
                d_h, d_c, d_h_hat, d_c_hat = grads.step(t, d_outputs[t] + d_h, d_c, d_h_hat, d_c_hat)
        d_weights = grads.weight_grads(x, h0, h_hat0, output, ctx.needs_input_grad)
        grads.release()
        if not workspace.graph_kept():
            workspace.give(*saved.pooled())
        main_norm_grads, hyper_norm_grads = grads.main_grads.finish(), grads.hyper_grads.finish()
        return (d_weights[0], d_h, d_c, d_h_hat, d_c_hat, *d_weights[1:], *main_norm_grads, *hyper_norm_grads,
                None, None, None)


class _Backward:
    """The per-step backward of the HyperLSTM, and the weight gradients summed after it."""

    def __init__(self, ctx, ws: HyperTensors, saved: _Saved, d_output: Tensor) -> None:
        self.ws, self.saved, self.main_w, self.hyper_w = ws, saved, ctx.main_w, ctx.hyper_w
        steps, batch, hidden = d_output.shape
        hyper_size, n_z = ws.hyper_weight_h.shape[1], ws.weight_dz.shape[1]
        self.main_grads, self.hyper_grads = UpdateGrads(self.main_w, batch), UpdateGrads(self.hyper_w, batch)
        # per step: ∂L/∂(W_x x_t), [∂L/∂(W_h h_{t-1}), ∂L/∂ŷ_t] side by side, ∂L/∂z_t
        self.d_xw = workspace.take((steps, batch, 4 * hidden), d_output)
        self.d_from_h = workspace.take((steps, batch, 4 * hidden + 4 * hyper_size), d_output)
        self.d_z = workspace.take((steps, batch, KINDS_GATES * n_z), d_output)
        self.d_weight_dz = torch.zeros_like(ws.weight_dz, memory_format=torch.contiguous_format)  # (12, N_z, H)
        self.fused = fused_kernels.kernels() if fused_kernels.usable(d_output) else None
        self.compiled = compiled_update.usable(d_output)
        # summed over the batch by the fused kernel or the compiled steps
        self.d_bias = d_output.new_zeros(1 if self.fused or self.compiled else batch, 4, hidden)
        if not self.compiled:  # the compiled steps take whole blocks: no per-step state to prepare
            self._prepare_steps(ws, saved, steps, batch, hidden, hyper_size, n_z)

    def _prepare_steps(self, ws: HyperTensors, saved: _Saved, steps: int, batch: int, hidden: int, hyper_size: int,
                       n_z: int) -> None:
        """What ``step`` reads: the transposed products, a step's ∂L/∂d, and every step's views."""
        self.from_h_t = StepLinear(ws.weight_from_h.t(), batch)
        self.hyper_rec_t = StepLinear(ws.hyper_weight_h.t(), batch)
        self.to_z_t = StepLinear(ws.weight_z.t(), batch)
        self.weight_dz_t = ws.weight_dz.transpose(1, 2)  # (12, H, N_z)
        # ∂L/∂d of one step, (12, B, H), and its kinds as (B, 4, H) views
        self.dd = self.d_xw.new_empty(KINDS_GATES, batch, hidden)
        self.dd_h, self.dd_x, self.dd_b = self.dd.view(3, 4, batch, hidden).transpose(1, 2).unbind(0)
        # every step's views, made once (see _forward)
        self.main_steps, self.hyper_steps = saved.main.steps(), saved.hyper.steps()
        self.scales = _by_kind(saved.d)[:2]  # d_h, d_x
        self.d_steps = saved.d.unbind(0)
        self.wh = _split_from_h(saved.from_h, hidden)[0]
        self.xw = saved.xw.view(steps, batch, 4, hidden).unbind(0)
        self.z_t = saved.z.view(steps, batch, KINDS_GATES, n_z).permute(0, 2, 3, 1).unbind(0)  # (12, N_z, B)
        self.z_rows, self.weight_dz = saved.z.unbind(0), ws.weight_dz.contiguous()
        self.d_wh, d_hyper_y = _split_from_h(self.d_from_h, hidden)
        self.d_hyper_rows = d_hyper_y  # (B, 4Ĥ), rows strided
        self.d_hyper_y = [v.view(batch, 4, hyper_size) for v in d_hyper_y]
        self.d_from_h_rows, self.d_xw_steps = self.d_from_h.unbind(0), self.d_xw.view(steps, batch, 4, hidden).unbind(0)
        self.d_z_rows = self.d_z.unbind(0)
        self.d_z_gates = self.d_z.view(steps, batch, KINDS_GATES, n_z).transpose(1, 2).unbind(0)  # (12, B, N_z)

    def compiled_steps(self, d_output: Tensor, carried: tuple[Tensor, ...]) -> tuple[Tensor, ...]:
        """Every step's backward, last first, through ``models.compiled_steps``: ∂L/∂output and
        the carried gradients at T → the carried gradients at 0."""
        fixed = compiled_steps.HyperStepTensors(self.ws, None, self.main_w, self.hyper_w)
        sums = (self.main_grads.sums(), self.hyper_grads.sums(), self.d_bias, self.d_weight_dz)
        grads_out = (self.d_xw.view(*d_output.shape[:2], 4, -1), self.d_from_h, self.d_z)
        return compiled_steps.hyper_lstm_backward(d_output, carried, self.saved, fixed, sums, grads_out)

    def step(self, t: int, d_h: Tensor, d_c: Tensor, d_h_hat: Tensor, d_c_hat: Tensor) -> tuple[Tensor, ...]:
        """Step t's backward: ∂L/∂h_t (all of it), ∂L/∂c_t, and ∂L/∂ĥ_t, ∂L/∂ĉ_t from later
        steps → the same for t − 1."""
        dy, d_c = update_backward(d_h, d_c, self.main_steps[t], self.main_w, self.main_grads)  # (B, 4, H)
        if self.fused is not None:  # everything down to ∂L/∂z_t in one call
            self.fused.hyper_gates_backward(
                dy, self.z_rows[t], self.weight_dz, self.d_steps[t], self.wh[t], self.xw[t], self.d_wh[t],
                self.d_xw_steps[t], self.d_z_rows[t], self.d_weight_dz, self.d_bias[0],
            )
        else:
            self.d_bias.add_(dy)
            torch.mul(dy, self.scales[0][t], out=self.d_wh[t])  # into W_h h_{t-1}, through d_h
            torch.mul(dy, self.scales[1][t], out=self.d_xw_steps[t])  # into W_x x_t, through d_x
            # ∂L/∂d = ∂L/∂y ⊙ (W_h h, W_x x, 1)
            torch.mul(dy, self.wh[t], out=self.dd_h)
            torch.mul(dy, self.xw[t], out=self.dd_x)
            self.dd_b.copy_(dy)
            self.d_weight_dz.baddbmm_(self.z_t[t], self.dd)  # Σ_b z ⊗ ∂L/∂d per (kind, gate)
            torch.bmm(self.dd, self.weight_dz_t, out=self.d_z_gates[t])
        d_h_hat = self.to_z_t(self.d_z_rows[t], add=d_h_hat)  # ∂L/∂ĥ_t: through z_t, and from step t + 1
        d_hyper_y, d_c_hat = update_backward(
            d_h_hat, d_c_hat, self.hyper_steps[t], self.hyper_w, self.hyper_grads, dy_out=self.d_hyper_y[t]
        )
        d_h = self.from_h_t(self.d_from_h_rows[t])  # into h_{t-1} through W_h h and through ŷ
        return d_h, d_c, self.hyper_rec_t(self.d_hyper_rows[t]), d_c_hat

    def weight_grads(self, x, h0, h_hat0, output, needed) -> tuple[Tensor | None, ...]:
        """∂L/∂x and ∂L/∂ of each ``HyperTensors`` field, summed over all steps."""
        ws, hyper_output = self.ws, self.saved.hyper_output
        d_hyper_y = self.d_from_h[..., self.d_xw.shape[-1] :]  # (T, B, 4Ĥ) ∂L/∂ŷ_t
        d_hyper_y = workspace.take(d_hyper_y.shape, d_hyper_y).copy_(d_hyper_y)  # contiguous
        d_x, d_weight_x, _ = _input_grads((needed[0], needed[5], False), self.d_xw, x, ws.weight_x)
        d_x_hyper, d_hyper_weight_x, d_hyper_bias = _input_grads(needed[:1] + needed[6:8], d_hyper_y, x, ws.hyper_weight_x)
        if d_x is not None:
            d_x = d_x + d_x_hyper
        flat_d_z = self.d_z.flatten(0, 1)
        d_weight_z = matmul_nt(hyper_output.flatten(0, 1).t().contiguous(), flat_d_z.t()).t()  # Σ ∂L/∂z_tᵀ ĥ_t
        grads = (
            d_x,
            d_weight_x,
            d_hyper_weight_x,
            d_hyper_bias,
            _recurrent_weight_grad(self.d_from_h, h0, output),
            _recurrent_weight_grad(d_hyper_y, h_hat0, hyper_output),
            d_weight_z,
            flat_d_z.sum(0),
            self.d_weight_dz,
            self.d_bias.sum(0).flatten(),
        )
        workspace.give(d_hyper_y)
        return grads

    def release(self) -> None:
        """Give the per-step gradient buffers back to the workspace."""
        workspace.give(self.d_xw, self.d_from_h, self.d_z)
