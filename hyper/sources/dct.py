"""Frequency-domain weights (Compressed Network Search, Koutník, Cuccu, Schmidhuber & Gomez,
2013): each weight is stored as its k lowest-frequency DCT coefficients, trained directly.

A generated weight W of shape (n_1, ..., n_d) (a conv kernel (out, in, f, f), an LSTM matrix)
is the d-dimensional inverse orthonormal DCT-II of a coefficient grid C of the same shape,
of which only k entries are parameters and the rest are zero:

    W[x_1..x_d] = Σ_{j_1..j_d} C[j_1..j_d] Π_a D_{n_a}[j_a, x_a],
    D_n[j, x] = sqrt(2/n) · c_j · cos(π (x + ½) j / n),  c_0 = 1/√2, c_j = 1 otherwise.

The k kept coefficients are the lowest frequencies in the paper's order: by the sum of the
indices j_1 + … + j_d, ties in index order. Parameters: k per weight (per tying group).
The DCT is orthonormal, so ‖W‖ = ‖C‖: coefficients drawn with variance N σ² / k give W the
layer's Kaiming variance σ² (``GeneratedLayer.init_std``) on average over its N entries.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from hyper.layers import GeneratedLayer
from hyper.sources.base import SourceSpec, WeightSource, check_positive
from hyper.tying import check_tying_groups, tie


def dct_basis(n: int) -> Tensor:
    """D_n (n, n): row j is the j-th orthonormal DCT-II basis vector."""
    j = torch.arange(n, dtype=torch.float64)[:, None]
    x = torch.arange(n, dtype=torch.float64)[None, :]
    basis = math.sqrt(2 / n) * torch.cos(math.pi * (x + 0.5) * j / n)
    basis[0] /= math.sqrt(2)
    return basis.float()


def lowest_frequencies(shape: Sequence[int], k: int) -> Tensor:
    """Flat indices of the k coefficients of lowest index sum in a grid of ``shape``."""
    grid = torch.stack(torch.meshgrid(*(torch.arange(n) for n in shape), indexing="ij")).reshape(len(shape), -1)
    order = torch.argsort(grid.sum(dim=0), stable=True)  # ties keep index (row-major) order
    return order[:k]


def inverse_dct(grid: Tensor, bases: Sequence[Tensor]) -> Tensor:
    """The d-dimensional inverse DCT: contract axis a of ``grid`` with D_{n_a}."""
    for axis, basis in enumerate(bases):
        grid = torch.movedim(torch.tensordot(grid, basis, dims=([axis], [0])), -1, axis)
    return grid


class DCTWeights(WeightSource):
    """Each tying group's weight from its k lowest-frequency DCT coefficients.

    Args:
        layers: the generated layers of the target.
        coefficients: k, at most the number of entries of the smallest layer.
        tying_groups: contiguous groups of blocks per stage sharing coefficients; None is untied.
    """

    def __init__(self, layers: Sequence[GeneratedLayer], *, coefficients: int, tying_groups: int | None) -> None:
        super().__init__(layers)
        smallest = min(layer.numel for layer in layers)
        if coefficients > smallest:
            raise ValueError(f"coefficients must be at most {smallest} (the smallest layer's size), got {coefficients}")
        self.groups = tie(layers, tying_groups)
        self.coefficients = nn.ParameterList(
            nn.Parameter(torch.randn(coefficients) * group[0].init_std * math.sqrt(group[0].numel / coefficients))
            for group in self.groups
        )
        for n in sorted({n for layer in layers for n in layer.shape}):
            self.register_buffer(f"basis_{n}", dct_basis(n), persistent=False)
        for shape in {layer.shape for layer in layers}:
            self.register_buffer(_key(shape), lowest_frequencies(shape, coefficients), persistent=False)

    def forward(self) -> dict[str, Tensor]:
        weights: dict[str, Tensor] = {}
        for group, coefficients in zip(self.groups, self.coefficients):
            shape = group[0].shape
            grid = coefficients.new_zeros(math.prod(shape)).index_copy(0, getattr(self, _key(shape)), coefficients)
            bases = [getattr(self, f"basis_{n}") for n in shape]
            weight = inverse_dct(grid.view(shape), bases)  # (out, in, *kernel)
            weights.update((layer.name, weight) for layer in group)
        return weights

    def parameter_parts(self) -> dict[str, int]:
        return {"DCT coefficients": sum(p.numel() for p in self.coefficients)}


def _key(shape: tuple[int, ...]) -> str:
    return "frequencies_" + "x".join(map(str, shape))


@dataclass(frozen=True)
class DCT(SourceSpec):
    """Compressed Network Search: each weight as its k lowest-frequency DCT coefficients.

    Args:
        coefficients: k, the coefficients kept per weight (at most the smallest layer's size).
        tying_groups: groups of blocks per stage sharing coefficients; None is untied.
    """

    coefficients: int = 64
    tying_groups: int | None = None
    name = "dct"

    def __post_init__(self) -> None:
        check_positive("coefficients", self.coefficients)
        check_tying_groups(self.tying_groups)

    def build(self, layers: Sequence[GeneratedLayer]) -> WeightSource:
        return DCTWeights(layers, coefficients=self.coefficients, tying_groups=self.tying_groups)
