"""Architectures built on ``hyper``. Importing this package never imports Lightning."""

from models.factory import (
    ARCHITECTURES,
    MODELS,
    create_model,
    hyper_wrn40_1,
    hyper_wrn40_2,
    list_models,
    wrn40_1,
    wrn40_2,
)
from models.char_model import CORES as RECURRENT_CORES
from models.char_model import CharRNN, build_core
from models.hyper_lstm import HyperLSTM
from models.lstm import LSTM, LNLSTM, RecurrentStack, detach_state
from models.lstm_stack import LSTMStack, StaticHyperLSTM
from models.resnet import ResNet, resnet18, resnet34
from models.transformer import CharTransformer, HyperCharTransformer
from models.wide_resnet import BLOCK_CONVS, HyperResNet, PreActBlock, WideResNet, wide_resnet

__all__ = [
    "BLOCK_CONVS",
    "ARCHITECTURES",
    "LNLSTM",
    "LSTM",
    "MODELS",
    "RECURRENT_CORES",
    "CharRNN",
    "CharTransformer",
    "HyperCharTransformer",
    "HyperLSTM",
    "HyperResNet",
    "LSTMStack",
    "RecurrentStack",
    "ResNet",
    "StaticHyperLSTM",
    "build_core",
    "detach_state",
    "PreActBlock",
    "WideResNet",
    "create_model",
    "hyper_wrn40_1",
    "hyper_wrn40_2",
    "list_models",
    "resnet18",
    "resnet34",
    "wide_resnet",
    "wrn40_1",
    "wrn40_2",
]
