"""What a target declares about the weights it lets a source generate."""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class GeneratedLayer:
    """One weight of the target that a weight source yields.

    Args:
        name: the target's own parameter name, e.g. ``"stages.1.0.conv1.weight"``.
        shape: the weight's shape, ``(out, in, *kernel)``.
        stage: which stage (a run of blocks at one resolution) the layer belongs to.
        block: the block's index within its stage; tying groups are contiguous runs of blocks.
        role: the layer's place inside its block (``"conv1"``, ``"conv2"``, ``"weight_hh"``...):
            only layers of the same role and shape can share weights.
    """

    name: str
    shape: tuple[int, ...]
    stage: int
    block: int
    role: str

    @property
    def numel(self) -> int:
        return math.prod(self.shape)

    @property
    def fan_in(self) -> int:
        """Inputs feeding one output unit: in-channels × kernel area."""
        return math.prod(self.shape[1:])
