"""Compression from the command line: callbacks that quantise, prune with rewinding, drop
channels, factorise or refit a trained network, each a ``trainer.callbacks`` entry of a config
or a sweep method. Those that compress the network they train (quantisation, pruning) are
``Compression`` callbacks: they declare how the report counts them and how a reloaded checkpoint
is compressed again (``hyper.training.compression.protocol``)."""

from hyper.training.compression.lottery import LotteryTicket
from hyper.training.compression.protocol import Compression
from hyper.training.compression.quantization import PostTrainingQuantization, QuantizationAwareTraining
from hyper.training.compression.surgery import ChannelDropping, CompressInto, LowRankFactorization

__all__ = [
    "ChannelDropping",
    "CompressInto",
    "Compression",
    "LotteryTicket",
    "LowRankFactorization",
    "PostTrainingQuantization",
    "QuantizationAwareTraining",
]
