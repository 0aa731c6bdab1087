"""hyper: hypernetworks that generate the weights of deep networks.

The core (this package's top level) needs torch and einops only; the Lightning training pieces
live in ``hyper.training`` and ``hyper.data`` and are imported explicitly.
"""

from hyper.accounting import ParameterCount, count_parameters
from hyper.generator import TileGenerator
from hyper.layers import GeneratedLayer
from hyper.materialize import materialize
from hyper.network import GeneratedNetwork
from hyper.sources import (
    DCT,
    SOURCES,
    Hyper,
    HyperLoRA,
    LoRA,
    LowRank,
    Plain,
    SourceSpec,
    Templates,
    Tied,
    WeightSource,
    source_from_name,
)
from hyper.tying import tie
from hyper.wrap import Wrapped, wrap

__all__ = [
    "DCT",
    "SOURCES",
    "GeneratedLayer",
    "GeneratedNetwork",
    "Hyper",
    "HyperLoRA",
    "LoRA",
    "LowRank",
    "ParameterCount",
    "Plain",
    "SourceSpec",
    "Templates",
    "Tied",
    "TileGenerator",
    "WeightSource",
    "count_parameters",
    "materialize",
    "source_from_name",
    "tie",
    "wrap",
    "Wrapped",
]
