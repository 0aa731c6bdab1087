"""Sequence-long CPU buffers that the recurrent loops reuse from one training step to the next.

A fresh multi-megabyte tensor costs a page fault for every 4 KiB page the first time it is
written: glibc serves such sizes with mmap and unmaps them on free, so every training step
would fault its buffers in again (13 MB took 4.9 ms to allocate and fill here against 0.2 ms
to refill, as much as a fifth of an LSTM layer's forward pass). The fused loops
(``models.lstm_scan``, ``models.hyper_lstm_scan``) ``take`` their buffers here and ``give``
them back once nothing can read them any more: at the end of the forward pass for buffers it
alone uses, at the end of the backward pass for the ones it saves (unless the graph is kept
for another backward pass, ``retain_graph=True``). A buffer whose graph is dropped without a
backward pass is simply freed. Between steps the pool holds about one step's buffers; ``clear()``
releases them. CUDA and other devices bypass the pool (PyTorch's own allocator caches there).
"""

from __future__ import annotations

import threading
from collections.abc import Sequence

import torch
from torch import Tensor

MAX_PER_SIZE = 16  # buffers kept per (element count, dtype)

_free: dict[tuple[int, torch.dtype], list[Tensor]] = {}
_lock = threading.Lock()


def take(shape: Sequence[int], like: Tensor) -> Tensor:
    """An uninitialised tensor of ``shape`` with ``like``'s dtype and device."""
    if like.device.type != "cpu":
        return like.new_empty(shape)
    numel = 1
    for size in shape:
        numel *= size
    with _lock:
        free = _free.get((numel, like.dtype))
        buffer = free.pop() if free else None
    return like.new_empty(shape) if buffer is None else buffer.view(shape)


def give(*tensors: Tensor | None) -> None:
    """Return buffers from ``take`` for reuse; the caller must hold no other view of them."""
    for tensor in tensors:
        if tensor is None or tensor.device.type != "cpu":
            continue
        with _lock:
            free = _free.setdefault((tensor.numel(), tensor.dtype), [])
            if len(free) < MAX_PER_SIZE:
                free.append(tensor)


def graph_kept() -> bool:
    """Whether the running backward pass keeps its graph (``retain_graph=True``): its saved
    buffers may then be read again and must not be reused. True when torch cannot say."""
    keep_graph = getattr(torch._C._autograd, "_get_current_graph_task_keep_graph", None)
    return True if keep_graph is None else bool(keep_graph())


def clear() -> None:
    """Free every pooled buffer."""
    with _lock:
        _free.clear()
