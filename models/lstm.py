"""Recurrent cores with one interface: a layer-normalised LSTM and a thin wrapper over nn.LSTM.

Every core (here and in ``models.hyper_lstm``) is called as

    output, state = core(x, state=None)     # x (B, T, input_size), output (B, T, hidden_size)

and ``state`` is a tuple of tensors, each (num_layers, B, size): ``(h, c)`` for the LSTMs (the
same layout as nn.LSTM), ``(h, c, ĥ, ĉ)`` for the HyperLSTM. Passing the returned state into the
next call continues the sequence, so a TBPTT loop carries it across batches
(``state = detach_state(state)`` between them). ``core.init_state(B)`` gives the zero state.

LN-LSTM (Ba, Kiros & Hinton 2016; the paper's LN variant), per gate y ∈ {i, f, g, o}:

    y_t = LN(W_x x_t + W_h h_{t-1} + b)
    c_t = σ(f_t + 1) ⊙ c_{t-1} + σ(i_t) ⊙ tanh(g_t)
    h_t = σ(o_t) ⊙ tanh(LN(c_t))

Recurrent dropout (``recurrent_dropout=p``, Semeniuta, Mikolajczyk & Barth 2016, "Recurrent
Dropout without Memory Loss"; the HyperNetworks paper trains with it): in training, tanh(g_t)
is multiplied by a fresh mask of Bernoulli(1 − p)/(1 − p) per step, unit and example, so the
cell update is dropped but the memory c_{t-1} is not. Evaluation is unaffected by the setting.

Gates are stacked in nn.LSTM's order (i, f, g, o). The +1 on the forget gate is a constant
(``forget_bias``), as in the HyperNetworks authors' code; it keeps early memory open without
being normalised away by LN. Recurrent and input matrices are initialised orthogonal per gate.

Speed: a layer's whole sequence is one autograd operation with a hand-written backward
(``models.lstm_scan``; the step's arithmetic is ``models.lstm_update``): W_x x_t + b for every
step is one matmul before the time loop, inside it one matmul per step gives all four gates,
and the weight gradients are one matmul each after the backward loop. On CPU the update of a
step runs as one call of a fused C++ kernel, forward and backward (``models.fused_kernels``,
built on first use; the eager operations are the fallback). torch.compile of the update
measured slower: its call overhead (~20 µs) is of the order of the arithmetic at these sizes.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from models.lstm_scan import Norms, lstm_layer_scan

# The weights a hypernetwork generates in an LN-LSTM: every layer's input and recurrent matrices
# (raw parameters of its layers, so gain 1: the variance of the orthogonal initialisation they replace).
LSTM_MATRICES = ("layers.*.weight_x", "layers.*.weight_h")

State = tuple[Tensor, ...]
Device = torch.device | str | None
NUM_GATES = 4  # i, f, g, o


def check_positive(name: str, value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")


def check_dropout(name: str, value: float) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value < 1.0:
        raise ValueError(f"{name} must be in [0, 1), got {value!r}")


def dropout_mask(p: float, steps: int, batch: int, hidden: int, like: Tensor) -> Tensor:
    """(T, B, H) recurrent-dropout mask: Bernoulli(1 − p) / (1 − p), from torch's global RNG."""
    return torch.empty(steps, batch, hidden, device=like.device, dtype=like.dtype).bernoulli_(1 - p).div_(1 - p)


def detach_state(state: State) -> State:
    """Cut the graph between TBPTT segments while keeping the values."""
    return tuple(s.detach() for s in state)


@torch.no_grad()
def orthogonal_per_gate_(weight: Tensor, num_gates: int = NUM_GATES) -> Tensor:
    """Initialise each gate's (H, in) block of a stacked (num_gates·H, in) matrix orthogonal."""
    for block in weight.chunk(num_gates, dim=0):
        nn.init.orthogonal_(block)
    return weight


class LSTMUpdate(nn.Module):
    """The layer-norm parameters of the update from gate pre-activations and c_{t-1} to (h_t, c_t)
    (``models.lstm_update`` has the equations and runs them).

    Shared by every LSTM-shaped cell here (LN-LSTM, plain LSTM, the HyperLSTM's main and hyper
    cells), so that they differ only in how they compute the pre-activations.

    Args:
        hidden_size: H, units per gate.
        layer_norm: normalise each gate's pre-activations and the cell state c_t.
        forget_bias: constant added to the forget gate inside its sigmoid.
    """

    def __init__(self, *, hidden_size: int, layer_norm: bool = True, forget_bias: float = 1.0) -> None:
        super().__init__()
        check_positive("hidden_size", hidden_size)
        self.hidden_size = hidden_size
        self.layer_norm = layer_norm
        self.forget_bias = float(forget_bias)
        if layer_norm:
            # Per-gate gain and shift: LN statistics are taken over each gate separately.
            self.gate_weight = nn.Parameter(torch.ones(NUM_GATES, hidden_size))
            self.gate_bias = nn.Parameter(torch.zeros(NUM_GATES, hidden_size))
            self.cell_norm = nn.LayerNorm(hidden_size)

    @property
    def eps(self) -> float:
        return self.cell_norm.eps if self.layer_norm else 1e-5

    def norms(self) -> Norms:
        """Gate gain and bias (4, H), cell gain and bias (H,); Nones without layer norm."""
        if not self.layer_norm:
            return Norms(None, None, None, None)
        return Norms(self.gate_weight, self.gate_bias, self.cell_norm.weight, self.cell_norm.bias)


class LSTMLayer(nn.Module):
    """One LSTM layer over a whole sequence, layer-normalised by default.

    Args:
        input_size: features of x_t.
        hidden_size: H.
        layer_norm: the LN-LSTM (True) or a plain LSTM written the same way (False).
        forget_bias: constant added to the forget gate.
        recurrent_dropout: probability of dropping each unit of tanh(g_t) in training.
    """

    def __init__(
        self,
        *,
        input_size: int,
        hidden_size: int,
        layer_norm: bool = True,
        forget_bias: float = 1.0,
        recurrent_dropout: float = 0.0,
    ) -> None:
        super().__init__()
        check_positive("input_size", input_size)
        check_dropout("recurrent_dropout", recurrent_dropout)
        self.input_size = input_size
        self.hidden_size = hidden_size
        self.recurrent_dropout = float(recurrent_dropout)
        self.update = LSTMUpdate(hidden_size=hidden_size, layer_norm=layer_norm, forget_bias=forget_bias)
        gates = NUM_GATES * hidden_size
        self.weight_x = nn.Parameter(orthogonal_per_gate_(torch.empty(gates, input_size)))  # (4H, I)
        self.weight_h = nn.Parameter(orthogonal_per_gate_(torch.empty(gates, hidden_size)))  # (4H, H)
        self.bias = nn.Parameter(torch.zeros(gates))

    @property
    def state_sizes(self) -> tuple[int, ...]:
        return (self.hidden_size, self.hidden_size)

    def dropout_mask(self, x: Tensor) -> Tensor | None:
        """The (T, B, H) recurrent-dropout mask for x (B, T, ·); None in evaluation or with p = 0."""
        if not (self.training and self.recurrent_dropout):
            return None
        return dropout_mask(self.recurrent_dropout, x.shape[1], x.shape[0], self.hidden_size, x)

    def forward(self, x: Tensor, state: State) -> tuple[Tensor, State]:
        h, c = state
        output, h, c = lstm_layer_scan(
            x.transpose(0, 1), self.weight_x, self.bias, h, c, self.weight_h, *self.update.norms(),
            forget_bias=self.update.forget_bias, eps=self.update.eps, mask=self.dropout_mask(x),
        )
        return output.transpose(0, 1), (h, c)  # (B, T, H)


class RecurrentStack(nn.Module):
    """Layers run one after another over the whole sequence; the state is stacked per layer.

    Subclasses fill ``self.layers`` with modules that have ``state_sizes`` and
    ``forward(x (B, T, in), state: tuple of (B, size)) -> (output (B, T, H), state)``.
    Running layer by layer (not step by step) lets each layer project its whole input
    sequence in one matmul.
    """

    layers: nn.ModuleList

    @property
    def input_size(self) -> int:
        return self.layers[0].input_size

    @property
    def hidden_size(self) -> int:
        return self.layers[-1].hidden_size

    @property
    def num_layers(self) -> int:
        return len(self.layers)

    def init_state(self, batch_size: int, device: Device = None, dtype: torch.dtype | None = None) -> State:
        """Zero state: one (num_layers, B, size) tensor per entry of the layers' state."""
        sizes = self.layers[0].state_sizes
        return tuple(torch.zeros(self.num_layers, batch_size, n, device=device, dtype=dtype) for n in sizes)

    def forward(self, x: Tensor, state: State | None = None) -> tuple[Tensor, State]:
        _check_input(x, self.input_size)
        state = self.init_state(x.shape[0], x.device, x.dtype) if state is None else state
        _check_state(state, self.init_state(x.shape[0], "meta", x.dtype))
        finals = []
        for layer, *layer_state in zip(self.layers, *state):  # layer_state: tensors (B, size)
            x, layer_state = layer(x, tuple(layer_state))
            finals.append(layer_state)
        return x, tuple(torch.stack(entry) for entry in zip(*finals))


class LNLSTM(RecurrentStack):
    """Multi-layer layer-normalised LSTM; state (h, c), each (num_layers, B, hidden_size).

    Args:
        input_size: features of x_t.
        hidden_size: units per layer.
        num_layers: stacked layers; layer l > 0 reads layer l-1's output.
        forget_bias: constant added to the forget gate.
        recurrent_dropout: probability of dropping each unit of tanh(g_t) in training.
    """

    default_include = LSTM_MATRICES  # what hyper.wrap generates when given no include

    def __init__(
        self,
        *,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        forget_bias: float = 1.0,
        recurrent_dropout: float = 0.0,
    ) -> None:
        super().__init__()
        check_positive("num_layers", num_layers)
        sizes = [input_size] + [hidden_size] * (num_layers - 1)
        self.layers = nn.ModuleList(
            LSTMLayer(
                input_size=n, hidden_size=hidden_size, layer_norm=True, forget_bias=forget_bias,
                recurrent_dropout=recurrent_dropout,
            )
            for n in sizes
        )


class LSTM(nn.Module):
    """torch's fused nn.LSTM (batch first) behind the common interface; state (h, c).

    Initialised like the other cores (orthogonal matrices per gate, zero biases, forget bias
    1) so that comparisons are between architectures, not initialisations. The forget bias
    here is the learnable bias_ih's forget slice rather than a constant.

    nn.LSTM cannot drop the cell update: with ``recurrent_dropout`` > 0, training runs the same
    parameters through the fused plain-LSTM loop of ``models.lstm_scan`` (tested equal to
    nn.LSTM without the mask; it runs at about the LN-LSTM's speed). Evaluation always runs
    nn.LSTM.

    Args:
        input_size: features of x_t.
        hidden_size: units per layer.
        num_layers: stacked layers.
        forget_bias: initial value of the forget gate's bias.
        recurrent_dropout: probability of dropping each unit of tanh(g_t) in training.
    """

    def __init__(
        self,
        *,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        forget_bias: float = 1.0,
        recurrent_dropout: float = 0.0,
    ) -> None:
        super().__init__()
        for name, value in dict(input_size=input_size, hidden_size=hidden_size, num_layers=num_layers).items():
            check_positive(name, value)
        check_dropout("recurrent_dropout", recurrent_dropout)
        self.recurrent_dropout = float(recurrent_dropout)
        self.lstm = nn.LSTM(input_size, hidden_size, num_layers=num_layers, batch_first=True)
        self._init_like_ln_lstm(forget_bias)

    @torch.no_grad()
    def _init_like_ln_lstm(self, forget_bias: float) -> None:
        for name, p in self.lstm.named_parameters():
            if name.startswith("weight"):
                orthogonal_per_gate_(p)
            else:
                p.zero_()
                if name.startswith("bias_ih"):
                    p[self.hidden_size : 2 * self.hidden_size] = forget_bias

    @property
    def input_size(self) -> int:
        return self.lstm.input_size

    @property
    def hidden_size(self) -> int:
        return self.lstm.hidden_size

    @property
    def num_layers(self) -> int:
        return self.lstm.num_layers

    def init_state(self, batch_size: int, device: Device = None, dtype: torch.dtype | None = None) -> State:
        shape = (self.num_layers, batch_size, self.hidden_size)
        return (torch.zeros(shape, device=device, dtype=dtype), torch.zeros(shape, device=device, dtype=dtype))

    def forward(self, x: Tensor, state: State | None = None) -> tuple[Tensor, State]:
        _check_input(x, self.input_size)
        if state is not None:
            _check_state(state, self.init_state(x.shape[0], "meta", x.dtype))
        if self.training and self.recurrent_dropout:
            return self._dropout_forward(x, self.init_state(x.shape[0], x.device, x.dtype) if state is None else state)
        output, (h, c) = self.lstm(x, None if state is None else tuple(state))
        return output, (h, c)

    def _dropout_forward(self, x: Tensor, state: State) -> tuple[Tensor, State]:
        """nn.LSTM's layers through the fused loop, with a recurrent-dropout mask per layer."""
        x, finals = x.transpose(0, 1), []  # (T, B, I)
        for layer, h, c in zip(range(self.num_layers), *state):
            weights = {name: getattr(self.lstm, f"{name}_l{layer}") for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")}
            mask = dropout_mask(self.recurrent_dropout, x.shape[0], x.shape[1], self.hidden_size, x)
            x, h, c = lstm_layer_scan(  # nn.LSTM's bias holds the forget bias: no constant
                x, weights["weight_ih"], weights["bias_ih"] + weights["bias_hh"], h, c, weights["weight_hh"],
                None, None, None, None, forget_bias=0.0, mask=mask,
            )
            finals.append((h, c))
        h, c = (torch.stack(entry) for entry in zip(*finals))
        return x.transpose(0, 1), (h, c)


def _check_input(x: Tensor, input_size: int) -> None:
    if x.dim() != 3 or x.shape[-1] != input_size:
        raise ValueError(f"x must be (batch, time, {input_size}), got shape {tuple(x.shape)}")


def _check_state(state: State, expected: State) -> None:
    shapes = [tuple(s.shape) for s in state]
    wanted = [tuple(s.shape) for s in expected]
    if shapes != wanted:
        raise ValueError(f"state must be {len(wanted)} tensors of shapes {wanted}, got {shapes}")
