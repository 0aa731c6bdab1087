"""One run on two SLURM "nodes": two processes started as ``srun`` starts them (ranks in SLURM's
variables), ``--trainer.num_nodes 2``, Lightning's SLURMEnvironment joining them over gloo on this
machine's CPU. Together they make one run: one folder, each rank half of every epoch's data."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from test_cli import write_config

ROOT = Path(__file__).resolve().parents[1]


def srun_task(rank: int, args: list[str], cwd: Path) -> subprocess.Popen:
    """``train.py ARGS`` as task ``rank`` of 2 of a SLURM job of two nodes, one task each."""
    slurm = {
        "SLURM_JOB_ID": "4321", "SLURM_JOB_NAME": "two_nodes", "SLURM_NODELIST": "localhost", "SLURM_NNODES": "2",
        "SLURM_NTASKS": "2", "SLURM_NTASKS_PER_NODE": "1", "SLURM_PROCID": str(rank), "SLURM_NODEID": str(rank),
        "SLURM_LOCALID": "0",
    }
    env = {**os.environ, **slurm, "PYTHONPATH": f"{ROOT / 'tests'}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    return subprocess.Popen([sys.executable, str(ROOT / "train.py"), *args], cwd=cwd, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def test_two_slurm_nodes_train_one_run(tmp_path: Path) -> None:
    config = write_config(tmp_path)  # 32 images in batches of 16, 2 epochs: 4 steps on one process
    args = ["run", "--config", str(config), "--threads", "1", "--trainer.accelerator", "cpu",
            "--trainer.num_nodes", "2", "--trainer.devices", "1", "--trainer.strategy", "ddp"]
    tasks = [srun_task(rank, args, tmp_path) for rank in (0, 1)]
    outputs = [task.communicate(timeout=300)[0] for task in tasks]
    for rank, (task, out) in enumerate(zip(tasks, outputs)):
        assert task.returncode == 0, out[-3000:]
        assert f"GLOBAL_RANK: {rank}, MEMBER: {rank + 1}/2" in out and "SLURM" in out, out[-3000:]
    (report,) = (tmp_path / "runs").glob("*/version_*/report.json")
    row = json.loads(report.read_text())
    assert row["status"] == "finished" and row["steps"] == 2  # each rank 16 images an epoch: 1 step
