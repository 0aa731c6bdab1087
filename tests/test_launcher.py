"""``train.py sweep --launcher``: a sweep as a job array through submitit, run here by its local
executor (real subprocesses): the rows equal the in-process sweep's, with one task preempted and
requeued and another killed outright and resubmitted; nothing lost, nothing done twice."""

from __future__ import annotations

import json
import os
import shutil
import signal
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import yaml

pytest.importorskip("submitit")

from hyper.sweeps import load_sweep, read_rows, shard  # noqa: E402
from hyper.sweeps.launchers import launch, wait  # noqa: E402
from hyper.training.cli import main  # noqa: E402
from hyper.training.sweep_cli import check_point, run_point  # noqa: E402
from test_sweep_cli import write_sweep  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_thread")
TESTS = Path(__file__).resolve().parent
# What a point's row must repeat whichever process ran it, and however often it was interrupted.
SAME = ("method", "knobs", "seed", "trainable_params", "compression_ratio", "size_bytes", "test_acc", "test_loss",
        "val_acc", "best_val_acc", "epochs", "steps", "status")


def tiny_sweep(folder: Path) -> Path:
    """test_sweep_cli's 4 points, 2 epochs each, deterministic on one thread, with a pause after
    every epoch: a window to interrupt a point between its first checkpoint and its row."""
    path = write_sweep(folder)
    spec = yaml.safe_load(path.read_text())
    spec["overrides"].update({
        "threads": 1,
        "trainer.max_epochs": 2,
        "trainer.deterministic": True,
        "trainer.callbacks": [{"class_path": "test_resume.Pause", "init_args": {"seconds": 0.3}}],
    })
    path.write_text(yaml.safe_dump(spec))
    return path


def children(pid: int) -> list[int]:
    """The processes whose parent is ``pid`` (a local job's controller: its task)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


def signal_at_first_checkpoint(job, folder: Path, key: str, signum: int) -> None:
    """Send ``signum`` to the job's task once point ``key`` wrote its first ``last.ckpt``."""
    deadline = time.monotonic() + 120
    while not list(folder.glob(f"runs/{key}/*/version_0/checkpoints/last.ckpt")):
        assert job.state == "RUNNING", f"job {job.job_id} ended before it could be interrupted: {job.stderr()}"
        assert time.monotonic() < deadline
        time.sleep(0.02)
    (task,) = children(int(job.job_id))
    os.kill(task, signum)


def by_key(rows: list[dict]) -> dict[str, dict]:
    return {row["key"]: {field: row.get(field) for field in SAME} for row in rows}


def test_a_launched_sweep_preempted_and_killed_equals_the_in_process_one(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")]))
    # A lost task's result is looked for 15 s (a slow shared filesystem); here it is not coming.
    monkeypatch.setattr("submitit.core.core.Job._results_timeout_s", 1)
    path = tiny_sweep(tmp_path)
    here, launched = tmp_path / "here", tmp_path / "launched"
    sweep = load_sweep(path)
    points = sweep.points()
    jobs = launch(sweep, launched, run_point, launcher="local", tasks=2, check_point=check_point)
    assert len(jobs) == 2
    first = [shard(points, i, 2)[0].key for i in (1, 2)]
    # Task 1 is preempted: USR2, as SLURM sends before the end; submitit checkpoints and requeues
    # it (the local executor restarts it). Task 2 is killed outright, as a lost node would be.
    # Meanwhile this process runs the same sweep in process, the rows to compare with.
    with ThreadPoolExecutor(2) as watchers:
        interrupted = [watchers.submit(signal_at_first_checkpoint, job, launched, key, signum)
                       for job, key, signum in zip(jobs, first, (signal.SIGUSR2, signal.SIGKILL))]
        assert main(["sweep", "--config", str(path), "--out", str(here)]) == 0
        for done in interrupted:
            done.result()
    expected = by_key(read_rows(here))
    with pytest.raises(ValueError, match="1 of 2 tasks failed"):
        wait(jobs)
    assert "Requeued job" in jobs[0].stdout()
    capsys.readouterr()

    # The same command again submits only the shard with work left, and summarizes at the end.
    again = ["sweep", "--config", str(path), "--out", str(launched), "--launcher", "local", "--tasks", "2", "--wait"]
    assert main(again) == 0
    printed = capsys.readouterr().out
    assert "2 already done, 2 to run in 1 of 2 tasks" in printed and "submitted 1 task as subprocesses here" in printed
    assert "| lowrank | rank=1 |" in printed and (launched / "tiny_sweep.png").is_file()

    rows = read_rows(launched)
    assert by_key(rows) == expected
    resumed = {row["key"] for row in rows if row.get("sessions") == 2}
    assert resumed == set(first)  # each interrupted point went on from its checkpoint
    lines = [line for file in launched.glob("results*.jsonl") for line in file.read_text().splitlines()]
    assert len(lines) == len(points)  # no row written twice
    assert len(list(launched.glob("runs/*/*/version_*"))) == len(points)  # one run folder per point


def test_launcher_mistakes_are_one_line(tmp_path, monkeypatch, capsys):
    path = tiny_sweep(tmp_path)
    sweep = ["sweep", "--config", str(path), "--out", str(tmp_path / "out")]
    cases = {
        ("--launcher", "slurm", "--slurm.partiton", "gpu", "--slurm.time", "60"):
            "unknown option --slurm.partiton (did you mean --slurm.partition?)",
        ("--launcher", "slurm", "--slurm.gpus_per_task", "two", "--slurm.time", "60"):
            "--slurm.gpus_per_task takes an integer, got 'two'",
        ("--launcher", "slurm", "--slurm.nodes=2", "--slurm.time", "60"):
            "--slurm.nodes 2: the launcher trains each point",
        ("--launcher", "slurm", "--slurm.partition", "gpu"): "--launcher slurm needs --slurm.time MINUTES",
        ("--launcher", "local", "--slurm.time"): "--slurm.time needs a value",
        ("--launcher", "local", "--tasks", "5"): "--tasks must be between 1 and the sweep's 4 points, got 5",
        ("--launcher", "local", "--shard", "1/2"): "give --tasks N instead of --shard",
        ("--slurm.partition", "gpu", "--wait"): "--wait and --slurm.* go with --launcher slurm",
    }
    if shutil.which("srun") is None:
        cases[("--launcher", "slurm", "--slurm.time", "60")] = "--launcher slurm: no srun on this machine"
    for args, message in cases.items():
        assert main([*sweep, *args]) == 2, args
        err = capsys.readouterr().err
        assert err.startswith("error: ") and message in err and err.count("\n") == 1, (args, err)
    monkeypatch.setitem(sys.modules, "submitit", None)  # not installed
    assert main([*sweep, "--launcher", "slurm", "--slurm.time", "60"]) == 2
    assert capsys.readouterr().err == "error: --launcher needs submitit: pip install 'hypernetworks[slurm]'\n"
    assert not (tmp_path / "out").exists()  # nothing checked, submitted or written


def test_slurm_submits_one_array_with_the_options_given(tmp_path, capsys):
    """sbatch mocked (submitit's own mock): one array of a task per point, the options in its script."""
    test_slurm = pytest.importorskip("submitit.slurm.test_slurm")
    path = tiny_sweep(tmp_path)
    with test_slurm.mocked_slurm():
        options = {"partition": "gpu", "gpus_per_task": "1", "time": "90", "array_parallelism": "2",
                   "setup": "[module load cuda]"}
        jobs = launch(load_sweep(path), tmp_path / "out", run_point, options=options)
    sbatch = next((tmp_path / "out" / "jobs").glob("**/*.sh")).read_text()
    assert len(jobs) == 4 and "submitted 4 tasks to SLURM (jobs 12_0, 12_1, 12_2, 12_3)" in capsys.readouterr().out
    for line in ("--array=0-3%2", "--partition=gpu", "--gpus-per-task=1", "--time=90", "--signal=USR2@90",
                 "--job-name=tiny_sweep", "module load cuda"):
        assert line in sbatch, line
