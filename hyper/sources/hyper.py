"""The static hypernetwork source: layer embeddings through one shared tile generator.

Every generated kernel of shape (t·m, t·k, f, f) is m × k tiles of (t, t, f, f), each tile from
its own embedding z. Embeddings are stored grouped by kernel shape so that one generator call
makes every tile, and one rearrange per shape turns the tiles into that shape's kernels.

Initialisation (hyperfan-in through the embeddings): the generator has unit gain, so a tile's
variance equals its embedding's; each group's embeddings lie on a sphere of radius
sqrt(N_z)·σ, with σ² its layer's Kaiming variance (``GeneratedLayer.init_std``², 2 / fan_in for
ReLU convs), so every generated kernel starts with the variance of a Kaiming-initialised conv.

Axes: u kernels of one shape, m/k tiles along out/in channels, o/i channels within a tile.
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


class HyperWeights(WeightSource):
    """Kernels generated tile by tile from learned layer embeddings, all in one pass.

    Args:
        layers: the generated layers of the target; channels must be multiples of the tile.
        embedding_dim: N_z, size of each tile's embedding.
        hidden_dim: d, the generator's hidden size.
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
        kernel = _common_kernel(layers)
        _check_tileable(layers, tile_channels)
        self.tile = tile_channels
        # Kernels of one shape are contiguous in the embedding table: one rearrange per shape.
        self.by_shape = _groups_by_shape(tie(layers, tying_groups))
        self.generator = TileGenerator(
            embedding_dim=embedding_dim,
            hidden_dim=hidden_dim,
            tile_in=tile_channels,
            tile_out=tile_channels,
            kernel_size=kernel,
        )
        self.embeddings = nn.Parameter(self._initial_embeddings(embedding_dim))

    def _tiles_per_kernel(self, shape: tuple[int, ...]) -> int:
        return (shape[0] // self.tile) * (shape[1] // self.tile)

    def _initial_embeddings(self, embedding_dim: int) -> Tensor:
        stds = [
            torch.full((self._tiles_per_kernel(shape),), group[0].init_std)
            for shape, groups in self.by_shape
            for group in groups
        ]
        std = torch.cat(stds)  # (T,)
        # Each z on the sphere of radius σ·sqrt(N_z), not merely σ in expectation: a kernel of
        # one tile would otherwise inherit the ±18% spread of a single chi-squared norm.
        direction = F.normalize(torch.randn(len(std), embedding_dim), dim=1)
        return direction * (std[:, None] * embedding_dim**0.5)

    def forward(self) -> dict[str, Tensor]:
        tiles = self.generator(self.embeddings)  # (T, o, i, *kernel)
        sizes = [len(groups) * self._tiles_per_kernel(shape) for shape, groups in self.by_shape]
        weights: dict[str, Tensor] = {}
        for (shape, groups), chunk in zip(self.by_shape, tiles.split(sizes)):
            kernels = rearrange(  # (u, out, in, *kernel)
                chunk,
                "(u m k) o i ... -> u (m o) (k i) ...",
                m=shape[0] // self.tile,
                k=shape[1] // self.tile,
            )
            weights.update(
                (layer.name, kernel) for group, kernel in zip(groups, kernels) for layer in group
            )
        return weights

    def parameter_parts(self) -> dict[str, int]:
        return {
            "embeddings": self.embeddings.numel(),
            "generator": sum(p.numel() for p in self.generator.parameters()),
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
        check_tying_groups(self.tying_groups, ())

    def build(self, layers: Sequence[GeneratedLayer]) -> WeightSource:
        return HyperWeights(
            layers,
            embedding_dim=self.embedding_dim,
            hidden_dim=self.hidden_dim,
            tile_channels=self.tile_channels,
            tying_groups=self.tying_groups,
        )


def _common_kernel(layers: Sequence[GeneratedLayer]) -> tuple[int, ...]:
    kernels = {layer.shape[2:] for layer in layers}
    if len(kernels) != 1:
        raise ValueError(f"one generator needs one kernel size for all layers, got {sorted(kernels)}")
    return kernels.pop()


def _check_tileable(layers: Sequence[GeneratedLayer], tile: int) -> None:
    for layer in layers:
        out_channels, in_channels = layer.shape[:2]
        if out_channels % tile or in_channels % tile:
            raise ValueError(
                f"tile_channels must divide the in- and out-channels of every generated layer; "
                f"{layer.name} has {in_channels} in, {out_channels} out, tile_channels={tile}"
            )


def _groups_by_shape(groups: list[TieGroup]) -> list[tuple[tuple[int, ...], list[TieGroup]]]:
    by_shape: dict[tuple[int, ...], list[TieGroup]] = {}
    for group in groups:
        by_shape.setdefault(group[0].shape, []).append(group)
    return list(by_shape.items())
