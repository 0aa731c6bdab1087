"""Stacked LN-LSTMs whose weight matrices come from a weight source: the static hypernetwork
applied to recurrent depth.

The target is an ``LNLSTM``; its generated layers are every layer's input matrix W_x (4H, I)
and recurrent matrix W_h (4H, H) (``layers.<l>.weight_x``: stage ``layers``, block l, role
``weight_x``, read off the names by ``hyper.wrap``). Tying works as for the
ResNet: ``tying_groups=1`` shares one weight set across all layers (layer 0's W_x keeps its own
when I ≠ H, its shape differs), ``None`` gives every layer its own. With ``Hyper`` the matrices
are assembled from 16 × 16 tiles of the shared generator, generated once per forward call (once
per TBPTT segment, not per time step: the hypernetwork is static).
"""

from __future__ import annotations

from typing import Any

from hyper import Hyper, Plain, SourceSpec, Wrapped, source_from_name
from models.lstm import LNLSTM

# The generated weights: every layer's input and recurrent matrices (raw parameters of the
# LN-LSTM's layers, so gain 1: the variance of the orthogonal initialisation they replace).
LSTM_MATRICES = ("layers.*.weight_x", "layers.*.weight_h")


class LSTMStack(Wrapped):
    """A multi-layer LN-LSTM with generated weight matrices; the common recurrent interface.

    ``hyper.wrap(LNLSTM(...), source, include=LSTM_MATRICES)`` as a class: called as
    ``output, state = stack(x, state)``, with the LN-LSTM's ``init_state``, ``input_size``,
    ``hidden_size`` and ``num_layers``; the matrices are generated once per call (once per
    TBPTT segment, not per time step: the hypernetwork is static).

    Args:
        input_size: features of x_t.
        hidden_size: units per layer.
        num_layers: stacked layers.
        source: where W_x and W_h come from: ``Plain()``, ``Hyper(...)``, ``Tied()``, ... or a name.
        recurrent_dropout: probability of dropping each unit of tanh(g_t) in training, in every
            layer (Semeniuta et al. 2016, as ``LNLSTM``).
    """

    def __init__(
        self,
        *,
        input_size: int,
        hidden_size: int,
        num_layers: int = 2,
        source: SourceSpec | str = Plain(),
        recurrent_dropout: float = 0.0,
    ) -> None:
        spec = source_from_name(source) if isinstance(source, str) else source
        target = LNLSTM(
            input_size=input_size, hidden_size=hidden_size, num_layers=num_layers, recurrent_dropout=recurrent_dropout
        )
        super().__init__(target=target, source=spec, include=LSTM_MATRICES)
        self.config: dict[str, Any] = dict(
            input_size=input_size, hidden_size=hidden_size, num_layers=num_layers, source=spec,
            recurrent_dropout=recurrent_dropout,
        )


class StaticHyperLSTM(LSTMStack):
    """An LN-LSTM stack whose matrices the paper's static hypernetwork generates.

    Args:
        input_size: features of x_t (a multiple of ``tile_channels``).
        hidden_size: units per layer (a multiple of ``tile_channels``).
        num_layers: stacked layers.
        embedding_dim: N_z, size of each tile's embedding.
        hidden_dim: d, the generator's hidden size.
        tile_channels: rows and columns of one generated tile.
        tying_groups: groups of layers sharing embeddings: 1 fully tied, None untied.
        recurrent_dropout: probability of dropping each unit of tanh(g_t) in training.
    """

    def __init__(
        self,
        *,
        input_size: int,
        hidden_size: int,
        num_layers: int = 2,
        embedding_dim: int = 16,
        hidden_dim: int = 64,
        tile_channels: int = 16,
        tying_groups: int | None = None,
        recurrent_dropout: float = 0.0,
    ) -> None:
        spec = Hyper(
            embedding_dim=embedding_dim, hidden_dim=hidden_dim,
            tile_channels=tile_channels, tying_groups=tying_groups,
        )
        super().__init__(
            input_size=input_size, hidden_size=hidden_size, num_layers=num_layers, source=spec,
            recurrent_dropout=recurrent_dropout,
        )
