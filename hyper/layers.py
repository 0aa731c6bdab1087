"""What a target lets a source generate: one ``GeneratedLayer`` per generated weight."""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class GeneratedLayer:
    """One weight of the target that a weight source yields.

    Args:
        name: the target's own parameter name, e.g. ``"layer2.1.conv1.weight"``.
        shape: the weight's shape, ``(out, in, *kernel)`` (a linear weight has no kernel axes).
        stage: the run of blocks the layer belongs to, e.g. ``"layer2"``; layers of one stage
            can share weights (tying), layers of different stages never do.
        block: the block's index within its stage; tying groups are contiguous runs of blocks.
        role: the layer's place inside its block (``"conv1.weight"``, ``"mlp.fc1.weight"``):
            only layers of the same role and shape can share weights.
        gain: the initialisation gain: every source starts the weight with standard deviation
            gain / sqrt(fan_in) (Kaiming: sqrt(2) for a conv before a ReLU, 1 for a linear map).
        transposed: the weight is stored (in, out), as Hugging Face's ``Conv1D`` (GPT-2) keeps
            it: its fan-in is then the first axis.
    """

    name: str
    shape: tuple[int, ...]
    stage: str
    block: int
    role: str
    gain: float = math.sqrt(2.0)
    transposed: bool = False

    def __post_init__(self) -> None:
        if len(self.shape) < 2:
            raise ValueError(f"a generated weight needs (out, in, ...) axes; {self.name} has shape {self.shape}")
        if 0 in self.shape:
            raise ValueError(f"a generated weight needs entries; {self.name} has shape {self.shape}")

    @property
    def numel(self) -> int:
        return math.prod(self.shape)

    @property
    def kernel_size(self) -> tuple[int, ...]:
        """The spatial axes, ``(3, 3)`` for a 3×3 conv, ``()`` for a matrix."""
        return tuple(self.shape[2:])

    @property
    def fan_in(self) -> int:
        """Inputs feeding one output unit: in-channels × kernel area."""
        return self.shape[0 if self.transposed else 1] * math.prod(self.shape[2:])

    @property
    def init_std(self) -> float:
        """Standard deviation every source initialises this weight with."""
        return self.gain / math.sqrt(self.fan_in)
