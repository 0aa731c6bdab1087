"""A killed build of the fused kernels must not hang later runs.

torch's ``cpp_extension`` guards a build with a ``lock`` file in the build directory that only
its builder removes: a builder killed midway leaves it, and every later run used to wait on it
forever. Now a run removes it when no builder of ours is alive (it then builds or loads as
usual), and waits for a live builder only up to a bound, then runs the eager path.

Unit tests stand in for the compiler (fast, no build); the end-to-end tests run a real process
on a copy of this machine's build, so they load the kernels in seconds instead of building them.
"""

import fcntl
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from models import fused_kernels
from test_lstm_scan import REQUIRE_SWITCH, require_fused_kernels

REPO = Path(__file__).resolve().parents[1]
COMPILED = object()  # what the stand-in compiler returns
# A run that needs the kernels: an LN-LSTM forward on CPU, then which path it took.
NEEDS_KERNELS = (
    "import torch; from models import LNLSTM, fused_kernels; "
    "LNLSTM(input_size=3, hidden_size=4)(torch.randn(2, 5, 3)); "
    "print('fused' if fused_kernels.kernels() is not None else 'eager')"
)


@contextmanager
def another_builder(directory: Path):
    """Hold the builders' lock as a live build in another process would (its own open file:
    flock conflicts between open files even within one process), torch's lock file included."""
    directory.mkdir(parents=True, exist_ok=True)
    with open(directory / fused_kernels.BUILDER_LOCK, "a+") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        (directory / fused_kernels.TORCH_LOCK).touch()
        yield handle
        (directory / fused_kernels.TORCH_LOCK).unlink(missing_ok=True)


@contextmanager
def failing_after(seconds: int):
    """Fail the test, rather than hang it, if the block is still running after ``seconds``."""

    def fail(signum, frame):
        pytest.fail(f"still waiting after {seconds} s: the wait for the other builder is not bounded")

    previous = signal.signal(signal.SIGALRM, fail)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def fallback_warnings(record) -> list[str]:
    return [str(w.message) for w in record if "using the slower eager path" in str(w.message)]


# --- unit tests: a stand-in compiler, an empty extensions root ---------------------------------


@dataclass
class StandIn:
    """The build directory under an empty extensions root, and a record, per call of the
    stand-in compiler, of whether torch's lock file was still there (torch would wait on it)."""

    directory: Path
    compiled_with_lock: list[bool] = field(default_factory=list)


@pytest.fixture
def build(tmp_path, monkeypatch) -> StandIn:
    monkeypatch.setenv("TORCH_EXTENSIONS_DIR", str(tmp_path))
    monkeypatch.delenv(fused_kernels.WAIT_SWITCH, raising=False)
    build = StandIn(fused_kernels._build_directory(fused_kernels._extension_name()))

    def compile_(name: str, directory: Path):
        build.compiled_with_lock.append((directory / fused_kernels.TORCH_LOCK).exists())
        return COMPILED

    monkeypatch.setattr(fused_kernels, "_compile", compile_)
    return build


def test_without_a_lock_the_build_runs_without_a_word(build, recwarn, caplog):
    assert fused_kernels._build() is COMPILED
    assert build.compiled_with_lock == [False]
    assert not fallback_warnings(recwarn)
    assert not [r for r in caplog.records if "lock" in r.getMessage()]


def test_a_stale_lock_is_removed_with_one_warning_then_the_build_runs(build, recwarn, caplog):
    build.directory.mkdir(parents=True, exist_ok=True)
    (build.directory / fused_kernels.TORCH_LOCK).touch()  # a killed build's: no builder holds our lock
    assert fused_kernels._build() is COMPILED
    assert build.compiled_with_lock == [False]
    stale = [r for r in caplog.records if "stale" in r.getMessage()]
    assert len(stale) == 1 and stale[0].levelname == "WARNING"
    assert "\n" not in stale[0].getMessage()
    assert not fallback_warnings(recwarn)


def test_a_live_builder_is_waited_for_a_bounded_time_then_the_eager_path_runs(build, monkeypatch, caplog):
    monkeypatch.setenv(fused_kernels.WAIT_SWITCH, "0.5")
    with another_builder(build.directory), pytest.warns(UserWarning) as record, failing_after(10):
        start = time.monotonic()
        assert fused_kernels._build() is None
        waited = time.monotonic() - start
        assert (build.directory / fused_kernels.TORCH_LOCK).exists(), "a live builder's lock was removed"
    assert 0.5 <= waited < 5
    assert build.compiled_with_lock == []
    assert len(fallback_warnings(record)) == 1
    assert "still building after 0.5 s" in fallback_warnings(record)[0]
    assert [r for r in caplog.records if "waiting for it" in r.getMessage()], "nothing said while waiting"


def test_a_live_builder_that_finishes_in_time_is_waited_for(build, monkeypatch, recwarn):
    monkeypatch.setenv(fused_kernels.WAIT_SWITCH, "30")
    with another_builder(build.directory) as handle:
        # The other builder finishes: torch removes its lock file, then the flock goes.
        finish = threading.Timer(0.3, lambda: ((build.directory / fused_kernels.TORCH_LOCK).unlink(), handle.close()))
        finish.start()
        start = time.monotonic()
        with failing_after(10):
            assert fused_kernels._build() is COMPILED
        finish.join()
    assert time.monotonic() - start < 10
    assert build.compiled_with_lock == [False]
    assert not fallback_warnings(recwarn)


def test_a_wait_that_is_not_a_number_of_seconds_is_refused(build, monkeypatch):
    monkeypatch.setenv(fused_kernels.WAIT_SWITCH, "soon")
    with pytest.raises(ValueError, match=f"{fused_kernels.WAIT_SWITCH} must be a number of seconds"):
        fused_kernels._build()


# --- end to end: a process that needs the kernels, on a copy of this machine's build ----------


@pytest.fixture
def built_copy(tmp_path) -> Path:
    """A copy of this machine's build (built first if need be) under an extensions root of its
    own: what the real cache holds after a build, without touching the shared cache."""
    require_fused_kernels()
    built = Path(fused_kernels.kernels().__file__).parent
    locks = shutil.ignore_patterns("lock", "*.lock")  # torch's and ours, if a build is under way there
    return Path(shutil.copytree(built, tmp_path / built.name, ignore=locks))  # keeps mtimes: ninja has nothing to do


def run_needing_kernels(build: Path, timeout: float = 90, **env: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "TORCH_EXTENSIONS_DIR": str(build.parent), "OMP_NUM_THREADS": "1", **env}
    env.pop(fused_kernels.ENV_SWITCH, None)
    try:
        return subprocess.run(
            [sys.executable, "-c", NEEDS_KERNELS], cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout
        )
    except subprocess.TimeoutExpired:
        pytest.fail(f"a run that needs the fused kernels still hung after {timeout:.0f} s (waiting on the lock?)")


def test_a_run_after_a_killed_build_removes_its_lock_and_uses_the_kernels(built_copy):
    (built_copy / "lock").touch()  # what a build killed by SIGKILL or OOM leaves
    run = run_needing_kernels(built_copy)
    assert run.returncode == 0, run.stderr
    assert run.stdout.split() == ["fused"], run.stderr
    assert len([line for line in run.stderr.splitlines() if "stale" in line]) == 1, run.stderr
    assert not (built_copy / "lock").exists()


def test_a_run_during_a_live_build_waits_a_bounded_time_then_runs_eager(built_copy):
    with another_builder(built_copy):
        run = run_needing_kernels(built_copy, **{fused_kernels.WAIT_SWITCH: "1"})
    assert run.returncode == 0, run.stderr
    assert run.stdout.split() == ["eager"], run.stderr
    assert "waiting for it" in run.stderr
    assert "using the slower eager path" in run.stderr


# --- CI requires the fused-kernel tests to run rather than skip -------------------------------


@pytest.mark.parametrize("required, outcome", [("1", pytest.fail.Exception), (None, pytest.skip.Exception)])
def test_ci_fails_where_a_user_skips(monkeypatch, required, outcome):
    monkeypatch.setattr(fused_kernels, "enabled", False)
    if required is None:
        monkeypatch.delenv(REQUIRE_SWITCH, raising=False)
    else:
        monkeypatch.setenv(REQUIRE_SWITCH, required)
    with pytest.raises(outcome, match=f"{fused_kernels.ENV_SWITCH}=0"):
        require_fused_kernels()
