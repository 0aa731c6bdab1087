"""Parameter accounting: trainable, plain-equivalent, compression ratio, and where they sit.

- trainable: every parameter that trains, generator, embeddings and the layers that are not
  generated (stem, shortcuts, norms, classifier) alike;
- plain-equivalent: the same target with every weight a direct parameter;
- compression ratio: plain-equivalent ÷ trainable.

For pruned networks (``nonzero=True``) trainable counts the non-zero entries of the effective
weights: a weight under a ``torch.nn.utils.prune`` mask counts ``weight_orig * weight_mask``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from torch import nn

from hyper.network import GeneratedNetwork


@dataclass(frozen=True)
class ParameterCount:
    """A model's parameter accounting.

    Args:
        trainable: parameters that train.
        plain_equivalent: parameters of the plain network with the same target.
        breakdown: trainable parameters by part; the parts add up to ``trainable``.
    """

    trainable: int
    plain_equivalent: int
    breakdown: dict[str, int] = field(default_factory=dict)

    @property
    def compression_ratio(self) -> float:
        return self.plain_equivalent / self.trainable if self.trainable else float("inf")

    def as_dict(self) -> dict[str, object]:
        return {
            "trainable": self.trainable,
            "plain_equivalent": self.plain_equivalent,
            "compression_ratio": self.compression_ratio,
            "breakdown": dict(self.breakdown),
        }

    def table(self) -> str:
        """The accounting as an aligned text table."""
        rows = [(part, f"{n:,}") for part, n in self.breakdown.items()]
        rows += [
            ("trainable", f"{self.trainable:,}"),
            ("plain-equivalent", f"{self.plain_equivalent:,}"),
            ("compression ratio", f"{self.compression_ratio:.2f}x"),
        ]
        width = max(len(part) for part, _ in rows)
        value_width = max(len(value) for _, value in rows)
        lines = [f"{part:<{width}}  {value:>{value_width}}" for part, value in rows]
        rule = "-" * (width + 2 + value_width)
        parts = len(self.breakdown)
        return "\n".join(lines[:parts] + [rule] + lines[parts:])


def count_parameters(model: nn.Module, *, nonzero: bool = False) -> ParameterCount:
    """Count ``model``'s parameters; any nn.Module works (a plain one has ratio 1).

    Args:
        model: the model.
        nonzero: count only non-zero trainable entries (magnitude-pruned networks).
    """
    if nonzero:
        return _count_nonzero(model)
    trainable = _trainable(model)
    if not isinstance(model, GeneratedNetwork):
        total = sum(p.numel() for p in model.parameters())
        return ParameterCount(trainable, total, {"direct weights": trainable})
    generated = {layer.name for layer in model.layers}
    breakdown = dict(model.source.parameter_parts())
    in_target = _named_parameters(model.target)
    direct = sum(p.numel() for name, p in in_target.items() if name in generated and p.requires_grad)
    if direct:
        breakdown["direct weights"] = breakdown.get("direct weights", 0) + direct
    breakdown["not generated"] = sum(
        p.numel() for name, p in in_target.items() if name not in generated and p.requires_grad
    )
    removed = sum(layer.numel for layer in model.layers if layer.name not in in_target)
    plain = sum(p.numel() for p in in_target.values()) + removed
    return ParameterCount(trainable, plain, breakdown)


def _named_parameters(module: nn.Module) -> dict[str, nn.Parameter]:
    """Parameters by name, a pruned ``weight_orig`` under its own name ``weight``."""
    masks = {name for name, _ in module.named_buffers() if name.endswith("_mask")}
    return {
        name.removesuffix("_orig") if name.removesuffix("_orig") + "_mask" in masks else name: p
        for name, p in module.named_parameters()
    }


def _trainable(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def _count_nonzero(model: nn.Module) -> ParameterCount:
    buffers = dict(model.named_buffers())
    kept, total = 0, 0
    for name, p in model.named_parameters():
        mask = buffers.get(name.removesuffix("_orig") + "_mask") if name.endswith("_orig") else None
        effective = p.detach() if mask is None else p.detach() * mask
        total += p.numel()
        kept += int(effective.count_nonzero()) if p.requires_grad else 0
    plain = count_parameters(model).plain_equivalent
    return ParameterCount(kept, plain, {"non-zero weights": kept})
