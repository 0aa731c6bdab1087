"""Character-level language model: embedding → recurrent core → linear head over the vocabulary.

The core is any module with the common recurrent interface (``models.lstm``): chosen by name
("lstm", "ln_lstm", "hyper_lstm") and built from the size arguments, or passed in already built
(for example a static-hyper LSTM stack), in which case the embedding and head are sized from it.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from models.hyper_lstm import HyperLSTM
from models.lstm import LSTM, LNLSTM, State, check_dropout, check_positive
from models.lstm_stack import StaticHyperLSTM

CORES = ("lstm", "ln_lstm", "hyper_lstm", "static_hyper_lstm")


def build_core(
    name: str,
    *,
    input_size: int,
    hidden_size: int,
    num_layers: int = 1,
    hyper_size: int = 128,
    hyper_embedding_dim: int = 16,
    recurrent_dropout: float = 0.0,
) -> nn.Module:
    """A recurrent core by name; ``hyper_*`` are used by "hyper_lstm" only.

    Args:
        name: one of CORES.
        input_size: features of x_t (the character embedding size).
        hidden_size: units per layer of the main LSTM.
        num_layers: stacked layers.
        hyper_size: units of the HyperLSTM's hyper LSTM.
        hyper_embedding_dim: N_z: the HyperLSTM's embedding size per gate, or the static
            hypernetwork's embedding size per tile.
        recurrent_dropout: dropout on the cell update tanh(g_t) in training (Semeniuta et al.
            2016), on every core.
    """
    sizes = dict(input_size=input_size, hidden_size=hidden_size, num_layers=num_layers)
    dropout = dict(recurrent_dropout=recurrent_dropout)
    if name == "lstm":
        return LSTM(**sizes, **dropout)
    if name == "ln_lstm":
        return LNLSTM(**sizes, **dropout)
    if name == "hyper_lstm":
        return HyperLSTM(**sizes, hyper_size=hyper_size, embedding_dim=hyper_embedding_dim, **dropout)
    if name == "static_hyper_lstm":
        # The paper's 16-wide tiles where the sizes allow, else the largest tile that fits both.
        tile = math.gcd(16, input_size, hidden_size)
        return StaticHyperLSTM(**sizes, embedding_dim=hyper_embedding_dim, tile_channels=tile, **dropout)
    raise ValueError(f"core must be one of {', '.join(CORES)} or a recurrent nn.Module, got {name!r}")


class CharRNN(nn.Module):
    """Next-character model: tokens (B, T) → logits (B, T, vocab_size), with recurrent state.

    Args:
        vocab_size: number of distinct characters (embedding rows and head outputs).
        core: one of CORES, built from the arguments below, or an already-built recurrent
            module (attributes ``input_size``, ``hidden_size``, ``init_state``; called as
            ``core(x, state) -> (output, state)``). A built core brings its own sizes:
            ``hidden_size``, ``num_layers``, ``embedding_size`` and ``hyper_*`` are then unused.
        hidden_size: units per recurrent layer.
        num_layers: stacked recurrent layers.
        embedding_size: size of the learned character embedding fed to the core.
        hyper_size: HyperLSTM only: units of the hyper LSTM.
        hyper_embedding_dim: HyperLSTM only: N_z, its embedding size per gate.
        dropout: dropout on the character embeddings and on the core's output (not inside the
            recurrence), 0 for none.
        recurrent_dropout: dropout inside the recurrence, on the cell update tanh(g_t) of every
            step (Semeniuta et al. 2016), 0 for none; for a core built by name (any of CORES).
            A built core brings its own.
    """

    def __init__(
        self,
        *,
        vocab_size: int,
        core: str | nn.Module = "hyper_lstm",
        hidden_size: int = 256,
        num_layers: int = 1,
        embedding_size: int = 64,
        hyper_size: int = 128,
        hyper_embedding_dim: int = 16,
        dropout: float = 0.0,
        recurrent_dropout: float = 0.0,
    ) -> None:
        super().__init__()
        check_positive("vocab_size", vocab_size)
        check_positive("embedding_size", embedding_size)
        check_dropout("dropout", dropout)
        check_dropout("recurrent_dropout", recurrent_dropout)
        core_name = core if isinstance(core, str) else type(core).__name__
        if isinstance(core, nn.Module) and recurrent_dropout:
            raise ValueError("recurrent_dropout applies to a core built by name; set it on the built core instead")
        if not isinstance(core, nn.Module):
            core = build_core(
                core,
                input_size=embedding_size,
                hidden_size=hidden_size,
                num_layers=num_layers,
                hyper_size=hyper_size,
                hyper_embedding_dim=hyper_embedding_dim,
                recurrent_dropout=recurrent_dropout,
            )
        self.vocab_size = vocab_size
        # What a report or a run's name shows of this model (the core by class when it was built).
        self.config = dict(
            vocab_size=vocab_size, core=core_name, hidden_size=core.hidden_size,
            num_layers=getattr(core, "num_layers", num_layers), embedding_size=core.input_size, dropout=dropout,
            recurrent_dropout=recurrent_dropout,
        )
        self.embedding = nn.Embedding(vocab_size, core.input_size)
        self.dropout = nn.Dropout(dropout)
        self.core = core
        self.head = nn.Linear(core.hidden_size, vocab_size)

    def init_state(self, batch_size: int, device: torch.device | str | None = None) -> State:
        """The core's zero state; passing ``None`` as state to ``forward`` does the same."""
        return self.core.init_state(batch_size, device=device)

    def forward(self, tokens: Tensor, state: State | None = None) -> tuple[Tensor, State]:
        if tokens.dim() != 2 or tokens.dtype != torch.long:
            got = f"{tokens.dtype} {tuple(tokens.shape)}"
            raise ValueError(f"tokens must be an int64 (batch, time) tensor, got {got}")
        x = self.dropout(self.embedding(tokens))  # (B, T, E)
        output, state = self.core(x, state)  # (B, T, H)
        return self.head(self.dropout(output)), state  # (B, T, V)
