"""last.ckpt, the state a run resumes from: written after every validation when validation is
step-based (mid-epoch too), else at every epoch's end; and in place only once every row logged
before its step is on disk, so that a run killed the moment it appears loses no row."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import lightning as L
import pytest
import yaml
from lightning.pytorch.loggers import Logger

from hyper.training.checkpoints import load_checkpoint
from hyper.training.cli import main
from test_resume import digits_config

pytestmark = pytest.mark.usefixtures("one_thread")


class StopAt(L.Callback):
    """Raises ``Stopped`` when training reaches step ``step``: a run that ends mid-epoch.

    Args:
        step: the global step.
    """

    def __init__(self, *, step: int) -> None:
        self.step = step

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:  # noqa: ANN001
        if trainer.global_step == self.step:
            raise Stopped(f"stopped at step {self.step}")


class Stopped(RuntimeError):
    """Raised by ``StopAt``."""


def write_config(folder: Path, *, trainer: dict[str, Any]) -> Path:
    """The digits run of test_resume, 10 steps an epoch, with these trainer settings."""
    spec = digits_config(folder)
    spec["trainer"].update(trainer)
    path = folder / "digits.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def test_a_step_based_run_writes_last_ckpt_after_every_validation(tmp_path: Path) -> None:
    """Not at the epoch's end only: a run stopped mid-epoch resumes from its last validation."""
    stop = {"class_path": "test_checkpoints.StopAt", "init_args": {"step": 8}}
    trainer = {"max_epochs": 1, "check_val_every_n_epoch": None, "val_check_interval": 3, "callbacks": [stop]}
    config = write_config(tmp_path, trainer=trainer)
    with pytest.raises(Stopped):
        main(["fit", "--config", str(config)])
    last = [*(tmp_path / "runs").glob("*/version_0/checkpoints/last.ckpt")]
    assert last, "no last.ckpt: the run stopped mid-epoch and its validations wrote none"
    assert load_checkpoint(last[0])["global_step"] == 6  # validated at steps 3 and 6 of 10


class LastAtEveryRow(L.Callback):
    """Notes, as each row is logged, its step and the step of the last.ckpt then in place.

    Args:
        out: the JSON file the notes go to when the run ends.
    """

    def __init__(self, *, out: str) -> None:
        self.out = Path(out)
        self.notes: list[tuple[int, list[str], int | None]] = []

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        trainer.loggers = [*trainer.loggers, _Tap(self.notes, trainer)]

    def teardown(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        self.out.write_text(json.dumps(self.notes))


class _Tap(Logger):
    """A logger that writes nothing: it notes what ``LastAtEveryRow`` needs."""

    def __init__(self, notes: list, trainer: L.Trainer) -> None:
        super().__init__()
        self.notes, self.trainer = notes, trainer

    @property
    def name(self) -> str:
        return "tap"

    @property
    def version(self) -> int:
        return 0

    def log_hyperparams(self, params: Any, *args: Any, **kwargs: Any) -> None:
        pass

    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        last = Path(self.trainer.checkpoint_callbacks[-1].dirpath or "") / "last.ckpt"
        in_place = load_checkpoint(last)["global_step"] if last.is_file() else None
        self.notes.append((step, sorted(metrics), in_place))


def test_last_ckpt_is_in_place_only_after_the_rows_logged_before_its_step(tmp_path: Path) -> None:
    """Lightning logs an epoch's training metrics after the epoch-end checkpoint is written; a
    last.ckpt already in place then, killed there, resumed without that row."""
    notes = tmp_path / "notes.json"
    tap = {"class_path": "test_checkpoints.LastAtEveryRow", "init_args": {"out": str(notes)}}
    config = write_config(tmp_path, trainer={"max_epochs": 2, "callbacks": [tap]})
    assert main(["fit", "--config", str(config)]) == 0
    rows = json.loads(notes.read_text())
    assert any(last is not None for *_, last in rows)  # epoch 1's rows saw epoch 0's checkpoint
    assert any("train_acc" in keys for _, keys, _ in rows)  # the epoch-end rows were seen
    late = [(step, keys, last) for step, keys, last in rows if last is not None and last > step]
    assert not late, late  # (the row's step, its metrics, the step of the last.ckpt in place)
