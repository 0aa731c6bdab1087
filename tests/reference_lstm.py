"""Autograd references for the recurrent cores, written gate by gate from the equations.

Slow and plain on purpose: the fused loops (``models.lstm_scan``, ``models.hyper_lstm_scan``)
compute the same things with a hand-written backward, and the tests compare the two.
"""

import torch


def layer_norm(v, weight, bias, eps=1e-5):
    mean = v.mean(-1, keepdim=True)
    var = ((v - mean) ** 2).mean(-1, keepdim=True)
    return (v - mean) / torch.sqrt(var + eps) * weight + bias


def lstm_update(pre_gates, c, update, mask=None):
    """pre_gates: [i, f, g, o] each (B, n); ``update`` an LSTMUpdate (LN parameters, forget bias)."""
    if update.layer_norm:
        w, b = update.gate_weight, update.gate_bias
        pre_gates = [layer_norm(p, w[k], b[k]) for k, p in enumerate(pre_gates)]
    i, f, g, o = pre_gates
    g = torch.tanh(g) if mask is None else torch.tanh(g) * mask
    c = torch.sigmoid(f + update.forget_bias) * c + torch.sigmoid(i) * g
    c_out = layer_norm(c, update.cell_norm.weight, update.cell_norm.bias) if update.layer_norm else c
    return torch.sigmoid(o) * torch.tanh(c_out), c


def lstm_layer(layer, x, h, c, mask=None):
    """An ``LSTMLayer`` (LN or plain) over x (B, T, I) from (h, c) (B, H): output, h_T, c_T."""
    hidden, outputs = layer.hidden_size, []
    for t, x_t in enumerate(x.unbind(1)):
        pre = x_t @ layer.weight_x.T + h @ layer.weight_h.T + layer.bias
        gates = [pre[:, k * hidden : (k + 1) * hidden] for k in range(4)]
        h, c = lstm_update(gates, c, layer.update, None if mask is None else mask[:, t])
        outputs.append(h)
    return torch.stack(outputs, 1), h, c


def hyper_lstm_step(layer, x_t, h, c, h_hat, c_hat, mask_t=None):
    """One HyperLSTM step from the paper's equations, gate by gate, nothing fused."""
    hyper, n_z, hidden = layer.hyper, layer.embedding_dim, layer.hidden_size
    x_hat = torch.cat([x_t, h], -1)
    pre_hat = x_hat @ hyper.weight_x.T + h_hat @ hyper.weight_h.T + hyper.bias
    h_hat, c_hat = lstm_update(list(pre_hat.chunk(4, -1)), c_hat, hyper.update)
    w_z, b_z = layer.to_z.weight, layer.to_z.bias
    gates = []
    for k in range(4):
        rows_z_h, rows_z_x = slice(k * n_z, (k + 1) * n_z), slice((4 + k) * n_z, (5 + k) * n_z)
        z_h = h_hat @ w_z[rows_z_h].T + b_z[rows_z_h]
        z_x = h_hat @ w_z[rows_z_x].T + b_z[rows_z_x]
        z_b = h_hat @ layer.to_z_b.weight[k * n_z : (k + 1) * n_z].T
        d_h, d_x = z_h @ layer.weight_hz[k].T, z_x @ layer.weight_xz[k].T
        rows = slice(k * hidden, (k + 1) * hidden)
        b = z_b @ layer.weight_bz[k].T + layer.bias[rows]
        gates.append(d_h * (h @ layer.weight_h[rows].T) + d_x * (x_t @ layer.weight_x[rows].T) + b)
    h, c = lstm_update(gates, c, layer.update, mask_t)
    return h, c, h_hat, c_hat


def hyper_lstm_layer(layer, x, state, mask=None):
    """A ``HyperLSTMLayer`` over x (B, T, I) from state (h, c, ĥ, ĉ): output, final state."""
    outputs = []
    for t, x_t in enumerate(x.unbind(1)):
        state = hyper_lstm_step(layer, x_t, *state, None if mask is None else mask[:, t])
        outputs.append(state[0])
    return torch.stack(outputs, 1), state
