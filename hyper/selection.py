"""Which weights of a module ``wrap`` generates, and where each sits (stage, block, role, gain).

Selectors name weights three ways: a module type (``nn.Linear``: the ``weight`` of every module of
that type), a glob over parameter names (``"layer*.conv?.weight"``, ``"blocks.*.mlp.*"``; only
tensors of two or more axes, so a broad glob never picks a bias or a norm's gain), or a predicate
``(name, parameter) -> bool``. The default is every ``weight`` of ``nn.Conv1d/2d/3d``,
``nn.Linear`` and Hugging Face's ``Conv1D``, the weight matrices of ``nn.LSTM/GRU/RNN`` and
``nn.MultiheadAttention``'s input projections. A parameter shared under several names (tied input and output embeddings) is never
generated: it would be generated once but counted and stored twice. Weights with no entries (a
``nn.Linear(0, n)``) are never generated either. A selection that leaves nothing to generate is
refused, with the reason.
"""

from __future__ import annotations

import fnmatch
import re
import inspect
import math
from collections.abc import Callable, Iterable, Iterator, Sequence
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

# The attribute by which a module declares the weights ``wrap`` generates when given no include:
# selectors as ``include`` takes them (the shipped families: WideResNet's block convs, ...).
DEFAULT_INCLUDE = "default_include"

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
    _refuse_lazy(module)
    candidates = list(_candidates(module))
    if include is None:  # a module may say which of its weights a hypernetwork generates
        include = getattr(module, DEFAULT_INCLUDE, None)
    if include is None:
        chosen = _by_default(candidates, module)
    else:
        chosen = _matching(candidates, include, "include", module)
    if exclude is not None:
        chosen = _excluding(chosen, exclude, module)
    if include is not None:
        _refuse_empty(chosen)
    chosen = _tileable(chosen, tile, pad, strict=include is not None)
    place = placer(structure)
    return [
        GeneratedLayer(name, tuple(p.shape), *place(name), gain=_gain(gain, name, owner), transposed=_is_conv1d(owner))
        for name, p, owner in chosen
    ]


def _candidates(module: nn.Module, *, shared: bool = False) -> Iterator[Candidate]:
    """Every parameter of two or more axes that appears under exactly one name (``shared``: every
    name of those that appear under several)."""
    counts: dict[int, int] = {}
    for _, p in module.named_parameters(remove_duplicate=False):
        counts[id(p)] = counts.get(id(p), 0) + 1
    for prefix, owner in module.named_modules(remove_duplicate=not shared):
        for short, p in owner.named_parameters(recurse=False):
            if p.dim() >= 2 and (counts[id(p)] > 1) == shared:
                yield (f"{prefix}.{short}" if prefix else short), p, owner


def _refuse_lazy(module: nn.Module) -> None:
    lazy = [name for name, p in module.named_parameters() if nn.parameter.is_lazy(p)]
    if lazy:
        raise ValueError(
            f"{type(module).__name__} has parameters a lazy module has not created yet ({lazy[0]}): "
            "run one batch through it before wrap, so that their shapes are known"
        )


def _by_default(candidates: list[Candidate], module: nn.Module) -> list[Candidate]:
    """Every default weight (``_default_weight``) with entries; ValueError, with why, when none."""
    typed = [c for c in candidates if _default_weight(c[0], c[2])]
    chosen = [c for c in typed if c[1].numel() > 0]
    if chosen:
        return chosen
    if typed:
        reason = f"its conv and linear weights have no entries ({typed[0][0]} {tuple(typed[0][1].shape)})"
    else:
        reason = (
            "it has no conv, linear, recurrent or attention weight (nn.Conv1d/2d/3d, nn.Linear, Conv1D, "
            "nn.LSTM/GRU/RNN, nn.MultiheadAttention: the default selection)"
        )
    others = [c for c in candidates if c[0] not in {name for name, _, _ in typed}]
    hint = f"; choose among its other weights with include= ({_shown(others)})" if others else ", nor any other weight"
    raise ValueError(f"nothing selected to generate in {type(module).__name__}: {reason}{hint}")


def _excluding(chosen: list[Candidate], exclude: Selectors, module: nn.Module) -> list[Candidate]:
    dropped = {c[0] for c in _matching(chosen, exclude, "exclude", module)}
    kept = [c for c in chosen if c[0] not in dropped]
    if not kept:
        raise ValueError(
            f"nothing selected to generate: exclude={exclude!r} leaves out every selected weight of "
            f"{type(module).__name__} ({_shown(chosen)})"
        )
    return kept


def _refuse_empty(chosen: list[Candidate]) -> None:
    empty = [c for c in chosen if c[1].numel() == 0]
    if empty:
        name, p, _ = empty[0]
        raise ValueError(
            f"include selects {name} of shape {tuple(p.shape)}, which has no entries ({len(empty)} such): "
            "there is nothing to generate; leave it out (exclude=)"
        )


def _shown(candidates: list[Candidate]) -> str:
    names = [c[0] for c in candidates]
    return ", ".join(names[:6]) + (", ..." if len(names) > 6 else "") or "none"


def _is_conv1d(owner: nn.Module) -> bool:
    """Hugging Face's ``Conv1D`` (GPT-2's linear layers, weight stored (in, out)), by duck type:
    the project does not depend on transformers."""
    return type(owner).__name__ == "Conv1D" and hasattr(owner, "nf")


def _default_type(owner: nn.Module) -> bool:
    return isinstance(owner, DEFAULT_TYPES) or _is_conv1d(owner)


# The weight matrices of the recurrent and attention layers torch ships, by their own names:
# nn.LSTM/GRU/RNN's input, hidden and projection matrices per layer and direction, and
# nn.MultiheadAttention's packed (or separate q/k/v) input projection; its output projection is
# an nn.Linear.
_RECURRENT = re.compile(r"weight_(ih|hh|hr)_l\d+(_reverse)?")
_ATTENTION = ("in_proj_weight", "q_proj_weight", "k_proj_weight", "v_proj_weight")


def _default_weight(name: str, owner: nn.Module) -> bool:
    """Whether the default selection takes this weight: conv and linear weights (and GPT-2's
    Conv1D), the matrices of nn.LSTM/GRU/RNN, nn.MultiheadAttention's input projections."""
    short = _short(name)
    if isinstance(owner, nn.RNNBase):
        return _RECURRENT.fullmatch(short) is not None
    if isinstance(owner, nn.MultiheadAttention):
        return short in _ATTENTION
    return _default_type(owner) and short == "weight"


def _short(name: str) -> str:
    """The parameter's own name within its module: ``weight`` of ``layer1.0.conv1.weight``."""
    return name.rsplit(".", 1)[-1]


def _as_list(selectors: Selectors) -> list[Selector]:
    if isinstance(selectors, (str, type)) or callable(selectors) or not isinstance(selectors, Iterable):
        return [selectors]
    return list(selectors)


def _check_selector(selector: Selector, argument: str) -> None:
    if isinstance(selector, type):
        if not issubclass(selector, nn.Module):
            raise ValueError(f"{argument} types must be nn.Module classes, got {selector!r}")
    elif isinstance(selector, nn.Module):
        raise ValueError(
            f"{argument} takes module types, not modules: got a {type(selector).__name__} instance; "
            f"pass its type ({type(selector).__name__}) or its weight's name"
        )
    elif not isinstance(selector, str) and not callable(selector):
        raise ValueError(
            f"{argument} takes module types, name globs or predicates (name, parameter) -> bool, got {selector!r}"
        )
    elif callable(selector) and not _takes(selector, 2):
        raise ValueError(
            f"{argument} predicates are called as (name, parameter) -> bool; {_named(selector)} cannot take them"
        )


def _takes(function: Callable, count: int) -> bool:
    """Whether ``function`` can be called with ``count`` positional arguments (True when unknown)."""
    try:
        signature = inspect.signature(function)
    except (TypeError, ValueError):  # some builtins have none
        return True
    try:
        signature.bind(*range(count))
    except TypeError:
        return False
    return True


def _named(function: Callable) -> str:
    return getattr(function, "__name__", None) or repr(function)


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
    _refuse_shared(selectors, candidates, argument, module)
    if not chosen:
        raise ValueError(
            f"{argument} matches no weight of {type(module).__name__} ({selectors!r}); "
            f"its weights are: {_shown(candidates)}"
        )
    return chosen


def _refuse_shared(selectors: list[Selector], candidates: list[Candidate], argument: str, module: nn.Module) -> None:
    """A selector that matches only weights shared under several names: say why they are left out."""
    shared = list(_candidates(module, shared=True))
    for selector in selectors:
        hits = [c for c in shared if _matches(selector, c)]
        if hits and not any(_matches(selector, c) for c in candidates):
            name, p, _ = hits[0]
            others = [other for other, q, _ in shared if q is p and other != name]
            then = "untie them to generate it" if argument == "include" else "there is nothing to exclude"
            raise ValueError(
                f"{argument} {selector!r} matches {name}, which is shared with {', '.join(others)} (one "
                "parameter under both names): a shared weight is never generated, as it would be generated "
                f"once but counted and stored under each name; {then}"
            )


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
    if callable(gain) and not _takes(gain, 1):
        raise ValueError(f"gain callables are called as gain(name) -> number; {_named(gain)} cannot take a name")
    value = gain(name) if callable(gain) else gain
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < math.inf:
        raise ValueError(f"gain must be a positive number, got {value!r}" + (f" for {name}" if callable(gain) else ""))
    return float(value)
