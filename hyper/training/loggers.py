"""The command line's default loggers, and the promise that a failed run leaves no litter.

CSV and TensorBoard (when installed: ``pip install tensorboard``) write into one version
directory (``runs/NAME/version_N/``: metrics.csv, tensorboard/, checkpoints/, config.yaml,
report.json), so a run lives in one place. A resumed run logs into its own folder again: the
metrics logged before the checkpoint it resumes from are kept, those logged after it (work the
resumed run redoes) are dropped.
"""

from __future__ import annotations

import csv
import io
import os
import shutil
from pathlib import Path

import lightning as L
from lightning.fabric.loggers.logger import rank_zero_experiment
from lightning.fabric.loggers.tensorboard import _TENSORBOARD_AVAILABLE
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.loggers import CSVLogger, Logger, TensorBoardLogger
from lightning.pytorch.loggers.csv_logs import ExperimentWriter


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
    csv_logger = RunCSVLogger(save_dir, name, version=version, resume_step=resume_step)
    if not _TENSORBOARD_AVAILABLE:
        return [csv_logger]
    # The same version number: TensorBoard would otherwise count csv's fresh folder and take the next.
    options = {} if resume_step is None else {"purge_step": resume_step}  # SummaryWriter drops later events
    return [csv_logger, TensorBoardLogger(save_dir, name=name, version=csv_logger.version, sub_dir="tensorboard", **options)]


class RunCSVLogger(CSVLogger):
    """Lightning's CSVLogger, writing through ``MetricsWriter``: a kill leaves metrics.csv whole.

    Args:
        save_dir: the runs' root folder.
        name: the run's name (a folder of ``save_dir``).
        version: the run's folder name inside ``save_dir/name`` (None: the next ``version_N``).
        resume_step: as ``default_loggers``'.
    """

    def __init__(
        self, save_dir: str | Path, name: str, *, version: str | None = None, resume_step: int | None = None
    ) -> None:
        super().__init__(save_dir, name=name, version=version)
        self.resume_step = resume_step

    @property
    @rank_zero_experiment
    def experiment(self) -> MetricsWriter:
        if self._experiment is None:
            Path(self.root_dir).mkdir(parents=True, exist_ok=True)
            self._experiment = MetricsWriter(self.log_dir, resume_step=self.resume_step)
        return self._experiment


class MetricsWriter(ExperimentWriter):
    """Lightning's metrics.csv writer, made safe against a kill at any instant.

    Lightning's writer rewrites the file in place when a column is new (truncated, then written
    again: a kill in between left it empty, and a resume then lost every earlier row), and deletes
    the metrics.csv of a folder it reopens. Here every rewrite goes to a temporary file renamed
    over metrics.csv; rows without a new column are appended. A resumed run's writer starts by
    keeping the earlier session's rows logged before ``resume_step`` (the same rename); rows the
    resumed session logs at earlier steps repeat those (the parameter counts at step 0, measured
    again on trained weights) and are dropped.

    Args:
        log_dir: the run's folder.
        resume_step: the global step of the checkpoint a resumed run starts from (None: a new run).
    """

    def __init__(self, log_dir: str, *, resume_step: int | None = None) -> None:
        self.resume_step = resume_step
        super().__init__(log_dir)

    def _check_log_dir_exists(self) -> None:  # Lightning's deletes an existing metrics.csv
        if self.resume_step is None:
            super()._check_log_dir_exists()
            return
        kept = [row for row in self._rows() if _step(row) is not None and _step(row) < self.resume_step]
        self.metrics_keys = sorted(set().union(*kept))
        self._replace(kept)

    def log_metrics(self, metrics_dict: dict[str, float], step: int | None = None) -> None:
        if self.resume_step is not None and step is not None and step < self.resume_step:
            return  # the earlier session logged this step: its row is kept
        super().log_metrics(metrics_dict, step)

    def save(self) -> None:
        if not self.metrics:
            return
        keys = sorted(set(self.metrics_keys).union(*self.metrics))
        path = Path(self.metrics_file_path)
        if keys != self.metrics_keys or not path.is_file():
            self.metrics_keys = keys
            self._replace([*self._rows(), *self.metrics])
        else:
            with open(path, "a", newline="") as file:
                csv.DictWriter(file, fieldnames=keys).writerows(self.metrics)
        self.metrics = []

    def _rows(self) -> list[dict[str, str]]:
        """metrics.csv's rows, as written; a last line a kill cut short (no line end) is left out."""
        path = Path(self.metrics_file_path)
        if not path.is_file():
            return []
        with open(path, newline="") as file:
            text = file.read()
        return list(csv.DictReader(io.StringIO(text[: text.rfind("\n") + 1])))

    def _replace(self, rows: list[dict]) -> None:
        """Write ``rows`` as the whole of metrics.csv: a reader or a kill sees the old file or the new."""
        path = Path(self.metrics_file_path)
        if not rows:
            path.unlink(missing_ok=True)
            return
        temporary = path.with_suffix(".tmp")
        with open(temporary, "w", newline="") as file:
            writer = csv.DictWriter(file, fieldnames=self.metrics_keys)
            writer.writeheader()
            writer.writerows(rows)
        os.replace(temporary, path)


def _step(row: dict[str, str]) -> int | None:
    try:
        return int(float(row.get("step") or ""))
    except ValueError:
        return None


class FlushLogs(Callback):
    """Write the loggers' buffered metrics whenever a checkpoint is written and an epoch starts.

    The trainer saves after each row it logs; rows logged straight to a logger (the parameter
    counts, at step 0) wait in memory for the next save: a run killed outright would lose those
    logged before its last checkpoint, which a resumed run does not log again.
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
