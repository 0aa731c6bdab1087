"""Tying: which generated layers share one weight.

Within a stage, the blocks are split into ``tying_groups`` contiguous groups; layers of the same
role and shape in the same group share one weight (one set of embeddings for the hypernetwork,
one parameter for a direct source). ``tying_groups=1`` is fully tied (every block of a stage gets
identical kernels: a recurrent net in depth); ``None`` (or the number of blocks) is untied.
"""

from __future__ import annotations

from collections.abc import Sequence

from hyper.layers import GeneratedLayer

TieGroup = tuple[GeneratedLayer, ...]


def blocks_per_stage(layers: Sequence[GeneratedLayer]) -> dict[int, int]:
    """Number of blocks of each stage, as declared by the layers."""
    counts: dict[int, int] = {}
    for layer in layers:
        counts[layer.stage] = max(counts.get(layer.stage, 0), layer.block + 1)
    return counts


def check_tying_groups(tying_groups: int | None, layers: Sequence[GeneratedLayer]) -> None:
    """Raise ValueError unless ``tying_groups`` splits every stage into equal runs of blocks."""
    if tying_groups is None:
        return
    if isinstance(tying_groups, bool) or not isinstance(tying_groups, int) or tying_groups < 1:
        raise ValueError(f"tying_groups must be a positive integer or None (untied), got {tying_groups!r}")
    for stage, blocks in sorted(blocks_per_stage(layers).items()):
        if blocks % tying_groups:
            allowed = [g for g in range(1, blocks + 1) if blocks % g == 0]
            raise ValueError(
                f"tying_groups must divide the {blocks} blocks of stage {stage}; "
                f"allowed: {allowed} or None (untied), got {tying_groups}"
            )


def tie(layers: Sequence[GeneratedLayer], tying_groups: int | None) -> list[TieGroup]:
    """Group the layers that share one weight, in order of first appearance.

    Returns:
        A list of groups; every layer is in exactly one group, and all layers of a group have
        the same shape.
    """
    check_tying_groups(tying_groups, layers)
    if tying_groups is None:
        return [(layer,) for layer in layers]
    blocks = blocks_per_stage(layers)
    groups: dict[tuple, list[GeneratedLayer]] = {}
    for layer in layers:
        run = layer.block // (blocks[layer.stage] // tying_groups)
        key = (layer.stage, layer.role, layer.shape, run)
        groups.setdefault(key, []).append(layer)
    return [tuple(group) for group in groups.values()]
