"""Direct weights: the uncompressed baseline (plain) and its tied variant.

``Plain`` leaves every weight where it is, a parameter of the target: the model *is* the plain
network. ``Tied`` keeps one direct weight per tying group and lends it to every layer of the group.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from hyper.layers import GeneratedLayer
from hyper.sources.base import SourceSpec, WeightSource
from hyper.tying import check_tying_groups, tie


class PlainWeights(WeightSource):
    """Every weight stays a direct parameter of the target; nothing is generated."""

    @property
    def provides(self) -> tuple[str, ...]:
        return ()

    def forward(self) -> dict[str, Tensor]:
        return {}


class TiedWeights(WeightSource):
    """One direct, Kaiming-initialised weight per tying group.

    Args:
        layers: the generated layers of the target.
        tying_groups: contiguous groups of blocks per stage that share a weight (1: fully tied).
    """

    def __init__(self, layers: Sequence[GeneratedLayer], *, tying_groups: int | None) -> None:
        super().__init__(layers)
        self.groups = tie(layers, tying_groups)
        self.weights = nn.ParameterList(
            nn.Parameter(torch.randn(group[0].shape) * group[0].init_std)
            for group in self.groups
        )

    def forward(self) -> dict[str, Tensor]:
        return {
            layer.name: weight
            for group, weight in zip(self.groups, self.weights)
            for layer in group
        }


@dataclass(frozen=True)
class Plain(SourceSpec):
    """The uncompressed baseline: every weight a direct parameter."""

    name = "plain"

    def build(self, layers: Sequence[GeneratedLayer]) -> WeightSource:
        return PlainWeights(layers)


@dataclass(frozen=True)
class Tied(SourceSpec):
    """Direct weights shared by the blocks of each tying group.

    Args:
        tying_groups: groups of blocks per stage sharing one weight set; 1 is fully tied
            (an RNN in depth), the number of blocks is untied.
    """

    tying_groups: int = 1
    name = "tied"

    def __post_init__(self) -> None:
        check_tying_groups(self.tying_groups)

    def build(self, layers: Sequence[GeneratedLayer]) -> WeightSource:
        return TiedWeights(layers, tying_groups=self.tying_groups)
