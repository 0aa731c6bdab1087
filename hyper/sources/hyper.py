"""The static hypernetwork source: layer embeddings through shared tile generators.

Every generated weight of shape (out, in, *kernel) is m × k tiles of (t, t, *kernel), m =
ceil(out / t), k = ceil(in / t), each tile from its own embedding z; a weight the tile does not
divide (``wrap(..., pad=True)``) is cropped from its tiles. There is one generator per kernel
size (3×3 convs, 1×1 convs, 7×7 convs and matrices each their own, as a tile's shape differs),
and embeddings are stored per kernel size, so that one generator call (one matmul) makes every
tile of that size; ``hyper/sources/assembly.py`` puts the tiles in place. Generator calls per
forward = distinct kernel sizes.

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
from hyper.sources.assembly import Buffers, assemble, generate_and_assemble, layout
from hyper.sources.base import SourceSpec, WeightSource, check_positive
from hyper.tying import TieGroup, check_tying_groups, tie


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
        # kernel key -> the tie groups whose weights it generates, in embedding-table order
        self.groups = _by_kernel_size(tie(layers, tying_groups))
        self.placements = {
            key: layout([group[0].shape for group in groups], tile_channels) for key, groups in self.groups.items()
        }
        self.generators = nn.ModuleDict({
            key: TileGenerator(
                embedding_dim=embedding_dim,
                hidden_dim=hidden_dim,
                tile_in=tile_channels,
                tile_out=tile_channels,
                kernel_size=groups[0][0].kernel_size,
            )
            for key, groups in self.groups.items()
        })
        self.embeddings = nn.ParameterDict({
            key: nn.Parameter(self._initial_embeddings(key, embedding_dim)) for key in self.groups
        })
        self.reused = {key: Buffers() for key in self.groups}  # not state: scratch memory

    def _initial_embeddings(self, key: str, embedding_dim: int) -> Tensor:
        std = torch.cat([
            torch.full((p.tiles,), group[0].init_std) for group, p in zip(self.groups[key], self.placements[key])
        ])  # (T,)
        # Each z on the sphere of radius σ·sqrt(N_z), not merely σ in expectation: a kernel of
        # one tile would otherwise inherit the ±18% spread of a single chi-squared norm.
        direction = F.normalize(torch.randn(len(std), embedding_dim), dim=1)
        return direction * (std[:, None] * embedding_dim**0.5)

    def forward(self) -> dict[str, Tensor]:
        weights: dict[str, Tensor] = {}
        for key, groups in self.groups.items():
            for group, weight in zip(groups, self._generate(key)):
                weights.update((layer.name, weight) for layer in group)
        return weights

    def _generate(self, key: str) -> list[Tensor]:
        """The weights of one kernel size, one per tie group: a single generator call."""
        generator, z, placements = self.generators[key], self.embeddings[key], self.placements[key]
        traced = torch.compiler.is_compiling() or torch.is_autocast_enabled(z.device.type)
        if generator.folding_pays(z.shape[0]) and not traced:
            weight, bias = generator.folded()
            return generate_and_assemble(z, weight, bias, placements, generator.tile_shape, self.reused[key])
        return assemble(generator(z), placements)  # (T, o, i, *kernel) tiles, autograd's way

    def parameter_parts(self) -> dict[str, int]:
        return {
            "embeddings": sum(p.numel() for p in self.embeddings.values()),
            "generator": sum(p.numel() for p in self.generators.parameters()),
        }

    def __getstate__(self) -> dict:
        state = super().__getstate__()
        state["reused"] = {key: Buffers() for key in self.groups}  # scratch memory is not copied
        return state


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

