"""The command line's default loggers, and the promise that a failed run leaves no litter.

CSV and TensorBoard (when installed: ``pip install tensorboard``) write into one version
directory (``runs/NAME/version_N/``: metrics.csv, tensorboard/, checkpoints/, config.yaml,
report.json), so a run lives in one place. A resumed run logs into its own folder again: the
metrics logged before the checkpoint it resumes from are kept, those logged after it (work the
resumed run redoes) are dropped.
"""

from __future__ import annotations

import csv
import shutil
import warnings
from pathlib import Path

import lightning as L
from lightning.fabric.loggers.tensorboard import _TENSORBOARD_AVAILABLE
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.loggers import CSVLogger, Logger, TensorBoardLogger


def default_loggers(
    save_dir: str | Path, name: str, *, version: str | None = None, resume_step: int | None = None
) -> list[Logger]:
    """A CSV logger, and a TensorBoard logger in its ``tensorboard/`` when TensorBoard is installed.

    Args:
        save_dir: the runs' root folder.
        name: the run's name (a folder of ``save_dir``).
        version: the run's folder name inside ``save_dir/name`` (None: the next ``version_N``).
        resume_step: the global step of the checkpoint a resumed run starts from: metrics logged
            at this step or later by the earlier session are dropped.
    """
    csv_logger = CSVLogger(save_dir, name=name, version=version)
    if resume_step is not None:
        _keep_earlier_metrics(csv_logger, resume_step)
    if not _TENSORBOARD_AVAILABLE:
        return [csv_logger]
    # The same version number: TensorBoard would otherwise count csv's fresh folder and take the next.
    options = {} if resume_step is None else {"purge_step": resume_step}  # SummaryWriter drops later events
    return [csv_logger, TensorBoardLogger(save_dir, name=name, version=csv_logger.version, sub_dir="tensorboard", **options)]


def _keep_earlier_metrics(logger: CSVLogger, before_step: int) -> None:
    """Carry the rows of an earlier session's metrics.csv logged before ``before_step`` into ``logger``.

    Lightning's CSV writer starts a fresh metrics.csv in a folder that has one; the rows are read
    first and logged again, so the file keeps the whole run.
    """
    path = Path(logger.log_dir) / "metrics.csv"
    rows = []
    if path.is_file():
        with open(path, newline="") as file:
            rows = [row for row in csv.DictReader(file) if _step(row) is not None and _step(row) < before_step]
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Experiment logs directory")  # it is ours, resumed
        writer = logger.experiment
    for row in rows:
        values = {key: float(value) for key, value in row.items() if key != "step" and value not in ("", None)}
        writer.log_metrics(values, step=_step(row))


def _step(row: dict[str, str]) -> int | None:
    try:
        return int(float(row.get("step") or ""))
    except ValueError:
        return None


class FlushLogs(Callback):
    """Write the loggers' buffered metrics whenever a checkpoint is written and an epoch starts.

    CSVLogger keeps rows in memory between flushes (every 100 steps): a run killed outright
    would lose the rows logged before its last checkpoint, which a resumed run does not log again.
    """

    def on_save_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict) -> None:
        self._flush(trainer)

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._flush(trainer)

    @staticmethod
    def _flush(trainer: L.Trainer) -> None:
        for logger in trainer.loggers:
            logger.save()


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
