"""The one interface every weight source shares, so all are built, counted and swept alike.

A ``SourceSpec`` is a small frozen configuration (what a user writes, what a sweep varies, what a
report prints). ``spec.build(layers)`` turns it into a ``WeightSource``: the module that owns the
parameters and, on each call, yields the generated weights keyed by the target's parameter names.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from torch import Tensor, nn

from hyper.layers import GeneratedLayer


class WeightSource(nn.Module):
    """Yields the target's generated weights.

    Args:
        layers: the generated layers of the target.
    """

    condition_dim: int | None = None  # a conditional source's condition size (hyper/condition.py)
    num_tasks: int | None = None  # a task-conditional source's number of task embeddings

    def __init__(self, layers: Sequence[GeneratedLayer]) -> None:
        super().__init__()
        self.layers = tuple(layers)

    @property
    def provides(self) -> tuple[str, ...]:
        """Names of the target parameters this source replaces (removed from the target)."""
        return tuple(layer.name for layer in self.layers)

    def forward(self) -> dict[str, Tensor]:
        """All generated weights, ``{target parameter name: weight}``."""
        raise NotImplementedError

    def parameter_parts(self) -> dict[str, int]:
        """Trainable parameters of this source, by part (for the accounting table)."""
        return {"direct weights": sum(p.numel() for p in self.parameters() if p.requires_grad)}


class SourceSpec:
    """Base of the weight-source configurations (frozen dataclasses).

    Subclasses set ``name`` and implement ``build``.
    """

    name: str = "source"

    @property
    def tile(self) -> int:
        """Channels (in and out) of the unit this source generates; 1: any shape will do."""
        return 1

    def build(self, layers: Sequence[GeneratedLayer]) -> WeightSource:
        raise NotImplementedError

    def knobs(self) -> dict[str, object]:
        """The configuration's fields, e.g. ``{"embedding_dim": 64, ...}``."""
        return dataclasses.asdict(self) if dataclasses.is_dataclass(self) else {}


def check_positive(name: str, value: object) -> None:
    """Raise ValueError unless ``value`` is a positive integer."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
