"""What callbacks that change the network mid-run share: forgetting the best checkpoint,
putting a new network in place, and restarting the learning-rate schedule for a phase.

A run that trains a network and then compresses it has phases (train, then fine-tune; or k
rounds of train, prune, rewind). Each phase runs the module's own schedule (``cosine``,
``multistep``, ``constant``) over its own steps, so the dense network is annealed before it is
compressed and the compressed one is annealed before it is tested.
"""

from __future__ import annotations

import lightning as L
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from torch import nn

from hyper.training.schedules import build_scheduler


def forget_best(trainer: L.Trainer) -> None:
    """Every checkpoint callback starts its best-of afresh: a network from before the change
    must not become the "best" that the run tests."""
    for checkpoint in trainer.checkpoint_callbacks:
        _forget_best(checkpoint)


def _forget_best(checkpoint: ModelCheckpoint) -> None:
    """Start the checkpoint's best-of tracking afresh (its files stay on disk)."""
    checkpoint.best_k_models = {}
    checkpoint.kth_best_model_path = ""
    checkpoint.best_model_score = None
    checkpoint.best_model_path = ""
    checkpoint.kth_value = torch.tensor(float("inf") if checkpoint.mode == "min" else float("-inf"))


def restart_schedule(trainer: L.Trainer, pl_module: L.LightningModule, steps: int, *, start: int = 0) -> None:
    """Run the module's schedule afresh over ``steps`` optimiser steps, from step ``start``.

    A module without a ``schedule`` (any LightningModule) keeps its own scheduler.
    """
    if not hasattr(pl_module, "schedule") or not trainer.lr_scheduler_configs:
        return
    optimizer = trainer.optimizers[0]
    for group in optimizer.param_groups:
        group["lr"] = group.setdefault("initial_lr", group["lr"])
    scheduler = build_scheduler(
        optimizer,
        schedule=pl_module.schedule,
        total_steps=steps,
        milestones=pl_module.milestones,
        gamma=pl_module.gamma,
    )
    for _ in range(start):
        scheduler.step()
    trainer.lr_scheduler_configs[0].scheduler = scheduler


def replace_network(trainer: L.Trainer, pl_module: L.LightningModule, network: nn.Module, *, steps: int) -> None:
    """Train ``network`` from here on: a new optimiser over it, its schedule over ``steps``."""
    pl_module.network = network.to(pl_module.device)
    trainer.strategy.setup_optimizers(trainer)
    restart_schedule(trainer, pl_module, steps)
    forget_best(trainer)


def steps_per_epoch(trainer: L.Trainer) -> int:
    return max(int(trainer.estimated_stepping_batches) // max(trainer.max_epochs, 1), 1)


def check_epoch(name: str, epoch: int, trainer: L.Trainer, *, shown: int | None = None, leave: str = "") -> None:
    """Raise ValueError unless ``epoch`` is an epoch of this run (``shown``: the value the user gave)."""
    max_epochs = trainer.max_epochs
    if max_epochs is not None and max_epochs >= 0 and epoch >= max_epochs:
        given = epoch if shown is None else shown
        limit = max_epochs - (epoch - given)
        reason = f" to leave {leave}" if leave else ""
        raise ValueError(f"{name} must be below {limit} (trainer.max_epochs {max_epochs}){reason}, got {given}")


def check_count(name: str, value: object, *, minimum: int = 0) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
