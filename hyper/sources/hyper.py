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

from hyper.generator import KernelCrop, TileGenerator
from hyper.layers import GeneratedLayer
from hyper.assembly import Buffers, assemble, layout
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
        condition_dim: the condition's size, for a conditional source (FiLM on z).
        shared: the network's one generator (``sharing="network"``), cropped to this kernel;
            None: this table's own.
    """

    def __init__(
        self,
        groups: list[TieGroup],
        *,
        embedding_dim: int,
        hidden_dim: int,
        tile_channels: int,
        condition_dim: int | None = None,
        shared: TileGenerator | None = None,
    ) -> None:
        super().__init__()
        self.placements = layout([group[0].shape for group in groups], tile_channels)
        kernel = groups[0][0].kernel_size
        self.generator = (
            TileGenerator(embedding_dim=embedding_dim, hidden_dim=hidden_dim, tile_in=tile_channels, tile_out=tile_channels, kernel_size=kernel)
            if shared is None
            else KernelCrop(shared, kernel)
        )
        self.embeddings = nn.Parameter(self._initial_embeddings(groups, embedding_dim))  # (T, N_z)
        self.reused = Buffers()  # scratch memory for the hot path, not state
        if condition_dim is not None:
            # FiLM on z: the condition scales and shifts every embedding dimension. Not
            # concatenated or added to z: the generator is linear, so those would add one
            # tile-independent kernel to every tile; a scale changes each tile differently, at
            # the cost of one (c -> 2·N_z) map per kernel size. Zero-initialised, so a
            # conditional source starts as the unconditional one (and keeps its init).
            self.film = nn.Linear(condition_dim, 2 * embedding_dim)
            nn.init.zeros_(self.film.weight)
            nn.init.zeros_(self.film.bias)

    def _initial_embeddings(self, groups: list[TieGroup], embedding_dim: int) -> Tensor:
        std = torch.cat([torch.full((p.tiles,), group[0].init_std) for group, p in zip(groups, self.placements)])
        # Each z on the sphere of radius σ·sqrt(N_z), not merely σ in expectation: a kernel of
        # one tile would otherwise inherit the ±18% spread of a single chi-squared norm.
        direction = F.normalize(torch.randn(len(std), embedding_dim), dim=1)
        return direction * (std[:, None] * embedding_dim**0.5)

    def forward(self, condition: Tensor | None = None) -> list[Tensor]:
        """The weights, one per tie group, from a single generator call; with a ``(B, c)``
        condition each weight gets a leading batch axis (B weight sets, one batched call)."""
        if condition is None:
            return self.generator(self.embeddings, self.placements, self.reused)
        scale, shift = self.film(condition).chunk(2, dim=-1)  # (c,) -> (N_z,) each; (B, c) -> (B, N_z)
        if condition.dim() == 1:
            return self.generator(self.embeddings * (1 + scale) + shift, self.placements, self.reused)
        z = self.embeddings * (1 + scale[:, None]) + shift[:, None]  # (B, T, N_z)
        # All B·T tiles from one generator call, then each weight set assembled under vmap (the
        # plain autograd path: the hot path writes into reused buffers, which cannot batch).
        tiles = self.generator(z.flatten(0, 1)).unflatten(0, z.shape[:2])  # (B, T, o, i, *kernel)
        return list(torch.func.vmap(lambda one: tuple(assemble(one, self.placements)))(tiles))

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
        condition_dim: c, size of the condition the weights depend on (``hyper/condition.py``);
            None: one weight set, no condition.
        num_tasks: T learned task embeddings of size c (then ``task=t`` is the condition).
        sharing: what one generator serves: ``"kernel"`` every tile of one kernel size,
            ``"network"`` every tile, ``"layer"`` one layer's (one tie group's) tiles.
    """

    def __init__(
        self,
        layers: Sequence[GeneratedLayer],
        *,
        embedding_dim: int,
        hidden_dim: int,
        tile_channels: int,
        tying_groups: int | None,
        condition_dim: int | None = None,
        num_tasks: int | None = None,
        sharing: str = "kernel",
    ) -> None:
        super().__init__(layers)
        self.tile = tile_channels
        self.condition_dim, self.num_tasks, self.sharing = condition_dim, num_tasks, sharing
        self.groups = _tables(tie(layers, tying_groups), sharing)  # table key -> tie groups
        if sharing == "network":
            self.generator = TileGenerator(
                embedding_dim=embedding_dim, hidden_dim=hidden_dim, tile_in=tile_channels, tile_out=tile_channels,
                kernel_size=_largest_kernel([group[0] for groups in self.groups.values() for group in groups]),
            )
        self.tables = nn.ModuleDict({
            key: TileTable(
                groups,
                embedding_dim=embedding_dim,
                hidden_dim=hidden_dim,
                tile_channels=tile_channels,
                condition_dim=condition_dim,
                shared=self.generator if sharing == "network" else None,
            )
            for key, groups in self.groups.items()
        })
        if num_tasks is not None:
            self.task_embeddings = nn.Parameter(torch.randn(num_tasks, condition_dim))  # (T, c)
        # name -> (kernel key, its tie group's index in the table): where a layer's tiles sit
        self.where = {layer.name: (key, i) for key, groups in self.groups.items() for i, g in enumerate(groups) for layer in g}

    def forward(self, condition: Tensor | None = None) -> dict[str, Tensor]:
        """``{name: weight}``; given a ``(B, c)`` condition, each weight is ``(B, *shape)``."""
        if (condition is None) != (self.condition_dim is None):
            raise ValueError(
                "condition: this source is conditional, pass one (see hyper/condition.py)"
                if condition is None
                else "condition: this source is not conditional (build Hyper with condition_dim=...)"
            )
        weights: dict[str, Tensor] = {}
        for key, groups in self.groups.items():
            for group, weight in zip(groups, self.tables[key](condition)):
                weights.update((layer.name, weight) for layer in group)
        return weights

    def generators(self) -> list[nn.Parameter]:
        """The generators' parameters, each once (a shared generator serves several tables)."""
        if self.sharing == "network":
            return list(self.generator.parameters())
        return [p for table in self.tables.values() for p in table.generator.parameters()]

    def per_sample(self, condition: Tensor, factorized: frozenset[str]) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
        """For a ``(B, c)`` condition: the weight sets ``(B, *shape)`` of the layers not in
        ``factorized``, and per kernel size the conditions' FiLM ``(B, 2, N_z)`` (scale, shift),
        which ``linear_per_sample`` applies to the factorized layers without making their weights."""
        films = {key: torch.stack(table.film(condition).chunk(2, dim=-1), dim=1) for key, table in self.tables.items()}
        weights: dict[str, Tensor] = {}
        for key, groups in self.groups.items():
            if all(layer.name in factorized for group in groups for layer in group):
                continue  # every layer of this kernel size runs factorized: no weight sets
            for group, weight in zip(groups, self.tables[key](condition)):
                weights.update((layer.name, weight) for layer in group if layer.name not in factorized)
        return weights, films

    def linear_per_sample(self, name: str, x: Tensor, film: Tensor) -> Tensor:
        """x · Wᵀ for the matrix W that ``film`` (2, N_z: one sample's scale and shift) gives
        layer ``name``, computed without making W.

        The generator is linear: tile (a, b) of W is Σ_z z'_abz G_z + G_0, z' = z·(1 + scale) +
        shift, G the folded generator (``TileGenerator.folded``). So each input block is
        projected through G once, u_bz = G_z x_b, and the blocks are mixed by the tiles'
        embeddings: y_a = Σ_bz z'_abz u_bz + Σ_b G_0 x_b. Per sample that is in·N_z·t + out·in·N_z/t
        multiply-adds against out·in·N_z to generate W (t times more) and out·in to apply it.
        """
        key, index = self.where[name]
        table, t = self.tables[key], self.tile
        p = table.placements[index]
        weight, bias = table.generator.folded()  # (N_z, o·i), (o·i,)
        generator = weight.view(-1, t, t)  # (z, o, i)
        z = table.embeddings[p.first_tile : p.first_tile + p.tiles].view(p.m, -1)  # (a, b·z)
        x = F.pad(x, (0, p.k * t - p.shape[1])).unflatten(-1, (p.k, t))  # (..., b, i), zero-padded in
        # the sample's scale on G, not on z: the embeddings stay one matrix for the whole batch,
        # so the mixing is one matmul over all samples rather than one per sample
        scaled = (generator * (1 + film[0])[:, None, None]).permute(2, 0, 1).reshape(t, -1)  # (i, z·o)
        u = (x @ scaled).unflatten(-1, (-1, t)).flatten(-3, -2)  # (..., b·z, o): each block through G
        mixed = z @ u  # (..., a, o)
        # the shift adds one tile to every tile, as the generator's bias does: (shift·G + c)
        common = torch.einsum("z,zoi->oi", film[1], generator) + bias.view(t, t)
        shared = x.sum(-2) @ common.t()  # (..., o)
        return (mixed + shared.unsqueeze(-2)).flatten(-2)[..., : p.shape[0]]

    def parameter_parts(self) -> dict[str, int]:
        parts = {
            "embeddings": sum(table.embeddings.numel() for table in self.tables.values()),
            "generator": sum(p.numel() for p in self.generators()),
        }
        if self.condition_dim is not None:
            parts["condition map"] = sum(p.numel() for table in self.tables.values() for p in table.film.parameters())
        if self.num_tasks is not None:
            parts["task embeddings"] = self.task_embeddings.numel()
        return parts


@dataclass(frozen=True)
class Hyper(SourceSpec):
    """The paper's static hypernetwork.

    Args:
        embedding_dim: N_z, size of each tile's layer embedding (64 in the paper).
        hidden_dim: d, the generator's hidden size (64 in the paper).
        tile_channels: in/out channels of one generated tile (16 in the paper).
        tying_groups: contiguous groups of blocks per stage sharing embeddings: 1 is fully tied,
            None (or the number of blocks) is untied, as in the paper.
        condition_dim: c: the weights depend on a condition vector of this size, passed as
            ``model(x, condition=e)`` with e of shape (c,) (one weight set) or (B, c) (one per
            sample); None (default): the paper's static hypernetwork.
        num_tasks: T: learn one condition per task (size ``condition_dim``, default
            ``embedding_dim``), passed as ``model(x, task=t)``.
        sharing: which tiles one generator makes: ``"kernel"`` (default) all tiles of one kernel
            size, one generator per size; ``"network"`` every tile of the network from one
            generator (the paper's), smaller kernels taking the centre of its tiles; ``"layer"``
            a generator per layer (per tie group): the least sharing.
    """

    embedding_dim: int = 64
    hidden_dim: int = 64
    tile_channels: int = 16
    tying_groups: int | None = None
    condition_dim: int | None = None
    num_tasks: int | None = None
    sharing: str = "kernel"
    name = "hyper"

    def __post_init__(self) -> None:
        check_positive("embedding_dim", self.embedding_dim)
        check_positive("hidden_dim", self.hidden_dim)
        check_positive("tile_channels", self.tile_channels)
        check_tying_groups(self.tying_groups)
        if self.condition_dim is not None:
            check_positive("condition_dim", self.condition_dim)
        if self.num_tasks is not None:
            check_positive("num_tasks", self.num_tasks)
        if self.sharing not in SHARINGS:
            raise ValueError(f"sharing must be one of {', '.join(SHARINGS)}, got {self.sharing!r}")

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
            condition_dim=self.embedding_dim if self.num_tasks and self.condition_dim is None else self.condition_dim,
            num_tasks=self.num_tasks,
            sharing=self.sharing,
        )


SHARINGS = ("kernel", "network", "layer")


def _tables(groups: list[TieGroup], sharing: str) -> dict[str, list[TieGroup]]:
    """Tie groups by table: a table per kernel size (its tiles come out of one generator call),
    or with ``sharing="layer"`` a table per tie group, in order."""
    by_key: dict[str, list[TieGroup]] = {}
    for i, group in enumerate(groups):
        key = kernel_key(group[0].kernel_size)
        by_key.setdefault(f"{key}_{i}" if sharing == "layer" else key, []).append(group)
    return by_key


def _largest_kernel(layers: list[GeneratedLayer]) -> tuple[int, ...]:
    """The kernel of the network's one generator: the largest along each axis (matrices: a 1-tap
    kernel's centre), for kernels of one dimensionality."""
    kernels = {layer.kernel_size for layer in layers}
    dims = {len(k) for k in kernels if k}
    if len(dims) > 1:
        raise ValueError(f"sharing='network' needs kernels of one dimensionality (one generator makes every tile), got {sorted(kernels)}")
    if not dims:
        return ()
    return tuple(max(k[axis] for k in kernels if k) for axis in range(dims.pop()))

