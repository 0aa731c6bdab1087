"""The static hypernetwork source: layer embeddings through shared tile generators.

Every generated weight of shape (out, in, *kernel) is m × k tiles of (t, t, *kernel), m =
ceil(out / t), k = ceil(in / t), each tile from its own embedding z; a weight the tile does not
divide (``wrap(..., pad=True)``) is cropped from its tiles. There is one generator per kernel
size (3×3 convs, 1×1 convs, 7×7 convs and matrices each their own, as a tile's shape differs),
and embeddings are stored per kernel size, grouped by weight shape, so that one generator call
makes every tile of that kernel size and one rearrange per shape assembles those weights.
Generator calls per forward = distinct kernel sizes.

Initialisation (hyperfan-in through the embeddings): the generator has unit gain, so a tile's
variance equals its embedding's; each group's embeddings lie on a sphere of radius
sqrt(N_z)·σ, with σ² its layer's target variance (``GeneratedLayer.init_std``²: 2 / fan_in for
ReLU convs, 1 / fan_in for linear maps), so every generated weight starts with the variance
of a Kaiming-initialised one.

Axes: u weights of one shape, m/k tiles along out/in channels, o/i channels within a tile.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn

from hyper.generator import TileGenerator
from hyper.layers import GeneratedLayer
from hyper.sources.base import SourceSpec, WeightSource, check_positive
from hyper.tying import TieGroup, check_tying_groups, tie

Shape = tuple[int, ...]


def kernel_key(kernel: tuple[int, ...]) -> str:
    """A kernel size's name among the generators: ``"3x3"``, ``"1x1"``, ``"matrix"``."""
    return "x".join(map(str, kernel)) or "matrix"


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
        # kernel key -> [(shape, tie groups of that shape)], in order of first appearance
        self.plan = _plan(tie(layers, tying_groups))
        self.generators = nn.ModuleDict({
            key: TileGenerator(
                embedding_dim=embedding_dim,
                hidden_dim=hidden_dim,
                tile_in=tile_channels,
                tile_out=tile_channels,
                kernel_size=shapes[0][0][2:],
            )
            for key, shapes in self.plan.items()
        })
        self.embeddings = nn.ParameterDict({
            key: nn.Parameter(self._initial_embeddings(shapes, embedding_dim)) for key, shapes in self.plan.items()
        })

    def tiles_per_weight(self, shape: Shape) -> tuple[int, int]:
        """(m, k): tiles along the out- and in-channels of a weight of ``shape``."""
        return -(-shape[0] // self.tile), -(-shape[1] // self.tile)

    def _initial_embeddings(self, shapes: list[tuple[Shape, list[TieGroup]]], embedding_dim: int) -> Tensor:
        std = torch.cat([
            torch.full((self._tiles(shape),), group[0].init_std) for shape, groups in shapes for group in groups
        ])  # (T,)
        # Each z on the sphere of radius σ·sqrt(N_z), not merely σ in expectation: a kernel of
        # one tile would otherwise inherit the ±18% spread of a single chi-squared norm.
        direction = F.normalize(torch.randn(len(std), embedding_dim), dim=1)
        return direction * (std[:, None] * embedding_dim**0.5)

    def _tiles(self, shape: Shape) -> int:
        m, k = self.tiles_per_weight(shape)
        return m * k

    def forward(self) -> dict[str, Tensor]:
        weights: dict[str, Tensor] = {}
        for key, shapes in self.plan.items():
            tiles = self.generators[key](self.embeddings[key])  # (T, o, i, *kernel)
            sizes = [len(groups) * self._tiles(shape) for shape, groups in shapes]
            for (shape, groups), chunk in zip(shapes, tiles.split(sizes)):
                kernels = self._assemble(chunk, shape)  # (u, out, in, *kernel)
                weights.update((layer.name, kernel) for group, kernel in zip(groups, kernels.unbind(0)) for layer in group)
        return weights

    def _assemble(self, tiles: Tensor, shape: Shape) -> Tensor:
        """(u·m·k, o, i, *kernel) tiles -> (u, out, in, *kernel) weights, cropped if padded."""
        m, k = self.tiles_per_weight(shape)
        kernels = rearrange(tiles, "(u m k) o i ... -> u (m o) (k i) ...", m=m, k=k)
        if kernels.shape[1:3] != shape[:2]:
            kernels = kernels[:, : shape[0], : shape[1]]
        return kernels

    def parameter_parts(self) -> dict[str, int]:
        return {
            "embeddings": sum(p.numel() for p in self.embeddings.values()),
            "generator": sum(p.numel() for p in self.generators.parameters()),
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


def _plan(groups: list[TieGroup]) -> dict[str, list[tuple[Shape, list[TieGroup]]]]:
    """Tie groups by kernel size, then by shape: the embedding tables' layout."""
    by_shape: dict[Shape, list[TieGroup]] = {}
    for group in groups:
        by_shape.setdefault(group[0].shape, []).append(group)
    plan: dict[str, list[tuple[Shape, list[TieGroup]]]] = {}
    for shape, shape_groups in by_shape.items():
        plan.setdefault(kernel_key(shape[2:]), []).append((shape, shape_groups))
    return plan

