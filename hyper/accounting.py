"""Parameter accounting: trainable, plain-equivalent, compression ratio, and where they sit.

- trainable: every parameter that trains, generator, embeddings and the layers that are not
  generated (stem, shortcuts, norms, classifier) alike;
- plain-equivalent: the same target with every weight a direct parameter; for a source with T
  task embeddings (``Hyper(num_tasks=T)``), T such networks: what a user of T tasks would train
  without the hypernetwork;
- compression ratio: plain-equivalent ÷ trainable;
- size in bytes: what storing the parameters takes at the precision each is kept in
  (``hyper.storage``), and byte compression: fp32 bytes of the plain-equivalent ÷ that size.

For pruned networks (``nonzero=True``) trainable counts the non-zero entries of the effective
weights: a weight under a ``torch.nn.utils.prune`` mask counts ``weight_orig * weight_mask``.
"""

from __future__ import annotations

import re
import reprlib
from dataclasses import dataclass, field

from torch import nn

from hyper.network import GeneratedNetwork
from hyper.storage import FP32_BYTES, size_bytes


@dataclass(frozen=True)
class ParameterCount:
    """A model's parameter accounting.

    Args:
        trainable: parameters that train.
        plain_equivalent: parameters of the plain network with the same target.
        breakdown: trainable parameters by part; the parts add up to ``trainable``.
        size_bytes: bytes that storing the parameters takes, each in its format (``hyper.storage``).
    """

    trainable: int
    plain_equivalent: int
    breakdown: dict[str, int] = field(default_factory=dict)
    size_bytes: int = 0

    @property
    def compression_ratio(self) -> float:
        return self.plain_equivalent / self.trainable if self.trainable else float("inf")

    @property
    def compression_bytes(self) -> float:
        """fp32 bytes of the plain-equivalent network ÷ ``size_bytes``."""
        return FP32_BYTES * self.plain_equivalent / self.size_bytes if self.size_bytes else float("inf")

    def as_dict(self) -> dict[str, object]:
        return {
            "trainable": self.trainable,
            "plain_equivalent": self.plain_equivalent,
            "compression_ratio": self.compression_ratio,
            "size_bytes": self.size_bytes,
            "compression_bytes": self.compression_bytes,
            "breakdown": dict(self.breakdown),
        }

    def table(self) -> str:
        """The accounting as an aligned text table."""
        rows = [(part, f"{n:,}") for part, n in self.breakdown.items()]
        rows += [
            ("trainable", f"{self.trainable:,}"),
            ("plain-equivalent", f"{self.plain_equivalent:,}"),
            ("compression ratio", f"{self.compression_ratio:.2f}x"),
            ("size (bytes)", f"{self.size_bytes:,}"),
            ("byte compression", f"{self.compression_bytes:.2f}x"),
        ]
        width = max(len(part) for part, _ in rows)
        value_width = max(len(value) for _, value in rows)
        lines = [f"{part:<{width}}  {value:>{value_width}}" for part, value in rows]
        rule = "-" * (width + 2 + value_width)
        parts = len(self.breakdown)
        return "\n".join(lines[:parts] + [rule] + lines[parts:])


def count_parameters(model: nn.Module, *, nonzero: bool = False) -> ParameterCount:
    """Count ``model``'s parameters; any nn.Module works (a plain one has ratio 1).

    Generated networks are found anywhere inside ``model`` (a ``StaticHyperLSTM`` core inside a
    character model counts as generated, its embedding and head as not generated).

    Args:
        model: the model.
        nonzero: count only non-zero trainable entries (magnitude-pruned networks).
    """
    if not isinstance(model, nn.Module):
        given = f"the class {model.__name__}" if isinstance(model, type) else reprlib.repr(model)
        raise TypeError(f"model must be an nn.Module (an instance) to count, got {given}")
    if nonzero:
        return _count_nonzero(model)
    generated = [m for m in model.modules() if isinstance(m, GeneratedNetwork)]
    layer_names = {id(p) for g in generated for p in _generated_in_target(g)}
    breakdown: dict[str, int] = {}
    for network in generated:
        for part, n in network.source.parameter_parts().items():
            breakdown[part] = breakdown.get(part, 0) + n
    sources = {id(p) for g in generated for p in g.source.parameters()}
    rest = [p for p in model.parameters() if p.requires_grad and id(p) not in sources]
    if not generated:
        breakdown["direct weights"] = sum(p.numel() for p in rest)
    else:
        direct = sum(p.numel() for p in rest if id(p) in layer_names)  # the plain source's layers
        if direct:
            breakdown["direct weights"] = breakdown.get("direct weights", 0) + direct
        breakdown["not generated"] = sum(p.numel() for p in rest if id(p) not in layer_names)
    removed = sum(_removed(g) for g in generated)
    plain = sum(p.numel() for p in model.parameters() if id(p) not in sources) + removed
    plain *= max([g.source.num_tasks or 1 for g in generated], default=1)
    return ParameterCount(_trainable(model), plain, breakdown, size_bytes(model))


def _generated_in_target(network: GeneratedNetwork) -> list[nn.Parameter]:
    """The generated layers' weights that still sit in the target (the plain source's)."""
    in_target = _named_parameters(network.target)
    return [in_target[layer.name] for layer in network.layers if layer.name in in_target]


def _removed(network: GeneratedNetwork) -> int:
    """Weights the source replaced: removed from the target, still plain-equivalent."""
    in_target = _named_parameters(network.target)
    return sum(layer.numel for layer in network.layers if layer.name not in in_target)


def _named_parameters(module: nn.Module) -> dict[str, nn.Parameter]:
    """Parameters by name, a pruned ``weight_orig`` and a parametrized (quantised)
    ``parametrizations.weight.original`` under their own name ``weight``."""
    masks = {name for name, _ in module.named_buffers() if name.endswith("_mask")}
    named = {}
    for name, p in module.named_parameters():
        if name.removesuffix("_orig") + "_mask" in masks:
            name = name.removesuffix("_orig")
        named[re.sub(r"(^|\.)parametrizations\.(\w+)\.original$", r"\1\2", name)] = p
    return named


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
    return ParameterCount(kept, plain, {"non-zero weights": kept}, size_bytes(model))
