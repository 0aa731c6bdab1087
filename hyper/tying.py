"""Tying: which generated layers share one weight.

Within a stage, the blocks are split into ``tying_groups`` contiguous runs, as equal as
possible (8 blocks in 2 groups: 0-3 and 4-7; 3 blocks in 2 groups: 0-1 and 2); layers of the
same role and shape in the same run share one weight (one set of embeddings for the
hypernetwork, one parameter for a direct source). ``tying_groups=1`` is fully tied (every block
of a stage gets identical kernels: a recurrent net in depth); ``None`` is untied, and so is any
number at least the stage's block count. A stage of one block is untied whatever the number.
"""

from __future__ import annotations

from collections.abc import Sequence

from hyper.layers import GeneratedLayer

TieGroup = tuple[GeneratedLayer, ...]


def check_tying_groups(tying_groups: int | None) -> None:
    """Raise ValueError unless ``tying_groups`` is a positive integer or None."""
    if tying_groups is None:
        return
    if isinstance(tying_groups, bool) or not isinstance(tying_groups, int) or tying_groups < 1:
        raise ValueError(f"tying_groups must be a positive integer or None (untied), got {tying_groups!r}")


def block_positions(layers: Sequence[GeneratedLayer]) -> dict[tuple[str, int], tuple[int, int]]:
    """(stage, block) -> (position of the block among its stage's blocks, blocks in the stage).

    Positions, not raw indices: a stage whose selected blocks are 2, 5 and 7 has three blocks.
    """
    blocks: dict[str, set[int]] = {}
    for layer in layers:
        blocks.setdefault(layer.stage, set()).add(layer.block)
    return {
        (stage, block): (position, len(indices))
        for stage, indices in blocks.items()
        for position, block in enumerate(sorted(indices))
    }


def tie(layers: Sequence[GeneratedLayer], tying_groups: int | None) -> list[TieGroup]:
    """Group the layers that share one weight, in order of first appearance.

    Returns:
        A list of groups; every layer is in exactly one group, and all layers of a group have
        the same stage, role and shape.
    """
    check_tying_groups(tying_groups)
    if tying_groups is None:
        return [(layer,) for layer in layers]
    positions = block_positions(layers)
    groups: dict[tuple, list[GeneratedLayer]] = {}
    for layer in layers:
        position, blocks = positions[layer.stage, layer.block]
        run = position * tying_groups // blocks  # contiguous runs, sizes differing by at most one
        groups.setdefault((layer.stage, layer.role, layer.shape, run), []).append(layer)
    return [tuple(group) for group in groups.values()]
