"""Named presets of the WRN family, in the style of timm: ``create_model(name, **overrides)``.

Names read ``[hyper_|tied_]wrn{depth}_{width}``: the plain network, the paper's hypernetwork,
or the fully tied one (one weight set per stage, an RNN in depth). A plain preset takes
``source=`` to put any other weight source on its block convs:
``create_model("wrn40_1", source=LowRank(rank=2))``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from torch import nn

from hyper import Tied
from models.wide_resnet import HyperResNet, wide_resnet

ARCHITECTURES: dict[str, dict[str, int]] = {
    "wrn10_1": dict(depth=10, width=1),
    "wrn16_1": dict(depth=16, width=1),
    "wrn16_2": dict(depth=16, width=2),
    "wrn16_4": dict(depth=16, width=4),
    "wrn28_10": dict(depth=28, width=10),
    "wrn40_1": dict(depth=40, width=1),
    "wrn40_2": dict(depth=40, width=2),
    "wrn40_4": dict(depth=40, width=4),
}


def _plain(arch: str) -> Callable[..., nn.Module]:
    def build(**overrides: Any) -> nn.Module:
        return wide_resnet(**{**ARCHITECTURES[arch], **overrides})

    return build


def _hyper(arch: str) -> Callable[..., nn.Module]:
    def build(**overrides: Any) -> nn.Module:
        return HyperResNet(**{**ARCHITECTURES[arch], **overrides})

    return build


def _tied(arch: str) -> Callable[..., nn.Module]:
    def build(**overrides: Any) -> nn.Module:
        return wide_resnet(**{**ARCHITECTURES[arch], "source": Tied(tying_groups=1), **overrides})

    return build


MODELS: dict[str, Callable[..., nn.Module]] = {}
for _arch in ARCHITECTURES:
    MODELS[_arch] = _plain(_arch)
    MODELS[f"hyper_{_arch}"] = _hyper(_arch)
    MODELS[f"tied_{_arch}"] = _tied(_arch)

# The paper's four models (Table 2), importable by name.
wrn40_1 = MODELS["wrn40_1"]
wrn40_2 = MODELS["wrn40_2"]
hyper_wrn40_1 = MODELS["hyper_wrn40_1"]
hyper_wrn40_2 = MODELS["hyper_wrn40_2"]


def list_models() -> list[str]:
    """Every name ``create_model`` accepts."""
    return sorted(MODELS)


def create_model(name: str, **overrides: Any) -> nn.Module:
    """Build a named preset; keyword arguments override its defaults.

    Example: ``create_model("hyper_wrn40_1", embedding_dim=32, num_classes=100)``.
    """
    if name not in MODELS:
        raise ValueError(f"model must be one of {list_models()}, got {name!r}")
    return MODELS[name](**overrides)
