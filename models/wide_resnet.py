"""CIFAR-style pre-activation Wide ResNets, WRN-d-k, with any weight source.

Zagoruyko & Komodakis (2016): a 3×3 stem to 16 channels, three stages of n = (d - 4) / 6
pre-activation blocks with 16k, 32k, 64k channels (stride 2 entering stages 2 and 3), 1×1
shortcuts where the shape changes, a final BN-ReLU, global average pooling and a linear
classifier. The 3×3 convs of the blocks are the generated layers (as in Ha et al.); the stem,
shortcuts, norms and classifier are ordinary parameters.

``WideResNet`` is the plain network, an ordinary module (what ``materialize`` returns);
it declares ``BLOCK_CONVS`` as the weights a hypernetwork generates (``default_include``), so
``hyper.wrap(WideResNet(...), source)`` generates them; ``HyperResNet`` is that wrap as a class
(the paper's hypernetwork by default), and ``wide_resnet(source=...)`` the same as a function.
"""

from __future__ import annotations

from typing import Any

import torch.nn.functional as F
from torch import Tensor, nn

from hyper import SourceSpec, Wrapped, source_from_name, wrap
from hyper.init import kaiming_std
from models.family import family_source

STAGE_CHANNELS = (16, 32, 64)
STEM_CHANNELS = 16
# The weights the paper generates: the two 3×3 convs of every block (not the stem, the 1×1
# shortcuts or the classifier). Names read stages.<stage>.<block>.conv1.weight.
BLOCK_CONVS = ("stages.*.conv1.weight", "stages.*.conv2.weight")


def conv3x3(in_channels: int, out_channels: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False)


class PreActBlock(nn.Module):
    """BN-ReLU-conv3×3, BN-ReLU-(dropout)-conv3×3, plus a shortcut (1×1 conv if shapes change).

    Args:
        in_channels: channels entering the block.
        out_channels: channels leaving it.
        stride: stride of the first conv and of the shortcut.
        dropout: dropout probability between the two convs (WRN's), 0 for none.
    """

    def __init__(self, *, in_channels: int, out_channels: int, stride: int, dropout: float) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_channels)
        self.conv1 = conv3x3(in_channels, out_channels, stride)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.conv2 = conv3x3(out_channels, out_channels)
        reshape = stride != 1 or in_channels != out_channels
        self.shortcut = (
            nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False) if reshape else None
        )

    def forward(self, x: Tensor) -> Tensor:  # (B, C_in, H, W) -> (B, C_out, H/s, W/s)
        pre = F.relu(self.bn1(x))
        # When the shape changes the shortcut sees the pre-activated input, as in WRN.
        skip = x if self.shortcut is None else self.shortcut(pre)
        y = self.conv1(pre)
        y = self.conv2(self.dropout(F.relu(self.bn2(y))))
        return y + skip


class WideResNet(nn.Module):
    """The pre-activation WRN-depth-width: an ordinary module, every weight a parameter.

    Args:
        depth: total depth d, of the form 6n + 4 (n blocks per stage).
        width: width factor k; stage channels are 16k, 32k, 64k (rounded: 0.5 gives 8, 16, 32,
            a narrower plain net).
        num_classes: classifier outputs.
        in_channels: channels of the input images.
        dropout: dropout between the two convs of each block.
    """

    default_include = BLOCK_CONVS  # what hyper.wrap generates when given no include

    def __init__(
        self,
        *,
        depth: int = 16,
        width: float = 1,
        num_classes: int = 10,
        in_channels: int = 3,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        _check_arguments(depth, width, num_classes, in_channels, dropout)
        self.config: dict[str, Any] = dict(
            depth=depth, width=width, num_classes=num_classes, in_channels=in_channels, dropout=dropout
        )
        self.blocks_per_stage = (depth - 4) // 6
        self.stem = conv3x3(in_channels, STEM_CHANNELS)
        channels = [STEM_CHANNELS] + [max(1, round(c * width)) for c in STAGE_CHANNELS]
        self.stages = nn.ModuleList(
            self._stage(channels[s], channels[s + 1], 1 if s == 0 else 2, dropout) for s in range(3)
        )
        self.bn = nn.BatchNorm2d(channels[-1])
        self.classifier = nn.Linear(channels[-1], num_classes)
        self._init_weights()

    def _stage(self, in_channels: int, out_channels: int, stride: int, dropout: float) -> nn.Sequential:
        return nn.Sequential(*(
            PreActBlock(
                in_channels=in_channels if b == 0 else out_channels,
                out_channels=out_channels,
                stride=stride if b == 0 else 1,
                dropout=dropout,
            )
            for b in range(self.blocks_per_stage)
        ))

    def _init_weights(self) -> None:
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                fan_in = module.weight[0].numel()
                nn.init.normal_(module.weight, std=kaiming_std(fan_in))
        nn.init.zeros_(self.classifier.bias)

    def forward(self, x: Tensor) -> Tensor:  # (B, C, H, W) -> (B, num_classes)
        x = self.stem(x)
        for stage in self.stages:
            x = stage(x)
        x = F.relu(self.bn(x))
        return self.classifier(x.mean(dim=(2, 3)))


def wide_resnet(*, source: SourceSpec | str | None = None, **arguments: Any) -> nn.Module:
    """A ``WideResNet``, plain (``source=None``) or with its block convs from ``source``.

    Args:
        source: ``Hyper(...)``, ``Tied(...)``, ``LowRank(...)``, ... or one of their names.
        arguments: ``WideResNet``'s (depth, width, num_classes, in_channels, dropout).
    """
    network = WideResNet(**arguments)
    if source is None:
        return network
    spec = source_from_name(source) if isinstance(source, str) else source
    return wrap(network, spec)  # the block convs: WideResNet.default_include


class HyperResNet(Wrapped):
    """A Wide ResNet whose block convs come from a weight source: the paper's hypernetwork by default.

    ``hyper.wrap(WideResNet(...), source)`` as a class, so configs and checkpoints can name it;
    ``hyper.materialize`` gives back a plain ``WideResNet``. The convs generated are those
    ``WideResNet`` declares (``BLOCK_CONVS``).

    Args:
        depth: total depth d, of the form 6n + 4 (n blocks per stage).
        width: width factor k; stage channels are 16k, 32k, 64k.
        num_classes: classifier outputs.
        in_channels: channels of the input images.
        dropout: dropout between the two convs of each block.
        source: the weight source (``Hyper(embedding_dim=16)``, ``LowRank(rank=2)``, ...);
            default ``Hyper()``, the paper's (N_z = d = 64, 16-channel tiles, untied).
        embedding_dim, hidden_dim, tile_channels, tying_groups: ``Hyper``'s knobs by name, instead
            of ``source`` (older configs and checkpoints); unset ones take ``Hyper``'s defaults.
    """

    def __init__(
        self,
        *,
        depth: int = 16,
        width: int = 1,
        num_classes: int = 10,
        in_channels: int = 3,
        dropout: float = 0.0,
        source: SourceSpec | None = None,
        embedding_dim: int | None = None,
        hidden_dim: int | None = None,
        tile_channels: int | None = None,
        tying_groups: int | None = None,
    ) -> None:
        spec = family_source(
            source, embedding_dim=embedding_dim, hidden_dim=hidden_dim, tile_channels=tile_channels, tying_groups=tying_groups
        )
        target = WideResNet(
            depth=depth, width=width, num_classes=num_classes, in_channels=in_channels, dropout=dropout
        )
        super().__init__(target=target, source=spec)


def _check_arguments(depth: int, width: float, num_classes: int, in_channels: int, dropout: float) -> None:
    if not isinstance(depth, int) or depth < 10 or (depth - 4) % 6:
        raise ValueError(f"depth must be of the form 6n + 4 with n >= 1 (10, 16, 22, 28, 40, ...), got {depth!r}")
    if isinstance(width, bool) or not isinstance(width, (int, float)) or not width > 0:
        raise ValueError(f"width must be a positive number (1, 2, 10, or 0.5 for half the channels), got {width!r}")
    for name, value in (("num_classes", num_classes), ("in_channels", in_channels)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
    if not 0.0 <= dropout < 1.0:
        raise ValueError(f"dropout must be in [0, 1), got {dropout!r}")
