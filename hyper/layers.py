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
        gain: the initialisation gain: every source starts the weight with standard deviation
            gain / sqrt(fan_in) (Kaiming: sqrt(2) before a ReLU, 1 for a linear/tanh use).
    """

    name: str
    shape: tuple[int, ...]
    stage: int
    block: int
    role: str
    gain: float = math.sqrt(2.0)

    @property
    def numel(self) -> int:
        return math.prod(self.shape)

    @property
    def fan_in(self) -> int:
        """Inputs feeding one output unit: in-channels × kernel area."""
        return math.prod(self.shape[1:])

    @property
    def init_std(self) -> float:
        """Standard deviation every source initialises this weight with."""
        return self.gain / math.sqrt(self.fan_in)
