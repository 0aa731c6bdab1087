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

from hyper import Plain, SourceSpec, Wrapped, source_from_name
from models.family import family_source
from models.lstm import LSTM_MATRICES, LNLSTM



class LSTMStack(Wrapped):
    """A multi-layer LN-LSTM with generated weight matrices; the common recurrent interface.

    ``hyper.wrap(LNLSTM(...), source)`` as a class (the matrices LNLSTM declares,
    ``LSTM_MATRICES``): called as
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
        super().__init__(target=target, source=spec)  # the matrices LNLSTM declares: LSTM_MATRICES
        self.config: dict[str, Any] = dict(
            input_size=input_size, hidden_size=hidden_size, num_layers=num_layers, source=spec,
            recurrent_dropout=recurrent_dropout,
        )


class StaticHyperLSTM(LSTMStack):
    """An LN-LSTM stack whose matrices the paper's static hypernetwork generates: ``LSTMStack``
    with ``Hyper`` as its default source.

    Args:
        input_size: features of x_t (a multiple of the source's tile).
        hidden_size: units per layer (a multiple of the source's tile).
        num_layers: stacked layers.
        source: the weight source; default ``Hyper()``.
        embedding_dim, hidden_dim, tile_channels, tying_groups: ``Hyper``'s knobs by name, instead
            of ``source`` (older configs and checkpoints); unset ones take ``Hyper``'s defaults.
        recurrent_dropout: probability of dropping each unit of tanh(g_t) in training.
    """

    def __init__(
        self,
        *,
        input_size: int,
        hidden_size: int,
        num_layers: int = 2,
        source: SourceSpec | None = None,
        embedding_dim: int | None = None,
        hidden_dim: int | None = None,
        tile_channels: int | None = None,
        tying_groups: int | None = None,
        recurrent_dropout: float = 0.0,
    ) -> None:
        spec = family_source(
            source, embedding_dim=embedding_dim, hidden_dim=hidden_dim, tile_channels=tile_channels, tying_groups=tying_groups
        )
        super().__init__(
            input_size=input_size, hidden_size=hidden_size, num_layers=num_layers, source=spec,
            recurrent_dropout=recurrent_dropout,
        )
