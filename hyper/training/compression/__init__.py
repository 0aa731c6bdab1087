"""Compression from the command line: callbacks that quantise, prune with rewinding, drop
channels, factorise or refit a trained network, each a ``trainer.callbacks`` entry of a config
or a sweep method."""

from hyper.training.compression.lottery import LotteryTicket
from hyper.training.compression.quantization import PostTrainingQuantization, QuantizationAwareTraining
from hyper.training.compression.surgery import ChannelDropping, CompressInto, LowRankFactorization

__all__ = [
    "ChannelDropping",
    "CompressInto",
    "LotteryTicket",
    "LowRankFactorization",
    "PostTrainingQuantization",
    "QuantizationAwareTraining",
]
