"""Learning-rate schedules over a whole run, stepped every optimiser step.

Milestones are fractions of the run rather than epoch numbers, so a preset keeps its shape
when ``trainer.max_epochs`` or ``trainer.max_steps`` changes (a sweep, a smoke run).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, Literal

from lightning import LightningModule
from torch.optim import Optimizer
from torch.optim.lr_scheduler import CosineAnnealingLR, LRScheduler, MultiStepLR

Schedule = Literal["cosine", "multistep", "constant"]


def build_scheduler(
    optimizer: Optimizer,
    *,
    schedule: Schedule,
    total_steps: float,
    milestones: Sequence[float],
    gamma: float,
) -> LRScheduler | None:
    """The scheduler for ``schedule`` over ``total_steps`` optimiser steps (None for constant)."""
    if schedule == "constant":
        return None
    if not math.isfinite(total_steps):
        raise ValueError(
            f"the {schedule} schedule needs a finite run: set trainer.max_epochs or trainer.max_steps"
        )
    total = max(int(total_steps), 1)
    if schedule == "cosine":
        return CosineAnnealingLR(optimizer, T_max=total)
    return MultiStepLR(optimizer, milestones=[round(f * total) for f in milestones], gamma=gamma)


def check_schedule(*, schedule: str, milestones: Sequence[float], gamma: float) -> None:
    """Raise ValueError, in the config's terms, for a schedule that cannot be built."""
    if schedule not in ("cosine", "multistep", "constant"):
        raise ValueError(f"schedule must be cosine, multistep or constant, got {schedule!r}")
    if any(not 0.0 < f < 1.0 for f in milestones) or list(milestones) != sorted(milestones):
        raise ValueError(
            f"milestones must be increasing fractions of the run in (0, 1), got {list(milestones)}"
        )
    if not 0.0 < gamma <= 1.0:
        raise ValueError(f"gamma must be in (0, 1], got {gamma}")


def optimizers_config(module: LightningModule) -> Any:
    """``configure_optimizers``'s answer for a module with ``make_optimizer``, ``schedule``,
    ``milestones`` and ``gamma``: the optimiser over all its parameters, stepped per step."""
    optimizer = module.make_optimizer(module.parameters())
    scheduler = build_scheduler(
        optimizer,
        schedule=module.schedule,
        total_steps=module.trainer.estimated_stepping_batches,
        milestones=module.milestones,
        gamma=module.gamma,
    )
    if scheduler is None:
        return optimizer
    return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}
