"""The command line's default loggers, and the promise that a failed run leaves no litter.

CSV and TensorBoard write into one version directory (``runs/NAME/version_N/``: metrics.csv,
tensorboard/, checkpoints/, config.yaml, report.json), so a run lives in one place.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import lightning as L
from lightning.fabric.loggers.tensorboard import _TENSORBOARD_AVAILABLE
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.loggers import CSVLogger, Logger, TensorBoardLogger


def default_loggers(save_dir: str | Path, name: str) -> list[Logger]:
    """A CSV logger, and a TensorBoard logger in its ``tensorboard/`` when TensorBoard is installed."""
    csv = CSVLogger(save_dir, name=name)
    if not _TENSORBOARD_AVAILABLE:
        return [csv]
    # The same version number: TensorBoard would otherwise count csv's fresh folder and take the next.
    return [csv, TensorBoardLogger(save_dir, name=name, version=csv.version, sub_dir="tensorboard")]


class RemoveRunOnError(Callback):
    """Delete a fresh run directory when the run fails before it saved a checkpoint.

    Args:
        run_dir: the run's directory; the command line made its name, so it held nothing before.
    """

    def __init__(self, run_dir: str | Path) -> None:
        self.run_dir = Path(run_dir)

    def on_exception(
        self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException
    ) -> None:
        if isinstance(exception, KeyboardInterrupt):  # stopped by hand: keep what was logged
            return
        if not trainer.is_global_zero or not self.run_dir.is_dir():
            return
        if any(self.run_dir.rglob("*.ckpt")):  # something worth keeping was written
            return
        shutil.rmtree(self.run_dir, ignore_errors=True)
        for parent in self.run_dir.parents[:2]:  # runs/NAME/ and runs/ when they are now empty
            try:
                parent.rmdir()
            except OSError:
                break
