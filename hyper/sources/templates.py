"""Template mixing (Savarese & Maire, 2019): each kernel is a learned mix of k shared templates.

Layers of one stage and shape draw on one bank of k templates T_1..T_k; layer l's kernel is
Σ_j α_lj T_j with its own k coefficients. Parameters: k · (kernel size) per bank plus k per layer.
Initialisation: templates Kaiming-normal, each layer's α a unit vector (orthonormal across the
layers of a bank while they are at most k), so every mix starts with the Kaiming variance.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from hyper.layers import GeneratedLayer
from hyper.sources.base import SourceSpec, WeightSource, check_positive


class TemplateWeights(WeightSource):
    """Kernels mixed from per-(stage, shape) template banks.

    Args:
        layers: the generated layers of the target.
        num_templates: k, templates per bank.
    """

    def __init__(self, layers: Sequence[GeneratedLayer], *, num_templates: int) -> None:
        super().__init__(layers)
        banks: dict[tuple, list[GeneratedLayer]] = {}
        for layer in layers:
            banks.setdefault((layer.stage, layer.shape), []).append(layer)
        self.banks = list(banks.values())
        self.templates = nn.ParameterList(
            nn.Parameter(torch.randn(num_templates, *bank[0].shape) * bank[0].init_std)
            for bank in self.banks
        )
        self.coefficients = nn.ParameterList(
            nn.Parameter(_unit_rows(len(bank), num_templates)) for bank in self.banks
        )

    def forward(self) -> dict[str, Tensor]:
        weights: dict[str, Tensor] = {}
        for bank, templates, alpha in zip(self.banks, self.templates, self.coefficients):
            kernels = torch.einsum("lj,j...->l...", alpha, templates)  # (layers, out, in, *kernel)
            weights.update((layer.name, kernel) for layer, kernel in zip(bank, kernels))
        return weights

    def parameter_parts(self) -> dict[str, int]:
        return {
            "templates": sum(p.numel() for p in self.templates),
            "coefficients": sum(p.numel() for p in self.coefficients),
        }


def _unit_rows(rows: int, columns: int) -> Tensor:
    alpha = torch.empty(rows, columns)
    nn.init.orthogonal_(alpha)
    return F.normalize(alpha, dim=1)


@dataclass(frozen=True)
class Templates(SourceSpec):
    """Template mixing: each stage's kernels are learned mixes of k shared templates.

    Args:
        num_templates: k, templates per stage (and kernel shape).
    """

    num_templates: int = 4
    name = "templates"

    def __post_init__(self) -> None:
        check_positive("num_templates", self.num_templates)

    def build(self, layers: Sequence[GeneratedLayer]) -> WeightSource:
        return TemplateWeights(layers, num_templates=self.num_templates)
