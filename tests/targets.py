"""Modules the tests wrap as a user would wrap theirs.

``ResNet18Style``: a 7×7 stem, two stages of two basic blocks with a 1×1 downsample (named like
torchvision's: ``layer2.0.downsample.0.weight``) and a linear classifier, small widths so every
test is fast (``models.ResNet``, which nothing in ``hyper`` knows about). ``mlp``: an
nn.Sequential of linear layers.
"""

from __future__ import annotations

from torch import nn

from models.resnet import ResNet


def ResNet18Style(num_classes: int = 5, widths: tuple[int, int] = (16, 32)) -> ResNet:  # noqa: N802 - reads as a class
    return ResNet(blocks=(2, 2), widths=widths, num_classes=num_classes)


def mlp() -> nn.Sequential:
    return nn.Sequential(nn.Linear(32, 64), nn.ReLU(), nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 10))
