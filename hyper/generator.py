"""The paper's generator: two linear layers, shared by every tile of one kernel size.

Ha, Dai & Le (2016), §3.1, with N_z = ``embedding_dim``, d = ``hidden_dim``, N_in = ``tile_in``,
N_out = ``tile_out``, f = kernel size:

    a_i   = W_i z + B_i                      i = 1..N_in,   W_i ∈ R^{d × N_z}
    K_i   = ⟨W_out, a_i⟩ + B_out             W_out: R^d → R^{N_out · f · f}
    tile  = [K_1 … K_{N_in}]                 (N_out, N_in, f, f)

Parameters: d (N_z + 1) N_in + f² N_out (d + 1).

Both maps are linear (the paper puts no nonlinearity between them), so a tile is also
z · (W_i W_out) + (B_i W_out + B_out): one (N_z → tile) matrix, folded from the two each call.
For T tiles that costs N_z·d·N_in·N_out·f² once plus T·N_z·N_in·N_out·f², against
T·N_in·d·(N_z + N_out·f²) for the two maps in turn; the folded form is cheaper whenever N_z is
not much above d (at the paper's N_z = d = 64, 3×3 tiles: 1.45× fewer multiply-adds; at N_z = 4,
16×), and its columns can be laid out so the tiles come out of one matmul in their final layout.
``forward`` takes whichever order costs less; both compute the same function.

Axes: t tile, z embedding, i tile in-channel, d hidden, o tile out-channel, k kernel positions.
"""

from __future__ import annotations

import math

import torch
from einops import rearrange
from torch import Tensor, nn

from hyper.assembly import Buffers, Placement, assemble, generate_and_assemble


class TileGenerator(nn.Module):
    """Map layer embeddings to weight tiles in one batched pass.

    Args:
        embedding_dim: N_z, size of each layer embedding.
        hidden_dim: d, size of the intermediate vectors a_i.
        tile_in: N_in, in-channels per tile.
        tile_out: N_out, out-channels per tile.
        kernel_size: the tile's spatial shape, e.g. ``(3, 3)``; ``()`` for matrices.
    """

    def __init__(
        self,
        *,
        embedding_dim: int,
        hidden_dim: int,
        tile_in: int,
        tile_out: int,
        kernel_size: tuple[int, ...] = (3, 3),
    ) -> None:
        super().__init__()
        self.tile_in, self.tile_out, self.kernel_size = tile_in, tile_out, tuple(kernel_size)
        self.embedding_dim, self.hidden_dim = embedding_dim, hidden_dim
        self.kernel_area = math.prod(self.kernel_size)
        out_features = tile_out * self.kernel_area
        self.w_in = nn.Parameter(torch.empty(tile_in, embedding_dim, hidden_dim))
        self.b_in = nn.Parameter(torch.zeros(tile_in, hidden_dim))
        self.w_out = nn.Parameter(torch.empty(hidden_dim, out_features))
        self.b_out = nn.Parameter(torch.zeros(out_features))
        # Unit-gain layers: Var(tile) = Var(z), so each layer's embedding scale alone sets
        # the variance of its kernels (hyperfan-in through the embeddings).
        nn.init.normal_(self.w_in, std=1 / math.sqrt(embedding_dim))
        nn.init.normal_(self.w_out, std=1 / math.sqrt(hidden_dim))

    @property
    def tile_shape(self) -> tuple[int, ...]:
        return (self.tile_out, self.tile_in, *self.kernel_size)

    def forward(
        self, z: Tensor, placements: tuple[Placement, ...] | None = None, buffers: Buffers | None = None
    ) -> Tensor | list[Tensor]:
        """(T, N_z) embeddings -> (T, N_out, N_in, *kernel) tiles, or, given ``placements``, the
        weights those tiles form (``hyper.assembly``), one per placement.

        With placements and ``buffers`` the folded map runs on the hot path (one matmul into
        reused memory, a hand-written backward, under autocast too) unless tracing is on; the
        result is the same. Either way this is one call, so module hooks (pruning's, for one) see it.
        """
        if placements is not None and buffers is not None and self._hot_path(z):
            return generate_and_assemble(z, *self.folded(), placements, self.tile_shape, buffers)
        if self.folding_pays(z.shape[0]):
            weight, bias = self.folded()
            tiles = torch.addmm(bias, z, weight)  # (T, o·i·f): already the tiles' layout
        else:
            tiles = self._two_maps(z)
        tiles = tiles.view(z.shape[0], *self.tile_shape)
        return tiles if placements is None else assemble(tiles, placements)

    def _hot_path(self, z: Tensor) -> bool:
        return self.folding_pays(z.shape[0]) and not torch.compiler.is_compiling()

    def folding_pays(self, tiles: int) -> bool:
        """Whether z · (W_i W_out) costs fewer multiply-adds than the two maps in turn."""
        n_z, d, n_in = self.embedding_dim, self.hidden_dim, self.tile_in
        out = self.tile_out * self.kernel_area
        return n_z * n_in * out * (d + tiles) <= tiles * n_in * d * (n_z + out)

    def folded(self) -> tuple[Tensor, Tensor]:
        """The generator as one affine map: weight (N_z, N_out·N_in·f²) and bias (N_out·N_in·f²,),
        columns in the tile's (o, i, f) order, so z · weight + bias is the tiles' final layout."""
        w_out = rearrange(self.w_out, "d (o k) -> d o k", o=self.tile_out)
        weight = torch.einsum("izd,dok->zoik", self.w_in, w_out).reshape(self.embedding_dim, -1)
        bias = torch.einsum("id,dok->oik", self.b_in, w_out) + rearrange(self.b_out, "(o k) -> o 1 k", o=self.tile_out)
        return weight, bias.reshape(-1)

    def _two_maps(self, z: Tensor) -> Tensor:
        """The paper's two maps in turn: (T, o, i, k)."""
        a = torch.einsum("tz,izd->tid", z, self.w_in) + self.b_in  # (T, N_in, d)
        slices = a @ self.w_out + self.b_out  # (T, N_in, N_out·f·f)
        return rearrange(slices, "t i (o k) -> t o i k", o=self.tile_out)


class KernelCrop(nn.Module):
    """One shared generator's tiles, cropped to a smaller kernel: the paper's single generator
    for a network whose layers have kernels of several sizes (``Hyper(sharing="network")``).

    The shared generator makes tiles of the largest kernel; a layer of a smaller kernel takes the
    centre of each tile (a 1×1 conv or a matrix: the centre tap). Only the folded map's columns of
    those positions are used, so a crop costs no more than a generator of its own size would.
    Holds the shared generator without registering it (its parameters belong to the source once).

    Args:
        shared: the network's one generator.
        kernel_size: this table's kernel, at most the shared one's along each axis (``()``: matrix).
    """

    def __init__(self, shared: TileGenerator, kernel_size: tuple[int, ...]) -> None:
        super().__init__()
        self.__dict__["shared"] = shared  # not a submodule: counted, saved and moved with the source
        self.kernel_size = tuple(kernel_size)
        self.tile_in, self.tile_out = shared.tile_in, shared.tile_out
        full = shared.kernel_size
        positions = torch.arange(shared.tile_out * shared.tile_in * shared.kernel_area).view(shared.tile_out, shared.tile_in, *full)
        if self.kernel_size:
            crop = tuple(slice((big - small) // 2, (big - small) // 2 + small) for big, small in zip(full, self.kernel_size))
        else:
            crop = tuple(big // 2 for big in full)  # the centre tap
        self.register_buffer("columns", positions[(slice(None), slice(None), *crop)].reshape(-1), persistent=False)

    @property
    def tile_shape(self) -> tuple[int, ...]:
        return (self.tile_out, self.tile_in, *self.kernel_size)

    def folded(self) -> tuple[Tensor, Tensor]:
        weight, bias = self.shared.folded()
        return weight[:, self.columns], bias[self.columns]

    def forward(
        self, z: Tensor, placements: tuple[Placement, ...] | None = None, buffers: Buffers | None = None
    ) -> Tensor | list[Tensor]:
        """As ``TileGenerator.forward``, through the folded map always."""
        weight, bias = self.folded()
        if placements is not None and buffers is not None and not torch.compiler.is_compiling():
            return generate_and_assemble(z, weight, bias, placements, self.tile_shape, buffers)
        tiles = torch.addmm(bias, z, weight).view(z.shape[0], *self.tile_shape)
        return tiles if placements is None else assemble(tiles, placements)
