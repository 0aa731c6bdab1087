"""Where a weight sits in its network: stage, block and role, read off the parameter's name.

By default the last integer index in the dotted path is the block, what comes before it is the
stage and what comes after it is the role:

    layer2.1.conv1.weight        -> stage "layer2",       block 1, role "conv1.weight"
    blocks.7.mlp.fc1.weight      -> stage "blocks",       block 7, role "mlp.fc1.weight"
    stages.2.0.conv1.weight      -> stage "stages.2",     block 0, role "conv1.weight"
    fc.weight                    -> stage "fc.weight",    block 0, role "weight"  (its own stage)

``structure=`` replaces the rule: a regular expression with named groups ``stage`` and ``block``
(and optionally ``role``; without it the role is what follows the match), or a callable
``name -> (stage, block, role)``. A name the expression does not match is its own stage.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Union

Place = tuple[str, int, str]
Structure = Union[str, "re.Pattern[str]", Callable[[str], Place]]


def default_place(name: str) -> Place:
    """Stage, block and role of ``name`` by its last integer index."""
    parts = name.split(".")
    indices = [i for i, part in enumerate(parts) if part.isdigit()]
    if not indices:
        return name, 0, parts[-1]
    i = indices[-1]
    return ".".join(parts[:i]), int(parts[i]), ".".join(parts[i + 1 :])


def placer(structure: Structure | None) -> Callable[[str], Place]:
    """The function that places a parameter name, checked up front."""
    if structure is None:
        return default_place
    if callable(structure) and not isinstance(structure, re.Pattern):
        return _checked_callable(structure)
    if isinstance(structure, str):
        try:
            structure = re.compile(structure)
        except re.error as error:
            raise ValueError(f"structure must be a valid regular expression, got {structure!r}: {error}") from None
    if not isinstance(structure, re.Pattern):
        raise ValueError(f"structure must be a regular expression or a callable, got {structure!r}")
    missing = {"stage", "block"} - set(structure.groupindex)
    if missing:
        raise ValueError(
            f"structure must have the named groups (?P<stage>...) and (?P<block>...) "
            f"(and optionally (?P<role>...)); {structure.pattern!r} lacks {sorted(missing)}"
        )
    return lambda name: _place_by_pattern(structure, name)


def _place_by_pattern(pattern: re.Pattern[str], name: str) -> Place:
    match = pattern.match(name)
    if match is None:
        return name, 0, name.rsplit(".", 1)[-1]
    block = match["block"]
    if not block.isdigit():
        raise ValueError(f"structure's block group must match an integer; in {name!r} it matched {block!r}")
    role = match.groupdict().get("role") or name[match.end() :].lstrip(".") or name.rsplit(".", 1)[-1]
    return match["stage"], int(block), role


def _checked_callable(function: Callable[[str], Place]) -> Callable[[str], Place]:
    def place(name: str) -> Place:
        result = function(name)
        ok = (
            isinstance(result, tuple) and len(result) == 3 and isinstance(result[0], str)
            and isinstance(result[1], int) and not isinstance(result[1], bool) and isinstance(result[2], str)
        )
        if not ok:
            raise ValueError(f"structure must return (stage: str, block: int, role: str); for {name!r} it returned {result!r}")
        return result

    return place
