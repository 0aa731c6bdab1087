"""``nn.LSTM``, ``nn.GRU`` and ``nn.RNN`` written out step by step in plain tensor ops.

PyTorch runs these modules as one fused op (``aten::lstm`` ...) that ``torch.func.vmap`` cannot
batch, so a per-sample weight set (``hyper/per_sample.py``) cannot reach them. Written out, every
op batches: a step is two matmuls and the gate nonlinearities, the same equations as
``torch.nn.LSTM``'s documentation, with the same weight layout (gates stacked i, f, g, o for the
LSTM; r, z, n for the GRU). The loop is over time steps, which the fused op loops over too.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

import torch
import torch.nn.functional as F
from torch import Tensor, nn


@contextmanager
def stepwise_rnns(target: nn.Module) -> Iterator[None]:
    """Within it, the RNN modules of ``target`` run written out (instance-level ``forward``)."""
    rnns = [m for m in target.modules() if isinstance(m, (nn.LSTM, nn.GRU, nn.RNN))]
    for module in rnns:
        module.forward = lambda input, hx=None, module=module: _forward(module, input, hx)
    try:
        yield
    finally:
        for module in rnns:
            del module.forward


def _forward(module: nn.RNNBase, input: Tensor, hx: object) -> tuple[Tensor, object]:
    if not isinstance(input, Tensor):
        raise ValueError("condition: per-sample weights do not take packed sequences; pad the batch instead")
    if getattr(module, "proj_size", 0):
        raise ValueError("condition: per-sample weights do not support nn.LSTM(proj_size=...)")
    lstm = isinstance(module, nn.LSTM)
    batched = input.dim() == 3
    x = input if batched else input.unsqueeze(1 - int(module.batch_first))
    if module.batch_first:
        x = x.transpose(0, 1)  # (T, B, in)
    directions = 2 if module.bidirectional else 1
    shape = (module.num_layers * directions, x.shape[1], module.hidden_size)
    if hx is None:
        zeros = x.new_zeros(shape)
        hx = (zeros, zeros) if lstm else zeros
    elif not batched:
        hx = tuple(h.unsqueeze(1) for h in hx) if lstm else hx.unsqueeze(1)
    h0, c0 = hx if lstm else (hx, None)
    final_h, final_c = [], []
    for layer in range(module.num_layers):
        outputs = []
        for direction in range(directions):
            index = layer * directions + direction
            suffix = f"_l{layer}" + ("_reverse" if direction else "")
            weights = [getattr(module, f"{kind}{suffix}", None) for kind in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")]
            sequence = x.flip(0) if direction else x
            state = (h0[index], c0[index]) if lstm else (h0[index],)
            out, state = _scan(module, sequence, state, *weights)
            outputs.append(out.flip(0) if direction else out)
            final_h.append(state[0])
            if lstm:
                final_c.append(state[1])
        x = torch.cat(outputs, dim=-1) if directions == 2 else outputs[0]
        if module.dropout and module.training and layer < module.num_layers - 1:
            x = F.dropout(x, module.dropout, training=True)
    output = x.transpose(0, 1) if module.batch_first else x
    h, c = torch.stack(final_h), (torch.stack(final_c) if lstm else None)
    if not batched:
        output = output.squeeze(1 - int(module.batch_first))
        h, c = h.squeeze(1), (c.squeeze(1) if lstm else None)
    return output, ((h, c) if lstm else h)


def _scan(module: nn.RNNBase, x: Tensor, state: tuple[Tensor, ...], w_ih: Tensor, w_hh: Tensor, b_ih: Tensor | None, b_hh: Tensor | None) -> tuple[Tensor, tuple[Tensor, ...]]:
    """One layer, one direction, over x (T, B, in) from ``state``."""
    inputs = F.linear(x, w_ih, b_ih)  # every step's input projection at once: (T, B, gates·H)
    outputs = []
    for t in range(x.shape[0]):
        hidden = F.linear(state[0], w_hh, b_hh)
        if isinstance(module, nn.LSTM):
            i, f, g, o = (inputs[t] + hidden).chunk(4, dim=-1)
            c = torch.sigmoid(f) * state[1] + torch.sigmoid(i) * torch.tanh(g)
            state = (torch.sigmoid(o) * torch.tanh(c), c)
        elif isinstance(module, nn.GRU):
            x_r, x_z, x_n = inputs[t].chunk(3, dim=-1)
            h_r, h_z, h_n = hidden.chunk(3, dim=-1)
            r, z = torch.sigmoid(x_r + h_r), torch.sigmoid(x_z + h_z)
            state = ((1 - z) * torch.tanh(x_n + r * h_n) + z * state[0],)
        else:
            activation = torch.tanh if module.nonlinearity == "tanh" else torch.relu
            state = (activation(inputs[t] + hidden),)
        outputs.append(state[0])
    return torch.stack(outputs), state
