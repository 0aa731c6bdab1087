"""ImageNet-style ResNets (He et al. 2016) with basic blocks: ResNet-18 and ResNet-34.

A 7×7 stride-2 stem and a max-pool, four stages of basic blocks (two 3×3 convs, batch norm,
a 1×1 downsample where the shape changes), global average pooling and a linear classifier. The
parameter names follow torchvision's (``layer2.0.downsample.0.weight``), so ``hyper.wrap`` reads
stage ``layer2``, block 0 off them. An ordinary module, nothing generated: wrap it with any source.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn


class BasicBlock(nn.Module):
    """conv3×3-BN-ReLU-conv3×3-BN, plus the input (1×1 conv + BN when the shape changes), ReLU."""

    def __init__(self, *, in_channels: int, out_channels: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        reshape = stride != 1 or in_channels != out_channels
        self.downsample = (
            nn.Sequential(nn.Conv2d(in_channels, out_channels, 1, stride, bias=False), nn.BatchNorm2d(out_channels))
            if reshape
            else None
        )

    def forward(self, x: Tensor) -> Tensor:  # (B, C_in, H, W) -> (B, C_out, H/s, W/s)
        y = self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x)))))
        return F.relu(y + (x if self.downsample is None else self.downsample(x)))


class ResNet(nn.Module):
    """A ResNet of basic blocks.

    Args:
        blocks: blocks per stage: (2, 2, 2, 2) is ResNet-18, (3, 4, 6, 3) ResNet-34.
        widths: channels per stage.
        num_classes: classifier outputs.
        in_channels: channels of the input images.
    """

    def __init__(
        self,
        *,
        blocks: tuple[int, ...] = (2, 2, 2, 2),
        widths: tuple[int, ...] = (64, 128, 256, 512),
        num_classes: int = 1000,
        in_channels: int = 3,
    ) -> None:
        super().__init__()
        if len(blocks) != len(widths) or not all(isinstance(n, int) and n > 0 for n in (*blocks, *widths)):
            raise ValueError(f"blocks and widths must be positive integers, one of each per stage, got {blocks} and {widths}")
        self.config = dict(blocks=tuple(blocks), widths=tuple(widths), num_classes=num_classes, in_channels=in_channels)
        self.conv1 = nn.Conv2d(in_channels, widths[0], 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(widths[0])
        channels = widths[0]
        for s, (n, width) in enumerate(zip(blocks, widths), start=1):
            stage = [BasicBlock(in_channels=channels, out_channels=width, stride=1 if s == 1 else 2)]
            stage += [BasicBlock(in_channels=width, out_channels=width) for _ in range(n - 1)]
            self.add_module(f"layer{s}", nn.Sequential(*stage))
            channels = width
        self.num_stages = len(blocks)
        self.fc = nn.Linear(channels, num_classes)
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_in", nonlinearity="relu")

    def forward(self, x: Tensor) -> Tensor:  # (B, C, H, W) -> (B, num_classes)
        x = F.max_pool2d(F.relu(self.bn1(self.conv1(x))), 3, 2, 1)
        for s in range(1, self.num_stages + 1):
            x = getattr(self, f"layer{s}")(x)
        return self.fc(x.mean(dim=(2, 3)))


def resnet18(**overrides: object) -> ResNet:
    return ResNet(**{"blocks": (2, 2, 2, 2), **overrides})


def resnet34(**overrides: object) -> ResNet:
    return ResNet(**{"blocks": (3, 4, 6, 3), **overrides})
