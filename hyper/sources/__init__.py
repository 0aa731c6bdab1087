"""Weight sources: everything that yields a target's generated weights, behind one interface."""

from __future__ import annotations

import dataclasses

from hyper.sources.base import SourceSpec, WeightSource
from hyper.sources.dct import DCT, DCTWeights
from hyper.sources.direct import Plain, PlainWeights, Tied, TiedWeights
from hyper.sources.hyper import Hyper, HyperWeights
from hyper.sources.lora import LoRA, DirectLoRAWeights, HyperLoRA, LoRAWeights
from hyper.sources.lowrank import LowRank, LowRankWeights
from hyper.sources.templates import Templates, TemplateWeights

# Names a command line or a factory may use for a source; each maps to its spec class.
SOURCES: dict[str, type[SourceSpec]] = {
    "hyper": Hyper,
    "plain": Plain,
    "tied": Tied,
    "lowrank": LowRank,
    "templates": Templates,
    "dct": DCT,
}
# Not among them: the adapters (``LoRA``, ``HyperLoRA``) change a frozen base model's weights
# rather than making a network's weights in fewer parameters, so they are not compression points.


def source_from_name(name: str, **knobs: object) -> SourceSpec:
    """Build a source spec from its name, e.g. ``source_from_name("hyper", embedding_dim=32)``."""
    if name not in SOURCES:
        raise ValueError(f"source must be one of {sorted(SOURCES)}, got {name!r}")
    spec = SOURCES[name]
    known = [field.name for field in dataclasses.fields(spec)] if dataclasses.is_dataclass(spec) else list(knobs)
    unknown = [knob for knob in knobs if knob not in known]
    if unknown:
        raise TypeError(f"source {name!r} has no knob {unknown[0]!r}; its knobs: {', '.join(known) or 'none'}")
    return spec(**knobs)


__all__ = [
    "DCT",
    "DCTWeights",
    "SOURCES",
    "Hyper",
    "HyperLoRA",
    "HyperWeights",
    "LoRA",
    "LoRAWeights",
    "DirectLoRAWeights",
    "LowRank",
    "LowRankWeights",
    "Plain",
    "PlainWeights",
    "SourceSpec",
    "TemplateWeights",
    "Templates",
    "Tied",
    "TiedWeights",
    "WeightSource",
    "source_from_name",
]
