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
from models.wide_resnet import HyperResNet, PreActBlock, WideResNet, WideResNetTarget

__all__ = [
    "ARCHITECTURES",
    "MODELS",
    "HyperResNet",
    "PreActBlock",
    "WideResNet",
    "WideResNetTarget",
    "create_model",
    "hyper_wrn40_1",
    "hyper_wrn40_2",
    "list_models",
    "wrn40_1",
    "wrn40_2",
]
