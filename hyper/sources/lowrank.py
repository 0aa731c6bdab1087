"""Low-rank kernels: each kernel, flattened to out × (in·f·f), is U·V of rank r.

A baseline on the same compression axes as the hypernetwork: r (out + in·f·f) parameters per
kernel instead of out·in·f·f. Initialised so that U·V has the layer's Kaiming variance
(``GeneratedLayer.init_std``²): Var(U) = 1 / r, Var(V) = init_std².
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from hyper.layers import GeneratedLayer
from hyper.sources.base import SourceSpec, WeightSource, check_positive
from hyper.tying import check_tying_groups, tie


class LowRankWeights(WeightSource):
    """One rank-r factorisation per tying group.

    Args:
        layers: the generated layers of the target.
        rank: r, at most min(out, in·f·f) of every layer.
        tying_groups: contiguous groups of blocks per stage sharing factors; None is untied.
    """

    def __init__(self, layers: Sequence[GeneratedLayer], *, rank: int, tying_groups: int | None) -> None:
        super().__init__(layers)
        _check_rank(layers, rank)
        self.groups = tie(layers, tying_groups)
        shapes = [group[0].shape for group in self.groups]
        self.u = nn.ParameterList(nn.Parameter(torch.randn(s[0], rank) / rank**0.5) for s in shapes)
        self.v = nn.ParameterList(
            nn.Parameter(torch.randn(rank, group[0].fan_in) * group[0].init_std)
            for group in self.groups
        )

    def forward(self) -> dict[str, Tensor]:
        weights: dict[str, Tensor] = {}
        for group, u, v in zip(self.groups, self.u, self.v):
            kernel = (u @ v).view(group[0].shape)  # (out, in, *kernel)
            weights.update((layer.name, kernel) for layer in group)
        return weights

    def parameter_parts(self) -> dict[str, int]:
        return {"low-rank factors": sum(p.numel() for p in self.parameters())}


@dataclass(frozen=True)
class LowRank(SourceSpec):
    """Rank-r kernels, the matrix-factorisation baseline.

    Args:
        rank: r, the rank of every kernel (flattened to out × in·f·f).
        tying_groups: groups of blocks per stage sharing factors; None is untied.
    """

    rank: int = 4
    tying_groups: int | None = None
    name = "lowrank"

    def __post_init__(self) -> None:
        check_positive("rank", self.rank)
        check_tying_groups(self.tying_groups)

    def build(self, layers: Sequence[GeneratedLayer]) -> WeightSource:
        return LowRankWeights(layers, rank=self.rank, tying_groups=self.tying_groups)


def _check_rank(layers: Sequence[GeneratedLayer], rank: int) -> None:
    if not layers:
        return
    smallest = min(layers, key=lambda layer: min(layer.shape[0], layer.fan_in))
    full = min(smallest.shape[0], smallest.fan_in)
    if rank > full:
        raise ValueError(
            f"rank must be at most {full} (the full rank of the smallest layer, {smallest.name} "
            f"{smallest.shape}), got {rank}"
        )
