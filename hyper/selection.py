"""Which weights of a module ``wrap`` generates, and where each sits (stage, block, role, gain).

Selectors name weights three ways: a module type (``nn.Linear``: the ``weight`` of every module of
that type), a glob over parameter names (``"layer*.conv?.weight"``, ``"blocks.*.mlp.*"``; only
tensors of two or more axes, so a broad glob never picks a bias or a norm's gain), or a predicate
``(name, parameter) -> bool``. The default is every ``weight`` of ``nn.Conv1d/2d/3d`` and
``nn.Linear``. A parameter shared under several names (tied input and output embeddings) is never
generated: it would be generated once but counted and stored twice.
"""

from __future__ import annotations

import fnmatch
import math
from collections.abc import Callable, Iterator, Sequence
from typing import Union

from torch import nn

from hyper.layers import GeneratedLayer
from hyper.structure import Structure, placer

CONVS = (nn.Conv1d, nn.Conv2d, nn.Conv3d)
DEFAULT_TYPES = (*CONVS, nn.Linear)

Predicate = Callable[[str, nn.Parameter], bool]
Selector = Union[str, type[nn.Module], Predicate]
# Globs first: a config's list of globs then reads and saves as a plain list of strings.
Selectors = Union[str, Sequence[str], type[nn.Module], Predicate, Sequence[Selector]]
Gain = Union[float, str, Callable[[str], float]]

# (full parameter name, the parameter, the module that owns it)
Candidate = tuple[str, nn.Parameter, nn.Module]


def select_layers(
    module: nn.Module,
    *,
    tile: int = 1,
    include: Selectors | None = None,
    exclude: Selectors | None = None,
    structure: Structure | None = None,
    pad: bool = False,
    gain: Gain | None = None,
) -> list[GeneratedLayer]:
    """The generated layers of ``module``, in the module's own order (see ``hyper.wrap``)."""
    candidates = list(_candidates(module))
    if include is None:
        chosen = [c for c in candidates if isinstance(c[2], DEFAULT_TYPES) and _short(c[0]) == "weight"]
    else:
        chosen = _matching(candidates, include, "include", module)
    if exclude is not None:
        dropped = {c[0] for c in _matching(chosen, exclude, "exclude", module)}
        chosen = [c for c in chosen if c[0] not in dropped]
    chosen = _tileable(chosen, tile, pad, strict=include is not None)
    place = placer(structure)
    return [
        GeneratedLayer(name, tuple(p.shape), *place(name), gain=_gain(gain, name, owner))
        for name, p, owner in chosen
    ]


def _candidates(module: nn.Module) -> Iterator[Candidate]:
    """Every parameter of two or more axes that appears under exactly one name."""
    counts: dict[int, int] = {}
    for _, p in module.named_parameters(remove_duplicate=False):
        counts[id(p)] = counts.get(id(p), 0) + 1
    for prefix, owner in module.named_modules():
        for short, p in owner.named_parameters(recurse=False):
            if p.dim() >= 2 and counts[id(p)] == 1:
                yield (f"{prefix}.{short}" if prefix else short), p, owner


def _short(name: str) -> str:
    """The parameter's own name within its module: ``weight`` of ``layer1.0.conv1.weight``."""
    return name.rsplit(".", 1)[-1]


def _as_list(selectors: Selectors) -> list[Selector]:
    if isinstance(selectors, (str, type)) or callable(selectors):
        return [selectors]
    return list(selectors)


def _check_selector(selector: Selector, argument: str) -> None:
    if isinstance(selector, type):
        if not issubclass(selector, nn.Module):
            raise ValueError(f"{argument} types must be nn.Module classes, got {selector!r}")
    elif not isinstance(selector, str) and not callable(selector):
        raise ValueError(
            f"{argument} takes module types, name globs or predicates (name, parameter) -> bool, got {selector!r}"
        )


def _matches(selector: Selector, candidate: Candidate) -> bool:
    name, p, owner = candidate
    if isinstance(selector, type):
        return isinstance(owner, selector) and _short(name) == "weight"
    if isinstance(selector, str):
        return fnmatch.fnmatchcase(name, selector)
    return bool(selector(name, p))


def _matching(candidates: list[Candidate], selectors: Selectors, argument: str, module: nn.Module) -> list[Candidate]:
    selectors = _as_list(selectors)
    for selector in selectors:
        _check_selector(selector, argument)
    chosen = [c for c in candidates if any(_matches(s, c) for s in selectors)]
    if not chosen:
        names = [c[0] for c in candidates]
        shown = ", ".join(names[:6]) + (", ..." if len(names) > 6 else "")
        raise ValueError(
            f"{argument} matches no weight of {type(module).__name__} ({selectors!r}); "
            f"its weights are: {shown or 'none'}"
        )
    return chosen


def _tileable(chosen: list[Candidate], tile: int, pad: bool, *, strict: bool) -> list[Candidate]:
    """The candidates whose out- and in-channels the tile divides (all of them with ``pad``).

    By default the others are left direct; weights the user named (``strict``) must all fit.
    """
    if pad or tile == 1:
        return chosen
    fits = [c[1].shape[0] % tile == 0 and c[1].shape[1] % tile == 0 for c in chosen]
    kept = [c for c, fit in zip(chosen, fits) if fit]
    misfits = [c for c, fit in zip(chosen, fits) if not fit]
    if strict and misfits:
        name, p, _ = misfits[0]
        raise ValueError(
            f"tile_channels={tile} must divide the in- and out-channels of every included weight; "
            f"{name} has shape {tuple(p.shape)} ({len(misfits)} such): pass pad=True to generate them "
            "padded and cropped, exclude them, or choose a smaller tile_channels"
        )
    if chosen and not kept:
        name, p, _ = chosen[0]
        raise ValueError(
            f"tile_channels={tile} divides the in- and out-channels of none of the {len(chosen)} selected "
            f"weights (e.g. {name} {tuple(p.shape)}): pass pad=True to generate them padded and cropped, "
            "or choose a smaller tile_channels"
        )
    return kept


def _gain(gain: Gain | None, name: str, owner: nn.Module) -> float:
    """The layer's initialisation gain: Kaiming's sqrt(2) for convs, 1 for the rest by default."""
    if gain is None:
        return math.sqrt(2.0) if isinstance(owner, CONVS) else 1.0
    if isinstance(gain, str):
        try:
            return float(nn.init.calculate_gain(gain))
        except ValueError:
            raise ValueError(
                f"gain must be a number, a nonlinearity name (relu, linear, tanh, leaky_relu, selu, ...) "
                f"or a callable name -> number, got {gain!r}"
            ) from None
    value = gain(name) if callable(gain) else gain
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise ValueError(f"gain must be a positive number, got {value!r}" + (f" for {name}" if callable(gain) else ""))
    return float(value)
