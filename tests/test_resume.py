"""Nothing lost, nothing redone: a run killed with SIGKILL resumes from its last.ckpt, in its own
folder, to the metrics the uninterrupted run reaches; a killed sweep loses and redoes no point;
a run resumed mid-epoch (step-based validation) continues its data and its TBPTT state; a
non-finite loss stops the run and keeps the last good checkpoint."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import lightning as L
import pytest
import yaml

from hyper.training.cli import main
from hyper.training.loggers import RunCSVLogger
from test_language_model import write_config as write_lm_config

pytestmark = pytest.mark.usefixtures("one_thread")
ROOT = Path(__file__).resolve().parents[1]
TRAIN = ROOT / "train.py"


class Pause(L.Callback):
    """Sleeps at the end of every training epoch: a window in which the test can kill the run.

    Args:
        seconds: how long.
    """

    def __init__(self, *, seconds: float = 0.3) -> None:
        self.seconds = seconds

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        time.sleep(self.seconds)


def digits_config(folder: Path, *, epochs: int = 3) -> dict:
    """A small HyperResNet on the bundled digits with augmentation (the global generators matter)."""
    return {
        "seed_everything": 0,
        "threads": 1,
        "trainer": {
            "max_epochs": epochs,
            "deterministic": True,
            "log_every_n_steps": 5,
            "enable_progress_bar": False,
            "enable_model_summary": False,
            "default_root_dir": str(folder / "runs"),
            "callbacks": [{"class_path": "test_resume.Pause"}],
        },
        "model": {
            "class_path": "hyper.training.ImageClassifier",
            "init_args": {
                "network": {
                    "class_path": "models.HyperResNet",
                    "init_args": {"depth": 10, "width": 1, "num_classes": 10, "in_channels": 1, "embedding_dim": 4, "hidden_dim": 8},
                },
                "optimizer": {"class_path": "torch.optim.Adam", "init_args": {"lr": 0.003}},
            },
        },
        "data": {"class_path": "hyper.data.DigitsDataModule", "init_args": {"batch_size": 128, "augment": True}},
    }


def train(*args: str, cwd: Path) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": f"{ROOT / 'tests'}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    return subprocess.Popen(
        [sys.executable, str(TRAIN), *args], cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )


def finish(process: subprocess.Popen) -> str:
    out, _ = process.communicate(timeout=300)
    assert process.returncode == 0, out[-3000:]
    return out


def kill_when(process: subprocess.Popen, ready: callable) -> None:
    """SIGKILL ``process`` as soon as ``ready()``; fails if it ended first."""
    deadline = time.monotonic() + 240
    while not ready():
        assert process.poll() is None, "the run ended before it could be killed:\n" + process.stdout.read()[-3000:]
        assert time.monotonic() < deadline
        time.sleep(0.01)
    process.send_signal(signal.SIGKILL)
    process.communicate()
    assert process.returncode == -signal.SIGKILL


def report_of(root: Path) -> dict:
    (path,) = root.glob("*/version_*/report.json")
    return json.loads(path.read_text())


def logged_steps(run: Path) -> list[int]:
    with open(run / "metrics.csv", newline="") as file:
        return [int(row["step"]) for row in csv.DictReader(file) if row.get("train_loss")]


def test_a_killed_run_resumes_in_its_folder_to_the_uninterrupted_metrics(tmp_path: Path) -> None:
    config = tmp_path / "digits.yaml"
    config.write_text(yaml.safe_dump(digits_config(tmp_path)))
    whole = train("--config", str(config), "--trainer.default_root_dir", str(tmp_path / "whole"), cwd=tmp_path)
    cut = train("--config", str(config), "--trainer.default_root_dir", str(tmp_path / "cut"), cwd=tmp_path)
    kill_when(cut, lambda: any((tmp_path / "cut").glob("*/version_0/checkpoints/last.ckpt")))
    (run,) = (tmp_path / "cut").glob("*/version_0")
    assert report_of(tmp_path / "cut")["status"] == "running"  # recognisably unfinished
    finish(whole)

    last = run / "checkpoints" / "last.ckpt"
    out = finish(train("--config", str(config), "--ckpt_path", str(last), cwd=tmp_path))
    assert f"resuming {run}" in out
    assert [p.name for p in (tmp_path / "cut").glob("*/*")] == ["version_0"]  # the same folder, no other
    expected, resumed = report_of(tmp_path / "whole"), report_of(tmp_path / "cut")
    for key in ("val_acc", "best_val_acc", "test_acc", "test_loss", "steps", "epochs", "trainable_params"):
        assert resumed[key] == expected[key], key
    assert resumed["status"] == "finished" and resumed["sessions"] == 2 and "sessions" not in expected
    assert resumed["fit_time_s"] > 0.3 * (expected["epochs"] - 1)  # both sessions' time (Pause: 0.3 s/epoch)
    whole_run = next((tmp_path / "whole").glob("*/version_0"))
    assert logged_steps(run) == logged_steps(whole_run)
    # every row, value for value: those of the killed session (its epoch's training metrics, logged
    # after the epoch-end checkpoint, too) and none it logged after its checkpoint twice
    assert (run / "metrics.csv").read_text() == (whole_run / "metrics.csv").read_text()


def test_a_killed_sweep_loses_and_redoes_nothing(tmp_path: Path) -> None:
    base = tmp_path / "base.yaml"
    base.write_text(yaml.safe_dump(digits_config(tmp_path, epochs=2)))
    sweep = tmp_path / "s.yaml"
    vary = {"model.init_args.network.init_args.embedding_dim": [2, 4, 6]}
    sweep.write_text(yaml.safe_dump({"base": "base.yaml", "methods": [{"name": "hyper", "vary": vary}]}))
    out = tmp_path / "out"
    command = ["sweep", "--config", str(sweep), "--out", str(out)]

    first = train(*command, cwd=tmp_path)
    results = out / "results.jsonl"

    def second_point_checkpointed() -> bool:
        rows = results.read_text().splitlines() if results.is_file() else []
        return len(rows) == 1 and len(list(out.glob("runs/*/*/version_0/checkpoints/last.ckpt"))) == 2

    kill_when(first, second_point_checkpointed)
    with open(results, "a") as file:
        file.write('{"key": "a row cut by the kill, no newline')  # what a kill mid-write leaves
    (done,) = [json.loads(line) for line in results.read_text().splitlines()[:1]]

    again = finish(train(*command, cwd=tmp_path))
    assert "1 already done, 2 to run" in again and "cut off a partial last line" in again
    assert again.count("resuming from") == 1  # the killed point continues from its checkpoint
    rows = [json.loads(line) for line in results.read_text().splitlines()]
    assert sorted(r["knobs"]["embedding_dim"] for r in rows) == [2, 4, 6] and rows[0] == done
    assert len({r["key"] for r in rows}) == 3
    resumed = next(r for r in rows if r.get("sessions") == 2)
    assert resumed["epochs"] == 2 and resumed["status"] == "finished"
    assert len(list(out.glob("runs/*/*/version_*"))) == 3  # one folder per point, no orphan


def test_a_run_resumed_mid_epoch_continues_its_streams(tmp_path: Path) -> None:
    """Step-based validation writes last.ckpt mid-epoch: the loader skips what was seen, the
    TBPTT state and the dropout generator continue, and the result is the uninterrupted one."""
    options = ["--trainer.max_steps", "12", "--trainer.val_check_interval", "5", "--model.network.dropout", "0.2"]
    (tmp_path / "whole").mkdir()
    (tmp_path / "cut").mkdir()
    assert main(["fit", "--config", str(write_lm_config(tmp_path / "whole")), *options]) == 0
    config = write_lm_config(tmp_path / "cut")
    stop_at_5 = ["--trainer.max_steps", "5"]  # the same run, stopped at its first checkpoint
    assert main(["fit", "--config", str(config), *options, *stop_at_5]) == 0
    last = next((tmp_path / "cut" / "runs").glob("*/version_0/checkpoints/last.ckpt"))
    assert main(["fit", "--config", str(config), *options, "--ckpt_path", str(last)]) == 0
    expected, resumed = report_of(tmp_path / "whole" / "runs"), report_of(tmp_path / "cut" / "runs")
    assert expected["epochs"] > 1  # the resumed part crosses an epoch boundary
    for key in ("val_bpc", "best_val_bpc", "steps", "epochs"):
        assert resumed[key] == expected[key], key


def test_a_non_finite_loss_stops_the_run_and_keeps_the_last_good_checkpoint(
    tmp_path: Path, capfd: pytest.CaptureFixture
) -> None:
    config = tmp_path / "digits.yaml"
    spec = digits_config(tmp_path, epochs=3)
    spec["trainer"]["callbacks"] = [{"class_path": "test_resume.BlowUp", "init_args": {"at_epoch": 1}}]
    config.write_text(yaml.safe_dump(spec))
    capfd.readouterr()
    assert main(["run", "--config", str(config)]) == 2
    error = capfd.readouterr().err.strip().splitlines()
    assert len(error) == 1 and "the training loss is" in error[0] and "at epoch 1" in error[0], error
    (run,) = (tmp_path / "runs").glob("*/version_0")
    last = run / "checkpoints" / "last.ckpt"
    assert f"the last good checkpoint is {last}" in error[0]
    import torch

    weights = torch.load(last, weights_only=True)["state_dict"]
    assert all(torch.isfinite(w).all() for w in weights.values())
    report = json.loads((run / "report.json").read_text())
    assert report["status"] == "failed" and "the training loss is" in report["error"]


def test_a_new_column_rewrites_metrics_csv_whole_or_not_at_all(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Lightning truncated metrics.csv, then wrote it again, when a column was new: a run killed
    in between (the first validation, an epoch's training metrics) left it empty."""
    logger = RunCSVLogger(tmp_path, "run", version="version_0")
    logger.log_metrics({"train_loss": 2.0}, step=4)
    logger.save()
    path = Path(logger.log_dir) / "metrics.csv"
    before = path.read_text()
    logger.log_metrics({"val_acc": 0.5}, step=9)

    def killed(self: csv.DictWriter, rows: list) -> None:
        raise Killed

    monkeypatch.setattr(csv.DictWriter, "writerows", killed)
    with pytest.raises(Killed):
        logger.save()
    assert path.read_text() == before


class Killed(Exception):
    """The process dies here."""


def test_a_resumed_logger_keeps_the_rows_before_its_checkpoint_as_written(tmp_path: Path) -> None:
    first = RunCSVLogger(tmp_path, "run", version="version_0")
    for step, row in [(0, {"params": 5898}), (4, {"train_loss": 2.25}), (9, {"val_acc": 0.1}), (14, {"train_loss": 2.0})]:
        first.log_metrics(row, step=step)
    first.save()
    path = Path(first.log_dir) / "metrics.csv"
    with open(path, "a", newline="") as file:
        file.write(",,19,1.9")  # a row a kill cut short
    kept = path.read_text().splitlines(keepends=True)[:4]  # the header and steps 0, 4, 9

    resumed = RunCSVLogger(tmp_path, "run", version="version_0", resume_step=10)
    resumed.experiment  # the writer's start: Lightning's deleted the file here
    assert path.read_text() == "".join(kept)  # a kill now loses nothing
    resumed.log_metrics({"params": 6000}, step=0)  # counted again, on trained weights: a repeat
    resumed.log_metrics({"train_loss": 2.0}, step=14)
    resumed.save()
    with open(path, newline="") as file:
        rows = list(csv.DictReader(file))
    assert [(r["step"], r["params"]) for r in rows] == [("0", "5898"), ("4", ""), ("9", ""), ("14", "")]
    assert path.read_text().startswith("".join(kept))


class BlowUp(L.Callback):
    """Sets the learning rate to 1e9 when epoch ``at_epoch`` starts: the loss soon turns NaN.

    Args:
        at_epoch: the epoch.
    """

    def __init__(self, *, at_epoch: int) -> None:
        self.at_epoch = at_epoch

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.current_epoch == self.at_epoch:
            for group in trainer.optimizers[0].param_groups:
                group["lr"] = 1e9
