"""Generated LoRA: low-rank deltas for a frozen base model's weights, made from a condition.

For each selected weight W₀ (out × in, a conv's flattened to out × in·f·f) the source makes
W = W₀ + (α / r)·B·A with B (out × r) and A (r × in) generated from the condition e and a
learned embedding of the layer (as Text-to-LoRA makes adapters from a task's description):

    h = relu(W₁ [e; z_layer] + b₁)          one hidden layer, shared by the layers of one shape
    [A, B] = W₂ h + b₂                      B's rows of W₂ and b₂ start at zero: W = W₀ at first

The layers of one shape share a generator and go through it together (one call per shape). The
base weights are *adopted*, not copied: the source holds the very tensors the target had, frozen,
and ``wrap`` freezes the rest of the target, so only the hypernetwork trains. Per sample, a linear
layer applies its adapter as x·W₀ᵀ + (α / r)·(x·Aᵀ)·Bᵀ, never making W (``hyper/per_sample.py``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from hyper.layers import GeneratedLayer
from hyper.sources.base import SourceSpec, WeightSource, check_positive


def _matrix(layer: GeneratedLayer) -> tuple[int, int]:
    """(rows, columns) of the layer's weight as the matrix its adapter changes (out, fan-in)."""
    return layer.shape[0 if not layer.transposed else 1], math.prod(layer.shape) // layer.shape[0 if not layer.transposed else 1]


class AdapterGenerator(nn.Module):
    """[e; z] -> the factors A (r × columns) and B (rows × r) of the layers of one matrix shape.

    Args:
        layers: how many layers share this generator.
        rows, columns: the matrix shape of their adapters.
        rank: r.
        condition_dim: c.
        embedding_dim: N_z, size of each layer's embedding.
        hidden_dim: the hidden layer's size.
    """

    def __init__(self, layers: int, rows: int, columns: int, *, rank: int, condition_dim: int, embedding_dim: int, hidden_dim: int) -> None:
        super().__init__()
        self.rows, self.columns, self.rank = rows, columns, rank
        self.embeddings = nn.Parameter(torch.randn(layers, embedding_dim))
        self.hidden = nn.Linear(condition_dim + embedding_dim, hidden_dim)
        self.out = nn.Linear(hidden_dim, rank * (columns + rows))
        with torch.no_grad():  # A as LoRA's (unit variance / fan-in), B zero: every adapter starts at 0
            self.out.weight[: rank * columns].normal_(std=1 / math.sqrt(hidden_dim * columns))
            self.out.weight[rank * columns :].zero_()
            self.out.bias.zero_()

    def forward(self, condition: Tensor) -> tuple[Tensor, Tensor]:
        """(c,) or (B, c) -> A (..., layers, r, columns), B (..., layers, rows, r)."""
        z = self.embeddings.expand(*condition.shape[:-1], *self.embeddings.shape)  # (..., L, N_z)
        e = condition.unsqueeze(-2).expand(*z.shape[:-1], condition.shape[-1])
        factors = self.out(F.relu(self.hidden(torch.cat([e, z], dim=-1))))
        a, b = factors.split([self.rank * self.columns, self.rank * self.rows], dim=-1)
        return a.unflatten(-1, (self.rank, self.columns)), b.unflatten(-1, (self.rows, self.rank))


class AdaptedWeights(WeightSource):
    """W₀ + (α / r)·ΔW: the base model's own weights, adopted and frozen, plus an adapter.

    Args:
        layers: the selected layers of the base model.
        scale: α / r.
    """

    freezes_target = True  # only the adapters train: wrap freezes the base model

    def __init__(self, layers: Sequence[GeneratedLayer], *, scale: float) -> None:
        super().__init__(layers)
        self.scale = scale
        self.base = nn.ParameterDict()  # filled by ``adopt``

    def adopt(self, weights: dict[str, nn.Parameter]) -> None:
        """Hold the base model's own weights (the same tensors, frozen), not copies."""
        for name, weight in weights.items():
            weight.requires_grad_(False)
            self.base[name.replace(".", "__")] = weight

    def adapted(self, layer: GeneratedLayer, a: Tensor, b: Tensor) -> Tensor:
        """W₀ + (α / r)·B·A in the layer's own shape (any leading batch axes of a and b kept)."""
        delta = self.scale * (b @ a)  # (..., rows, columns)
        delta = delta.transpose(-1, -2) if layer.transposed else delta.unflatten(-1, layer.shape[1:])  # Conv1D: (in, out)
        return self.base[layer.name.replace(".", "__")] + delta


class LoRAWeights(AdaptedWeights):
    """W₀ + (α / r)·B·A per selected weight, B and A generated from the condition.

    Args:
        layers: the selected layers of the base model.
        rank, alpha, condition_dim, num_tasks, embedding_dim, hidden_dim: see ``HyperLoRA``.
    """

    def __init__(
        self,
        layers: Sequence[GeneratedLayer],
        *,
        rank: int,
        alpha: float,
        condition_dim: int,
        num_tasks: int | None,
        embedding_dim: int,
        hidden_dim: int,
    ) -> None:
        super().__init__(layers, scale=alpha / rank)
        self.rank = rank
        self.condition_dim, self.num_tasks = condition_dim, num_tasks
        self.by_shape: dict[str, list[GeneratedLayer]] = {}
        for layer in layers:
            self.by_shape.setdefault("x".join(map(str, _matrix(layer))), []).append(layer)
        self.generators = nn.ModuleDict({
            key: AdapterGenerator(
                len(group), *_matrix(group[0]), rank=rank, condition_dim=condition_dim,
                embedding_dim=embedding_dim, hidden_dim=hidden_dim,
            )
            for key, group in self.by_shape.items()
        })
        # name -> (its shape's key, index among them): ``per_sample`` hands each layer its factors
        self.where = {layer.name: (key, i) for key, group in self.by_shape.items() for i, layer in enumerate(group)}
        if num_tasks is not None:
            self.task_embeddings = nn.Parameter(torch.randn(num_tasks, condition_dim))

    def forward(self, condition: Tensor | None = None) -> dict[str, Tensor]:
        """``{name: W₀ + ΔW}``; given a ``(B, c)`` condition, each weight is ``(B, *shape)``."""
        if condition is None:
            raise ValueError("condition: HyperLoRA's adapters depend on a condition; pass one (see hyper/condition.py)")
        weights: dict[str, Tensor] = {}
        for key, group in self.by_shape.items():
            a, b = self.generators[key](condition)
            for i, layer in enumerate(group):
                weights[layer.name] = self.adapted(layer, a[..., i, :, :], b[..., i, :, :])
        return weights

    def per_sample(self, condition: Tensor, factorized: frozenset[str]) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
        """For a ``(B, c)`` condition: weight sets ``(B, *shape)`` of the layers not in
        ``factorized``, and per shape the factors (A, B flattened), which ``linear_per_sample``
        applies to the factorized layers without making their weights."""
        factors = {key: torch.cat([f.flatten(-2) for f in generator(condition)], dim=-1) for key, generator in self.generators.items()}
        weights = {}
        for key, group in self.by_shape.items():
            for i, layer in enumerate(group):
                if layer.name not in factorized:
                    a, b = self._split(key, factors[key])
                    weights[layer.name] = self.adapted(layer, a[..., i, :, :], b[..., i, :, :])
        return weights, factors

    def _split(self, key: str, factors: Tensor) -> tuple[Tensor, Tensor]:
        generator = self.generators[key]
        a, b = factors.split([generator.rank * generator.columns, generator.rank * generator.rows], dim=-1)
        return a.unflatten(-1, (generator.rank, generator.columns)), b.unflatten(-1, (generator.rows, generator.rank))

    def linear_per_sample(self, name: str, x: Tensor, factors: Tensor) -> Tensor:
        """x·W₀ᵀ + (α / r)·(x·Aᵀ)·Bᵀ: the adapted linear layer, one sample's factors, no W made."""
        key, index = self.where[name]
        a, b = self._split(key, factors)
        a, b = a[index], b[index]  # (r, in), (out, r)
        return F.linear(x, self.base[name.replace(".", "__")]) + self.scale * F.linear(F.linear(x, a), b)

    def parameter_parts(self) -> dict[str, int]:
        parts = {
            "layer embeddings": sum(g.embeddings.numel() for g in self.generators.values()),
            "adapter generator": sum(p.numel() for g in self.generators.values() for n, p in g.named_parameters() if n != "embeddings"),
        }
        if self.num_tasks is not None:
            parts["task embeddings"] = self.task_embeddings.numel()
        return parts


class DirectLoRAWeights(AdaptedWeights):
    """W₀ + (α / r)·B·A per selected weight with A and B trained directly: plain LoRA, the
    baseline a generated adapter is measured against (one such per task).

    Args:
        layers: the selected layers of the base model.
        rank, alpha: see ``LoRA``.
    """

    def __init__(self, layers: Sequence[GeneratedLayer], *, rank: int, alpha: float) -> None:
        super().__init__(layers, scale=alpha / rank)
        shapes = [_matrix(layer) for layer in layers]
        self.a = nn.ParameterList(nn.Parameter(torch.randn(rank, cols) / math.sqrt(cols)) for _, cols in shapes)
        self.b = nn.ParameterList(nn.Parameter(torch.zeros(rows, rank)) for rows, _ in shapes)  # starts at W₀

    def forward(self) -> dict[str, Tensor]:
        return {layer.name: self.adapted(layer, a, b) for layer, a, b in zip(self.layers, self.a, self.b)}

    def parameter_parts(self) -> dict[str, int]:
        return {"LoRA factors": sum(p.numel() for p in [*self.a, *self.b])}


@dataclass(frozen=True)
class LoRA(SourceSpec):
    """Plain LoRA (Hu et al., 2021) on a frozen base model: W₀ + (α / r)·B·A, A and B trained.

    Args:
        rank: r, the adapters' rank.
        alpha: the adapter is scaled by α / r (default α = r: unscaled).
    """

    rank: int = 4
    alpha: float | None = None
    name = "lora"

    def __post_init__(self) -> None:
        check_positive("rank", self.rank)
        if self.alpha is not None and not (isinstance(self.alpha, (int, float)) and self.alpha > 0):
            raise ValueError(f"alpha must be a positive number, got {self.alpha!r}")

    def build(self, layers: Sequence[GeneratedLayer]) -> WeightSource:
        _check_rank(layers, self.rank)
        return DirectLoRAWeights(layers, rank=self.rank, alpha=float(self.rank if self.alpha is None else self.alpha))


def _check_rank(layers: Sequence[GeneratedLayer], rank: int) -> None:
    for layer in layers:
        if rank > min(_matrix(layer)):
            raise ValueError(f"rank must be at most {min(_matrix(layer))} for {layer.name} of shape {layer.shape}, got {rank}")


@dataclass(frozen=True)
class HyperLoRA(SourceSpec):
    """Generated LoRA adapters on a frozen base model, one per condition or task.

    ``wrap(base, HyperLoRA(rank=4, num_tasks=3), include=...)``: the selected weights become
    W₀ + (α / r)·B·A with A and B generated from the task's (or your condition's) vector; the base
    model is frozen and only the hypernetwork trains. ``materialize(model, task=t)`` bakes task
    t's adapters into a plain copy of the base.

    Args:
        rank: r, the adapters' rank.
        alpha: LoRA's α: the adapter is scaled by α / r (α = r: unscaled).
        condition_dim: c, the condition's size (default ``embedding_dim`` when ``num_tasks`` is set).
        num_tasks: T learned task embeddings (then ``task=t`` is the condition).
        embedding_dim: size of each adapted layer's learned embedding.
        hidden_dim: the adapter generator's hidden size.
    """

    rank: int = 4
    alpha: float | None = None
    condition_dim: int | None = None
    num_tasks: int | None = None
    embedding_dim: int = 16
    hidden_dim: int = 64
    name = "hyperlora"

    def __post_init__(self) -> None:
        check_positive("rank", self.rank)
        check_positive("embedding_dim", self.embedding_dim)
        check_positive("hidden_dim", self.hidden_dim)
        if self.condition_dim is None and self.num_tasks is None:
            raise ValueError("condition_dim or num_tasks: HyperLoRA makes adapters from a condition; give its size or a number of tasks")
        if self.condition_dim is not None:
            check_positive("condition_dim", self.condition_dim)
        if self.num_tasks is not None:
            check_positive("num_tasks", self.num_tasks)
        if self.alpha is not None and not (isinstance(self.alpha, (int, float)) and self.alpha > 0):
            raise ValueError(f"alpha must be a positive number, got {self.alpha!r}")

    def build(self, layers: Sequence[GeneratedLayer]) -> WeightSource:
        _check_rank(layers, self.rank)
        return LoRAWeights(
            layers,
            rank=self.rank,
            alpha=float(self.rank if self.alpha is None else self.alpha),
            condition_dim=self.condition_dim or self.embedding_dim,
            num_tasks=self.num_tasks,
            embedding_dim=self.embedding_dim,
            hidden_dim=self.hidden_dim,
        )
