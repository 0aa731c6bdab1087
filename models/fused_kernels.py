"""Fused CPU kernels for the recurrent loops' per-step arithmetic, compiled on first use.

At the loops' sizes (a batch of 32 by 4 × 256 gate values) a step of the LSTM update is ~20
elementwise operations forward and ~13 backward, each a separate pass over memory plus a
dispatch: together they cost the HyperLSTM more time than its hyper LSTM's matmuls. The kernels
in ``models/csrc/lstm_kernels.cpp`` do a step's update in one pass per example (one call forward,
one backward), and the HyperLSTM's assembly of its gates from d_h, d_x, d_b and its backward
in one call each. Measured on one thread here: the main update's forward 96 → 33 µs, the hyper
LSTM's 72 → 20 µs.

They are a C++ extension built with ``torch.utils.cpp_extension`` the first time a loop runs
(~40 s, once per machine: the build is cached under ``TORCH_EXTENSIONS_DIR``, by default
``~/.cache/torch_extensions``). That needs a C++ compiler and ninja; where either is missing,
the build fails, or ``HYPER_FUSED_KERNELS=0`` is set, the loops run their eager operations
(``models.lstm_update``), which compute the same values up to float rounding (the tests check
both paths against autograd). Only CPU tensors of float32 or float64 go through the kernels.

One process builds at a time. A build killed midway (SIGKILL, out of memory) leaves torch's lock
file behind, on which later runs would wait forever: the next run finds no builder alive, removes
it with a warning and builds again. A run that finds another process building waits for it, and
says so, up to ``HYPER_FUSED_KERNELS_WAIT`` seconds (default 300), then runs the eager path with
a warning.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import time
import warnings
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from pathlib import Path
from types import ModuleType
from typing import IO

import torch
from torch import Tensor

try:
    import fcntl
except ImportError:  # Windows: no flock, so builds are not guarded (torch's own lock alone)
    fcntl = None

SOURCE = Path(__file__).parent / "csrc" / "lstm_kernels.cpp"
ENV_SWITCH = "HYPER_FUSED_KERNELS"  # "0" turns the kernels off
WAIT_SWITCH = "HYPER_FUSED_KERNELS_WAIT"  # seconds to wait for another process's build
DEFAULT_WAIT_S = 300.0  # a build takes ~40 s alone, a few minutes on a busy machine
BUILDER_LOCK = "hyper_builder.lock"  # ours: flock-ed by the process building
TORCH_LOCK = "lock"  # cpp_extension's FileBaton: created by its builder, removed only by it
_POLL_S = 0.2
_DTYPES = (torch.float32, torch.float64)
# The vector instructions the build may use: those torch itself dispatches to on this CPU.
_CAPABILITY_FLAGS = {
    "AVX512": ["-DCPU_CAPABILITY_AVX512", "-mavx512f", "-mavx512bw", "-mavx512vl", "-mavx512dq", "-mfma"],
    "AVX2": ["-DCPU_CAPABILITY_AVX2", "-mavx2", "-mfma"],
}

_log = logging.getLogger(__name__)
_lock = threading.Lock()
_module: ModuleType | None = None
_tried = False
enabled = os.environ.get(ENV_SWITCH, "1") != "0"  # tests switch the kernels off to check the eager path


def _build() -> ModuleType | None:
    name = _extension_name()
    directory = _build_directory(name)
    wait_s = _wait_limit()
    try:
        with _sole_builder(directory, wait_s):
            if not any(directory.glob(f"{name}*.so")):
                _log.warning("Building the fused LSTM CPU kernels (once per machine, about a minute)")
            return _compile(name, directory)
    except Exception as error:  # no compiler, no ninja, a failed build, a builder that never ends
        warnings.warn(
            f"HyperLSTM/LSTM fused CPU kernels unavailable ({type(error).__name__}: {str(error)[:200]}); "
            f"using the slower eager path (set {ENV_SWITCH}=0 to skip the build)",
            stacklevel=3,
        )
        return None


def _extension_name() -> str:
    """One build per CPU capability and Python (the build links against both)."""
    capability = torch.backends.cpu.get_cpu_capability().lower()
    return f"hyper_lstm_kernels_{capability}_py{sys.version_info.major}{sys.version_info.minor}{sys.abiflags}"


def _build_directory(name: str) -> Path:
    """Ours to name (torch's default layout is private): ``name`` under the extensions root."""
    from torch.utils.cpp_extension import get_default_build_root

    return Path(os.environ.get("TORCH_EXTENSIONS_DIR") or get_default_build_root()) / name


def _wait_limit() -> float:
    raw = os.environ.get(WAIT_SWITCH, str(DEFAULT_WAIT_S))
    try:
        seconds = float(raw)
    except ValueError:
        seconds = -1.0
    if not 0 <= seconds < float("inf"):
        raise ValueError(f"{WAIT_SWITCH} must be a number of seconds, got {raw!r}")
    return seconds


def _compile(name: str, directory: Path) -> ModuleType:
    """Build (or, when the cached build is current, just load) the extension: ~40 s or ~1 s."""
    from torch.utils import cpp_extension

    flags = ["-O3", *_CAPABILITY_FLAGS.get(torch.backends.cpu.get_cpu_capability(), [])]
    return cpp_extension.load(name=name, sources=[str(SOURCE)], extra_cflags=flags, build_directory=str(directory))


# torch's lock file records no builder, so a build killed midway (SIGKILL, OOM) leaves one that
# every later load waits on forever. Our builders also hold a flock on a file of ours: the OS
# drops a flock when its holder dies, however it dies, so it tells a live builder from a dead one.


def _sole_builder(directory: Path, wait_s: float) -> AbstractContextManager[None]:
    """Be the only builder of ours in ``directory`` for the ``with`` block (see above)."""
    return _flock_builder(directory, wait_s) if fcntl is not None else nullcontext()


@contextmanager
def _flock_builder(directory: Path, wait_s: float) -> Iterator[None]:
    directory.mkdir(parents=True, exist_ok=True)
    with open(directory / BUILDER_LOCK, "a+") as handle:  # "a+": keeps a live holder's pid
        _acquire(handle, wait_s)
        handle.truncate(0)
        handle.write(f"{os.getpid()}\n")  # for another process's waiting message
        handle.flush()
        _remove_stale_torch_lock(directory)
        yield
    # closing the file released the flock


def _acquire(handle: IO[str], wait_s: float) -> None:
    """flock ``handle``, waiting up to ``wait_s`` for a live holder; TimeoutError after."""
    if _try_flock(handle):
        return
    holder = _holder(handle)
    _log.warning(
        "Another process (pid %s) is building the fused LSTM CPU kernels (%s): waiting for it, up to %g s (%s)",
        holder, handle.name, wait_s, WAIT_SWITCH,
    )
    deadline = time.monotonic() + wait_s
    while not _try_flock(handle):
        if time.monotonic() >= deadline:
            raise TimeoutError(f"pid {holder} still building after {wait_s:g} s; stopped?")
        time.sleep(_POLL_S)


def _try_flock(handle: IO[str]) -> bool:
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except BlockingIOError:
        return False


def _holder(handle: IO[str]) -> str:
    """The pid the lock's holder wrote, or "?" while it has not yet."""
    handle.seek(0)
    return handle.read().strip() or "?"


def _remove_stale_torch_lock(directory: Path) -> None:
    """With our flock held no builder of ours is alive, so torch's lock file is a dead one's."""
    stale = directory / TORCH_LOCK
    if stale.exists():
        stale.unlink(missing_ok=True)
        _log.warning("Removed a stale lock left by a killed build of the fused LSTM CPU kernels (%s)", stale)


def kernels() -> ModuleType | None:
    """The compiled kernels (built on the first call), or None where they cannot be built."""
    global _module, _tried
    if not _tried:
        with _lock:
            if not _tried:
                _module = _build()
                _tried = True
    return _module


def usable(like: Tensor) -> bool:
    """Whether the kernels are on and can run on tensors like ``like`` (builds them if needed)."""
    return enabled and like.device.type == "cpu" and like.dtype in _DTYPES and kernels() is not None
