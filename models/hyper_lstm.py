"""HyperLSTM: a small LSTM that rescales a big LSTM's weights at every time step.

Ha, Dai & Le, "HyperNetworks" (2016), §3.2 and Appendix A.2. Per layer, with the hyper LSTM
of size Ĥ (``hyper_size``), embeddings of size N_z (``embedding_dim``) and gates y ∈ {i, f, g, o}:

    x̂_t         = [x_t; h_{t-1}]
    ĥ_t, ĉ_t    = LN-LSTM(x̂_t; ĥ_{t-1}, ĉ_{t-1})                    the hyper LSTM
    z_h, z_x    = W_ĥh ĥ_t + b_ĥh,  W_ĥx ĥ_t + b_ĥx                  (N_z per gate)
    z_b         = W_ĥb ĥ_t                                           (N_z per gate)
    d_h, d_x    = W_hz z_h,  W_xz z_x                                (H per gate)
    b           = W_bz z_b + b_0                                     (H per gate)
    y_t         = LN(d_h ⊙ W_h h_{t-1} + d_x ⊙ W_x x_t + b)
    c_t         = σ(f_t + 1) ⊙ c_{t-1} + σ(i_t) ⊙ tanh(g_t)
    h_t         = σ(o_t) ⊙ tanh(LN(c_t))

d_h ⊙ (W_h h) is (diag(d_h) W_h) h: the hyper LSTM scales the *rows* of W_h and W_x per example
and per step, which costs O(H) instead of generating a whole H×H matrix.

Initialisation (Appendix A.2.3): W_ĥh, W_ĥx = 0 with biases 1, so z_h = z_x = 1 whatever ĥ is;
W_hz = W_xz = 0.1/N_z, so d_h = d_x = N_z · 0.1/N_z = 0.1 for every unit at init. That is
intended: it is the recurrent-batch-norm trick (Cooijmans et al. 2016 start the BN gain at 0.1;
the authors' code says so next to this constant). With LN on, the common factor 0.1 on both
terms is normalised away, so at init the cell behaves like an LN-LSTM; without LN it keeps the
gate pre-activations small. W_ĥb ~ N(0, 0.01²); W_bz = 0 and b_0 = 0 (from the authors' code),
so b = 0 at init. W_h, W_x (and the hyper LSTM's matrices) are orthogonal per gate.

A consequence worth knowing: at init W_ĥh = W_ĥx = 0 and W_bz = 0, so no gradient reaches the
hyper LSTM or W_ĥb on the first step; the first optimiser step makes them non-zero and from
then on every part learns (tests/test_hyper_lstm.py checks both facts).

Where this departs from the paper's equations, and why:
- z is read from ĥ_t, the hyper LSTM's output after it has read x̂_t, as the authors' code
  does (the paper's equation indexes the hyper state at t-1; labml's implementation also
  reads it as ĥ_t). It lets the scaling react to the current input.
- σ(f_t + 1): a constant forget bias of 1, as in the authors' code.
- LN epsilon is torch's 1e-5 (the authors' code uses 1e-3).
- With ``num_layers > 1`` every layer has its own hyper LSTM, reading its own input.

``hyper=False`` drops the hyper LSTM and fixes d_h = d_x = 1, b = b_0: the layer then *is* an
``LSTMLayer`` (same parameters and names; a state dict of ``LNLSTM`` loads into it), i.e.
exactly the LN-LSTM. ``layer_norm=False`` gives the paper's HyperLSTM without LN.

Speed: each layer runs as one autograd operation with a hand-written backward
(``models.hyper_lstm_scan``). W_x x_t and the hyper LSTM's x_t-part of x̂_t are projected for
the whole sequence before the loop (d_x multiplies W_x x_t elementwise, so it can be applied
per step afterwards); per step one matmul of h_{t-1} gives W_h h and the hyper LSTM's h-part, one of ĥ_{t-1} the rest
of its gates, one gives z_h, z_x, z_b, one batched matmul all the scaling vectors and the bias.
On CPU the elementwise work of a step (both LSTM updates, y from d and the projections, and
their backward) runs in fused C++ kernels (``models.fused_kernels``), built on first use.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn

from models.hyper_lstm_scan import HyperTensors, hyper_lstm_layer_scan
from models.lstm import NUM_GATES, LSTMLayer, RecurrentStack, State, check_positive

# Einops axes: k kind of embedding (h, x, b), g gate (i, f, g, o), z embedding, h unit.


class HyperLSTMLayer(LSTMLayer):
    """One HyperLSTM layer over a whole sequence. The main cell's W_x, W_h, b_0 and LN are the
    inherited ``LSTMLayer`` parameters (``weight_x``, ``weight_h``, ``bias``, ``update``).

    Args:
        input_size: features of x_t.
        hidden_size: H, units of the main LSTM.
        hyper_size: Ĥ, units of the hyper LSTM.
        embedding_dim: N_z, size of each of z_h, z_x, z_b per gate.
        hyper: False fixes d_h = d_x = 1 and b = b_0 (an LN-LSTM layer, no hyper parameters).
        layer_norm: layer norm in the main and the hyper LSTM.
        forget_bias: constant added to the forget gates.
        recurrent_dropout: probability of dropping each unit of the main cell's tanh(g_t) in
            training (the hyper LSTM's is not dropped, as in the authors' code by default).
    """

    def __init__(
        self,
        *,
        input_size: int,
        hidden_size: int,
        hyper_size: int = 128,
        embedding_dim: int = 16,
        hyper: bool = True,
        layer_norm: bool = True,
        forget_bias: float = 1.0,
        recurrent_dropout: float = 0.0,
    ) -> None:
        norm = dict(layer_norm=layer_norm, forget_bias=forget_bias)
        super().__init__(input_size=input_size, hidden_size=hidden_size, recurrent_dropout=recurrent_dropout, **norm)
        check_positive("hyper_size", hyper_size)
        check_positive("embedding_dim", embedding_dim)
        self.hyper_size = hyper_size
        self.embedding_dim = embedding_dim
        self.use_hyper = hyper
        if not hyper:
            return
        # The hyper LSTM reads x̂_t = [x_t; h_{t-1}]: columns :input_size of its weight_x act on x_t.
        self.hyper = LSTMLayer(input_size=input_size + hidden_size, hidden_size=hyper_size, **norm)
        self.to_z = nn.Linear(hyper_size, 2 * NUM_GATES * embedding_dim)  # W_ĥh, W_ĥx (and b_ĥh, b_ĥx)
        self.to_z_b = nn.Linear(hyper_size, NUM_GATES * embedding_dim, bias=False)  # W_ĥb
        self.weight_hz = nn.Parameter(torch.empty(NUM_GATES, hidden_size, embedding_dim))
        self.weight_xz = nn.Parameter(torch.empty(NUM_GATES, hidden_size, embedding_dim))
        self.weight_bz = nn.Parameter(torch.empty(NUM_GATES, hidden_size, embedding_dim))
        self.reset_hyper_parameters()

    @torch.no_grad()
    def reset_hyper_parameters(self) -> None:
        """The paper's initialisation of the hyper path (see the module docstring)."""
        self.to_z.weight.zero_()
        self.to_z.bias.fill_(1.0)
        self.to_z_b.weight.normal_(0.0, 0.01)
        self.weight_hz.fill_(0.1 / self.embedding_dim)
        self.weight_xz.fill_(0.1 / self.embedding_dim)
        self.weight_bz.zero_()

    @property
    def state_sizes(self) -> tuple[int, ...]:
        if not self.use_hyper:
            return super().state_sizes
        return (self.hidden_size, self.hidden_size, self.hyper_size, self.hyper_size)

    def forward(self, x: Tensor, state: State) -> tuple[Tensor, State]:
        if not self.use_hyper:
            return super().forward(x, state)
        output, state = hyper_lstm_layer_scan(
            x.transpose(0, 1), state, self.scan_tensors(), self.update.norms(), self.hyper.update.norms(),
            forget_bias=self.update.forget_bias, eps=self.update.eps, mask=self.dropout_mask(x),
        )
        return output.transpose(0, 1), state  # (B, T, H)

    def scan_tensors(self) -> HyperTensors:
        """The parameters rearranged once per sequence so that each step needs fewer, larger
        matmuls (autograd takes the gradients back through the rearrangement)."""
        columns = self.input_size  # the hyper LSTM's weight_x: columns for x_t, then for h_{t-1}
        return HyperTensors(
            weight_x=self.weight_x,
            hyper_weight_x=self.hyper.weight_x[:, :columns].contiguous(),
            hyper_bias=self.hyper.bias,
            # h_{t-1} feeds the main gates and the hyper LSTM: one matmul
            weight_from_h=torch.cat([self.weight_h, self.hyper.weight_x[:, columns:]]),
            hyper_weight_h=self.hyper.weight_h,
            # z_h, z_x, z_b in one matmul; z_b has no bias
            weight_z=torch.cat([self.to_z.weight, self.to_z_b.weight]),
            bias_z=F.pad(self.to_z.bias, (0, NUM_GATES * self.embedding_dim)),
            weight_dz=rearrange([self.weight_hz, self.weight_xz, self.weight_bz], "k g h z -> (k g) z h"),
            bias=self.bias,
        )


class HyperLSTM(RecurrentStack):
    """Multi-layer HyperLSTM; state (h, c, ĥ, ĉ), each (num_layers, B, size), or (h, c) with
    ``hyper=False``.

    Args:
        input_size: features of x_t.
        hidden_size: H, units of each main LSTM layer.
        num_layers: stacked layers, each with its own hyper LSTM.
        hyper_size: Ĥ, units of each hyper LSTM (the paper: 128).
        embedding_dim: N_z per gate and kind (the paper: 4 for PTB, 16 for "large embedding").
        hyper: False reduces every layer exactly to an LN-LSTM layer (or a plain LSTM layer
            with ``layer_norm=False``).
        layer_norm: layer norm in the main and hyper LSTMs.
        forget_bias: constant added to the forget gates.
        recurrent_dropout: probability of dropping each unit of the main cells' tanh(g_t) in
            training.
    """

    def __init__(
        self,
        *,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        hyper_size: int = 128,
        embedding_dim: int = 16,
        hyper: bool = True,
        layer_norm: bool = True,
        forget_bias: float = 1.0,
        recurrent_dropout: float = 0.0,
    ) -> None:
        super().__init__()
        check_positive("num_layers", num_layers)
        sizes = [input_size] + [hidden_size] * (num_layers - 1)
        self.layers = nn.ModuleList(
            HyperLSTMLayer(
                input_size=n,
                hidden_size=hidden_size,
                hyper_size=hyper_size,
                embedding_dim=embedding_dim,
                hyper=hyper,
                layer_norm=layer_norm,
                forget_bias=forget_bias,
                recurrent_dropout=recurrent_dropout,
            )
            for n in sizes
        )
