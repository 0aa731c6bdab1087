"""Initialisation targets shared by every weight source.

All sources aim at the variance a Kaiming (He) normal initialisation of the plain target would
give each layer: Var(w) = gain² / fan_in, with gain sqrt(2) for ReLU networks (the default of
``GeneratedLayer.gain``) and 1 for LSTM matrices. A direct source draws its weights from
that distribution; the hypernetwork reaches it through its embeddings (hyperfan-in, see
``hyper/sources/hyper.py``), so a generated network starts where the plain one would.
"""

from __future__ import annotations

import math


def kaiming_std(fan_in: int, gain: float = math.sqrt(2.0)) -> float:
    """Standard deviation of a Kaiming-normal weight with this fan-in (ReLU gain by default)."""
    return gain / math.sqrt(fan_in)
