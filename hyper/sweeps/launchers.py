"""A sweep as a job array on a SLURM cluster (or as subprocesses here), through submitit.

    python train.py sweep --config configs/sweeps/cifar10_wrn40_2.yaml --launcher slurm \\
        --slurm.partition gpu --slurm.gpus_per_task 1 --slurm.time 600 [--tasks 8] [--wait]

Each task of the array is one shard of the sweep (``--tasks N``: N shards; one point per task by
default), run in the task's process by ``run_sweep``, the code of an in-process sweep: it appends
its rows to ``results.shard-i-of-n.jsonl`` in the sweep's folder as points finish, skips finished
points and resumes a killed one from its ``last.ckpt``. So a task preempted or timed out loses no
more than the steps since its point's last checkpoint: submitit catches SLURM's warning signal
(USR2, ``signal_delay_s`` before the end), calls the task's ``checkpoint`` (the task itself, since
its progress is on disk) and requeues it. A task killed without warning is requeued by SLURM, or
resubmitted by running the same command again, which submits only the shards with work left. The
shards' rows merge as ``--shard``'s do.

Why submitit: it is maintained (Meta), writes the sbatch job array itself, checkpoints and requeues
on preemption and timeout, and its local executor runs the same tasks as subprocesses of this
machine (``--launcher local``): how the tests run a launch, and a way to try one before the cluster.
"""

from __future__ import annotations

import difflib
import typing
import warnings
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from hyper.sweeps.grid import Sweep, shard
from hyper.sweeps.results import done_keys
from hyper.sweeps.runner import CheckPoint, RunPoint, run_sweep

LAUNCHERS = ("slurm", "local")
PREFIX = "--slurm."
INSTALL = "pip install 'hypernetworks[slurm]'"
ONE_TASK = ("nodes", "ntasks_per_node")  # a point trains in one task: what it must stay at
LOCAL_TIMEOUT_MIN = 7 * 24 * 60  # a local task's limit when --slurm.time is not given
KINDS = {int: "an integer", str: "text", bool: "true or false", list: "a list [a, b]", Iterable: "a list [a, b]",
         dict: "a mapping {key: value}"}


@dataclass(frozen=True)
class SweepTask:
    """One task of the array: shard ``shard[0]`` of ``shard[1]`` of the sweep, run by ``run_sweep``
    in the task's process; submitit calls it, and calls it again after a requeue.

    Args:
        sweep: the loaded sweep.
        folder: the sweep's results folder.
        shard: ``(i, n)``, 1-based.
        run_point: trains and tests one point (``sweep_cli.run_point``).
        check_point: checks a point before any runs (``sweep_cli.check_point``).
    """

    sweep: Sweep
    folder: Path
    shard: tuple[int, int]
    run_point: RunPoint
    check_point: CheckPoint | None = None

    def __call__(self) -> int:
        """Run the shard's unfinished points; the number of rows added."""
        # As train.py's main does: the points' argument lists are meant, not this process's sys.argv.
        warnings.filterwarnings("ignore", message="LightningCLI's args parameter is intended")
        return len(run_sweep(self.sweep, self.folder, self.run_point, self.shard, check_point=self.check_point))

    def checkpoint(self) -> Any:
        """What submitit requeues on preemption or timeout: this task unchanged (its rows and
        checkpoints are on disk, and it skips and resumes from them)."""
        from submitit.helpers import DelayedSubmission

        return DelayedSubmission(self)


def split_slurm_options(args: Iterable[str]) -> tuple[dict[str, str], list[str]]:
    """``--slurm.KEY VALUE`` and ``--slurm.KEY=VALUE`` out of ``args``: ({KEY: VALUE}, the rest)."""
    options: dict[str, str] = {}
    rest: list[str] = []
    items = iter(args)
    for arg in items:
        if not arg.startswith(PREFIX):
            rest.append(arg)
            continue
        key, equals, value = arg.removeprefix(PREFIX).partition("=")
        if not equals:
            value = next(items, None)
            if value is None or value.startswith("--"):
                raise ValueError(f"{arg} needs a value ({arg} VALUE or {arg}=VALUE)")
        options[key] = value
    return options, rest


def slurm_parameters(options: dict[str, str]) -> dict[str, Any]:
    """The ``--slurm.*`` options as submitit's SlurmExecutor parameters, checked against them:
    one line for an unknown key, a value of the wrong type, or a point spread over tasks."""
    hints = _parameter_types()
    parameters = {}
    for key, text in options.items():
        if key not in hints:
            near = difflib.get_close_matches(key, hints, n=1)
            hint = f" (did you mean --slurm.{near[0]}?)" if near else ""
            raise ValueError(f"unknown option --slurm.{key}{hint}; submitit's are: {', '.join(sorted(hints))}")
        parameters[key] = _typed(key, text, hints[key])
    for key in ONE_TASK:
        if parameters.get(key) not in (None, 1):
            raise ValueError(
                f"--slurm.{key} {parameters[key]}: the launcher trains each point in one task on one node; "
                "train one point on several nodes as a single run under srun (docs/cli.md, Several nodes)"
            )
    if parameters.get("time", 1) < 1:
        raise ValueError(f"--slurm.time must be a positive number of minutes, got {parameters['time']}")
    if parameters.get("max_num_timeout", 0) < 0:
        raise ValueError(f"--slurm.max_num_timeout must be at least 0, got {parameters['max_num_timeout']}")
    return parameters


def launch(
    sweep: Sweep,
    folder: Path,
    run_point: RunPoint,
    *,
    launcher: str = "slurm",
    options: dict[str, str] | None = None,
    tasks: int | None = None,
    check_point: CheckPoint | None = None,
    check_here: CheckPoint | None = None,
    log: Callable[[str], None] = print,
) -> list[Any]:
    """Submit the sweep's shards that have work left as one job array; their submitit jobs.

    Args:
        sweep: the loaded sweep.
        folder: its results folder; submitit's logs and pickles go to ``folder/jobs``.
        run_point: trains and tests one point, in the task's process.
        launcher: ``slurm``, or ``local`` (the tasks as subprocesses of this machine).
        options: ``--slurm.*`` options, as text (``split_slurm_options``).
        tasks: the array's size: the sweep in that many shards (None: one point per task).
        check_point: checks a point, in each task before its first point runs.
        check_here: checks every point to run here, before anything is submitted
            (default ``check_point``).
    """
    if launcher not in LAUNCHERS:
        raise ValueError(f"--launcher must be one of {', '.join(LAUNCHERS)}, got {launcher!r}")
    parameters = slurm_parameters(options or {})
    if launcher == "slurm" and "time" not in parameters:
        raise ValueError("--launcher slurm needs --slurm.time MINUTES: each task's time limit "
                         "(a task that reaches it is checkpointed and requeued)")
    if launcher == "slurm" and _submitit().SlurmExecutor.affinity() <= 0:
        raise ValueError("--launcher slurm: no srun on this machine; submit from one of the cluster's "
                         "(--launcher local runs the tasks here)")
    shards = plan(sweep, folder, tasks, check_here or check_point, log)
    if not shards:
        return []
    executor = _executor(launcher, folder / "jobs", {"job_name": sweep.name, **parameters})
    jobs = executor.submit_array([SweepTask(sweep, folder, s, run_point, check_point) for s in shards])
    where = "to SLURM" if launcher == "slurm" else "as subprocesses here"
    ids = [job.job_id for job in jobs]
    shown = ", ".join(ids) if len(ids) <= 4 else f"{ids[0]} ... {ids[-1]}"
    log(f"submitted {len(jobs)} task{'s' * (len(jobs) > 1)} {where} (jobs {shown}); logs in {folder / 'jobs'}")
    return jobs


def plan(
    sweep: Sweep, folder: Path, tasks: int | None, check: CheckPoint | None, log: Callable[[str], None] = print
) -> list[tuple[int, int]]:
    """The shards ``(i, n)`` with a point still to run, every such point checked first."""
    points = sweep.points()
    count = len(points) if tasks is None else tasks
    if not 1 <= count <= len(points):
        raise ValueError(f"--tasks must be between 1 and the sweep's {len(points)} points, got {tasks}")
    done = done_keys(folder)
    todo = [p for p in points if p.key not in done]
    for point in todo if check is not None else ():
        check(point, folder / "runs" / point.key)
    shards = [(i, count) for i in range(1, count + 1) if any(p.key not in done for p in shard(points, i, count))]
    log(f"sweep {sweep.name}: {len(points)} points, {len(points) - len(todo)} already done, {len(todo)} to run "
        f"in {len(shards)} of {count} tasks -> {folder}")
    return shards


def wait(jobs: list[Any]) -> None:
    """Wait for every job; one line naming the failed ones and their logs, if any failed."""
    failed = []
    for job in jobs:
        try:
            job.result()
        except Exception as error:  # the task's own error is in its log; this names the task
            failed.append(f"job {job.job_id} ({type(error).__name__}; log {job.paths.stderr})")
    if failed:
        raise ValueError(f"{len(failed)} of {len(jobs)} tasks failed: {'; '.join(failed)}. Their finished "
                         "points are kept: run the same command again to resume the rest")


def _submitit() -> Any:
    try:
        import submitit
    except ImportError:
        raise ValueError(f"--launcher needs submitit: {INSTALL}") from None
    return submitit


def _parameter_types() -> dict[str, Any]:
    """SlurmExecutor's parameters and their types (read off the function that writes the sbatch
    file, which is what checks them), and the executor's own ``max_num_timeout``."""
    _submitit()
    from submitit.slurm.slurm import SlurmExecutor, _make_sbatch_string

    hints = typing.get_type_hints(_make_sbatch_string)
    known = SlurmExecutor._valid_parameters() - {"num_gpus", "map_count"}  # legacy, internal
    return {**{key: hints[key] for key in known}, "max_num_timeout": int}


def _typed(key: str, text: str, hint: Any) -> Any:
    """``text`` as YAML (``1``, ``[a, b]``, ``{k: v}``) or as it is, whichever ``hint`` takes."""
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError:
        value = text
    for candidate in (value, text):
        if _matches(candidate, hint):
            return candidate
    raise ValueError(f"--slurm.{key} takes {_describe(hint)}, got {text!r}")


def _matches(value: Any, hint: Any) -> bool:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is typing.Union:
        return any(_matches(value, arg) for arg in args)
    if origin in (list, Iterable):  # List[str], Iterable[str]
        return isinstance(value, list) and all(isinstance(v, args[0]) for v in value)
    if origin is dict:
        return isinstance(value, dict)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, hint)


def _describe(hint: Any) -> str:
    kinds = [typing.get_origin(arg) or arg for arg in typing.get_args(hint) or (hint,)]
    return " or ".join(KINDS[kind] for kind in kinds if kind in KINDS)


def _executor(launcher: str, folder: Path, parameters: dict[str, Any]) -> Any:
    submitit = _submitit()
    parameters = dict(parameters)
    max_num_timeout = parameters.pop("max_num_timeout", 3)
    if launcher == "slurm":
        executor = submitit.SlurmExecutor(folder=folder, max_num_timeout=max_num_timeout)
        try:
            executor.update_parameters(**parameters)
        except (ValueError, TypeError) as error:  # what submitit's own checks refuse
            raise ValueError(f"--slurm options: {str(error).splitlines()[0]}") from None
        return executor
    # Here: the time limit, and the GPUs each task sees (none unless asked for).
    executor = submitit.LocalExecutor(folder=folder, max_num_timeout=max_num_timeout)
    gpus = parameters.get("gpus_per_task") or parameters.get("gpus_per_node") or 0
    executor.update_parameters(timeout_min=parameters.get("time", LOCAL_TIMEOUT_MIN), gpus_per_node=gpus)
    return executor
