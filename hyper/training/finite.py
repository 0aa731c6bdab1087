"""Stop a run whose loss or weights stopped being finite, before a bad state is checkpointed.

A learning rate that is far too high turns the loss into inf or NaN within a few steps; training
on would save NaN weights as the "best" and "last" checkpoints and end with status 0. This
callback raises instead (the command line prints one line and exits non-zero) and leaves the
checkpoints written before, which hold the last good state.
"""

from __future__ import annotations

from pathlib import Path

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback
from torch import Tensor


class NonFiniteError(ValueError):
    """The run produced a non-finite loss or weight."""


class StopOnNonFinite(Callback):
    """Raise ``NonFiniteError`` when the training loss, or a weight at an epoch's end, is inf or NaN.

    The loss is checked before its backward pass, so the bad step never reaches the weights; the
    weights are checked before validation and at the end of each epoch, before checkpoints are
    written (Lightning runs checkpoint callbacks last).
    """

    def on_before_backward(self, trainer: L.Trainer, pl_module: L.LightningModule, loss: Tensor) -> None:
        if not torch.isfinite(loss.detach()).all():
            self._stop(trainer, f"the training loss is {loss.detach().float().item()}")

    def on_validation_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not trainer.sanity_checking:
            self._check_weights(trainer, pl_module)

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._check_weights(trainer, pl_module)

    def _check_weights(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        bad = next((name for name, p in pl_module.named_parameters() if not torch.isfinite(p).all()), None)
        if bad is not None:
            self._stop(trainer, f"the weight {bad} is not finite")

    @staticmethod
    def _stop(trainer: L.Trainer, what: str) -> None:
        saved = [Path(c.last_model_path or c.best_model_path) for c in trainer.checkpoint_callbacks]
        saved = [path for path in saved if path.name and path.is_file()]
        kept = f"the last good checkpoint is {saved[-1]}" if saved else "no checkpoint had been written"
        raise NonFiniteError(
            f"{what} at epoch {trainer.current_epoch}, step {trainer.global_step}: training stopped "
            f"(lower the learning rate, or clip gradients with --trainer.gradient_clip_val); {kept}"
        )
