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
"""

from __future__ import annotations

import logging
import os
import threading
import warnings
from pathlib import Path
from types import ModuleType

import torch
from torch import Tensor

SOURCE = Path(__file__).parent / "csrc" / "lstm_kernels.cpp"
ENV_SWITCH = "HYPER_FUSED_KERNELS"  # "0" turns the kernels off
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
    from torch.utils import cpp_extension

    capability = torch.backends.cpu.get_cpu_capability()
    name = f"hyper_lstm_kernels_{capability.lower()}"
    if not _built_before(name):
        _log.warning("Building the fused LSTM CPU kernels (once per machine, about a minute)")
    try:
        return cpp_extension.load(name=name, sources=[str(SOURCE)], extra_cflags=["-O3", *_CAPABILITY_FLAGS.get(capability, [])])
    except Exception as error:  # no compiler, no ninja, a failed build: the eager path runs
        warnings.warn(
            f"HyperLSTM/LSTM fused CPU kernels unavailable ({type(error).__name__}: {str(error)[:200]}); "
            f"using the slower eager path (set {ENV_SWITCH}=0 to skip the build)",
            stacklevel=3,
        )
        return None


def _built_before(name: str) -> bool:
    """Whether a build of ``name`` is cached (then loading takes a second); False if unsure."""
    try:
        from torch.utils.cpp_extension import _get_build_directory  # private: only for this message

        return any(Path(_get_build_directory(name, verbose=False)).glob(f"{name}*.so"))
    except Exception:
        return False


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
