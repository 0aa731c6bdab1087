"""The static hypernetwork source: layer embeddings through shared tile generators.

Every generated weight of shape (out, in, *kernel) is m × k tiles of (t, t, *kernel), m =
ceil(out / t), k = ceil(in / t), each tile from its own embedding z; a weight the tile does not
divide (``wrap(..., pad=True)``) is cropped from its tiles. There is one generator per kernel
size (3×3 convs, 1×1 convs, 7×7 convs and matrices each their own, as a tile's shape differs),
and each kernel size's embeddings sit beside its generator (a ``TileTable``), so that one
generator call (one matmul) makes every tile of that size; ``hyper/assembly.py`` puts the tiles in
place. Generator calls per forward = distinct kernel sizes.

Initialisation (hyperfan-in through the embeddings): the generator has unit gain, so a tile's
variance equals its embedding's; each group's embeddings lie on a sphere of radius
sqrt(N_z)·σ, with σ² its layer's target variance (``GeneratedLayer.init_std``²: 2 / fan_in for
ReLU convs, 1 / fan_in for linear maps), so every generated weight starts with the variance
of a Kaiming-initialised one.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from hyper.generator import TileGenerator
from hyper.layers import GeneratedLayer
from hyper.assembly import Buffers, layout
from hyper.sources.base import SourceSpec, WeightSource, check_positive
from hyper.tying import TieGroup, check_tying_groups, tie


def kernel_key(kernel: tuple[int, ...]) -> str:
    """A kernel size's name among the generators: ``"3x3"``, ``"1x1"``, ``"matrix"``."""
    return "x".join(map(str, kernel)) or "matrix"


class TileTable(nn.Module):
    """Every tile of one kernel size: their layer embeddings and the generator that makes them.

    Args:
        groups: the tie groups whose weights it generates (one weight each), in table order.
        embedding_dim: N_z, size of each tile's embedding.
        hidden_dim: d, the generator's hidden size.
        tile_channels: in- and out-channels of one tile.
    """

    def __init__(self, groups: list[TieGroup], *, embedding_dim: int, hidden_dim: int, tile_channels: int) -> None:
        super().__init__()
        self.placements = layout([group[0].shape for group in groups], tile_channels)
        self.generator = TileGenerator(
            embedding_dim=embedding_dim,
            hidden_dim=hidden_dim,
            tile_in=tile_channels,
            tile_out=tile_channels,
            kernel_size=groups[0][0].kernel_size,
        )
        self.embeddings = nn.Parameter(self._initial_embeddings(groups, embedding_dim))  # (T, N_z)
        self.reused = Buffers()  # scratch memory for the hot path, not state

    def _initial_embeddings(self, groups: list[TieGroup], embedding_dim: int) -> Tensor:
        std = torch.cat([torch.full((p.tiles,), group[0].init_std) for group, p in zip(groups, self.placements)])
        # Each z on the sphere of radius σ·sqrt(N_z), not merely σ in expectation: a kernel of
        # one tile would otherwise inherit the ±18% spread of a single chi-squared norm.
        direction = F.normalize(torch.randn(len(std), embedding_dim), dim=1)
        return direction * (std[:, None] * embedding_dim**0.5)

    def forward(self) -> list[Tensor]:
        """The weights, one per tie group, from a single generator call."""
        return self.generator(self.embeddings, self.placements, self.reused)

    def __getstate__(self) -> dict:
        return {**super().__getstate__(), "reused": Buffers()}  # copies and pickles leave scratch out


class HyperWeights(WeightSource):
    """Weights generated tile by tile from learned layer embeddings, one call per kernel size.

    Args:
        layers: the generated layers of the target.
        embedding_dim: N_z, size of each tile's embedding.
        hidden_dim: d, the generators' hidden size.
        tile_channels: in- and out-channels of one tile (16 in the paper).
        tying_groups: contiguous groups of blocks per stage sharing embeddings; None is untied.
    """

    def __init__(
        self,
        layers: Sequence[GeneratedLayer],
        *,
        embedding_dim: int,
        hidden_dim: int,
        tile_channels: int,
        tying_groups: int | None,
    ) -> None:
        super().__init__(layers)
        self.tile = tile_channels
        self.groups = _by_kernel_size(tie(layers, tying_groups))  # kernel key -> tie groups
        self.tables = nn.ModuleDict({
            key: TileTable(groups, embedding_dim=embedding_dim, hidden_dim=hidden_dim, tile_channels=tile_channels)
            for key, groups in self.groups.items()
        })

    def forward(self) -> dict[str, Tensor]:
        weights: dict[str, Tensor] = {}
        for key, groups in self.groups.items():
            for group, weight in zip(groups, self.tables[key]()):
                weights.update((layer.name, weight) for layer in group)
        return weights

    def parameter_parts(self) -> dict[str, int]:
        return {
            "embeddings": sum(table.embeddings.numel() for table in self.tables.values()),
            "generator": sum(p.numel() for table in self.tables.values() for p in table.generator.parameters()),
        }


@dataclass(frozen=True)
class Hyper(SourceSpec):
    """The paper's static hypernetwork.

    Args:
        embedding_dim: N_z, size of each tile's layer embedding (64 in the paper).
        hidden_dim: d, the generator's hidden size (64 in the paper).
        tile_channels: in/out channels of one generated tile (16 in the paper).
        tying_groups: contiguous groups of blocks per stage sharing embeddings: 1 is fully tied,
            None (or the number of blocks) is untied, as in the paper.
    """

    embedding_dim: int = 64
    hidden_dim: int = 64
    tile_channels: int = 16
    tying_groups: int | None = None
    name = "hyper"

    def __post_init__(self) -> None:
        check_positive("embedding_dim", self.embedding_dim)
        check_positive("hidden_dim", self.hidden_dim)
        check_positive("tile_channels", self.tile_channels)
        check_tying_groups(self.tying_groups)

    @property
    def tile(self) -> int:
        return self.tile_channels

    def build(self, layers: Sequence[GeneratedLayer]) -> WeightSource:
        return HyperWeights(
            layers,
            embedding_dim=self.embedding_dim,
            hidden_dim=self.hidden_dim,
            tile_channels=self.tile_channels,
            tying_groups=self.tying_groups,
        )


def _by_kernel_size(groups: list[TieGroup]) -> dict[str, list[TieGroup]]:
    """Tie groups by kernel size (each size its own generator and embedding table), in order."""
    by_key: dict[str, list[TieGroup]] = {}
    for group in groups:
        by_key.setdefault(kernel_key(group[0].kernel_size), []).append(group)
    return by_key

