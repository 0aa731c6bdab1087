"""DDP on CPU (gloo): when one process fails, every process says so in one line, never a traceback."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import lightning as L

from test_cli import write_config

ROOT = Path(__file__).resolve().parents[1]


class FailOnRankZero(L.Callback):
    """Raises on rank 0 alone when epoch 1 starts: rank 1 is then left waiting in a collective."""

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.global_rank == 0 and trainer.current_epoch == 1:
            raise ValueError("a failure on rank 0 alone")


def test_a_failure_on_one_rank_is_one_line_per_process(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    env = {**os.environ, "PYTHONPATH": f"{ROOT / 'tests'}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    args = [
        "fit", "--config", str(config), "--trainer.max_epochs", "3", "--trainer.accelerator", "cpu",
        "--trainer.devices", "2", "--trainer.strategy", "ddp", "--trainer.callbacks+=test_ddp.FailOnRankZero",
    ]
    done = subprocess.run(
        [sys.executable, str(ROOT / "train.py"), *args], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300
    )
    errors = [line for line in done.stderr.splitlines() if line.startswith("error: ")]
    assert done.returncode == 2, done.stderr[-3000:]
    assert "Traceback" not in done.stderr + done.stdout, done.stderr[-3000:]
    assert errors[0] == "error: a failure on rank 0 alone", errors
    assert len(errors) <= 2 and all(e.startswith("error: rank 1 stopped") for e in errors[1:]), errors
