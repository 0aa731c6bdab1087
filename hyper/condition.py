"""Conditions: what a conditional weight source reads besides its layer embeddings.

A conditional source (``Hyper(condition_dim=c)``, ``Hyper(num_tasks=T)``) generates weights that
depend on a vector e of size c:

- e of shape ``(c,)``: one weight set for the whole batch (one generator call per kernel size, as
  an unconditional source);
- e of shape ``(B, c)``: a weight set per sample (``hyper/per_sample.py`` runs them);
- ``task=t`` (an int, or a ``(B,)`` tensor of ints) picks rows of the source's learned task
  embeddings, so e = ``task_embeddings[t]``.

``resolve_condition`` turns what a caller passed into e, or says in one line what is wrong.
"""

from __future__ import annotations

import reprlib

import torch
from torch import Tensor, nn


def is_conditional(source: nn.Module) -> bool:
    return getattr(source, "condition_dim", None) is not None


def resolve_condition(source: nn.Module, condition: object = None, task: object = None) -> Tensor | None:
    """e for ``source`` from ``condition`` or ``task``: ``(c,)``, ``(B, c)``, or None when the
    source is not conditional (and neither was given).

    Raises:
        ValueError: naming ``condition`` or ``task`` when the call does not fit the source.
    """
    condition_dim = getattr(source, "condition_dim", None)
    num_tasks = getattr(source, "num_tasks", None)
    if condition_dim is None:
        if condition is not None or task is not None:
            given = "condition" if condition is not None else "task"
            raise ValueError(
                f"{given}: this model's weight source is not conditional (it generates one weight set); "
                "build it with Hyper(condition_dim=...) or Hyper(num_tasks=...) to pass one"
            )
        return None
    if condition is not None and task is not None:
        raise ValueError("condition and task: pass one of them, not both (task=t means condition=task_embeddings[t])")
    if task is not None:
        return source.task_embeddings[_task_index(task, num_tasks, source.task_embeddings.device)]
    if condition is None:
        wanted = f"task= (an int below {num_tasks}) or " if num_tasks else ""
        raise ValueError(
            f"condition: this model's weights depend on a condition; pass {wanted}condition= "
            f"(a ({condition_dim},) tensor for one weight set, or (B, {condition_dim}) for one per sample)"
        )
    if not isinstance(condition, Tensor):
        raise ValueError(f"condition must be a tensor of shape ({condition_dim},) or (B, {condition_dim}), got {reprlib.repr(condition)}")
    if condition.dim() not in (1, 2) or condition.shape[-1] != condition_dim or condition.shape[0] == 0:
        raise ValueError(f"condition must have shape ({condition_dim},) or (B, {condition_dim}), got {tuple(condition.shape)}")
    if not condition.is_floating_point():
        raise ValueError(f"condition must be a floating-point tensor, got {condition.dtype} (for task ids pass task=)")
    return condition


def _task_index(task: object, num_tasks: int, device: torch.device) -> Tensor | int:
    if isinstance(task, bool) or not isinstance(task, (int, Tensor)):
        raise ValueError(f"task must be an int or a (B,) tensor of ints below {num_tasks}, got {reprlib.repr(task)}")
    if isinstance(task, int):
        if not 0 <= task < num_tasks:
            raise ValueError(f"task must be in [0, {num_tasks}), got {task}")
        return task
    if task.dtype.is_floating_point or task.dtype == torch.bool or task.dim() > 1 or task.numel() == 0:
        raise ValueError(f"task must be an int or a (B,) tensor of ints, got a {task.dtype} tensor of shape {tuple(task.shape)}")
    if task.dim() == 0:
        return _task_index(int(task), num_tasks, device)
    low, high = int(task.min()), int(task.max())
    if low < 0 or high >= num_tasks:
        raise ValueError(f"task must be in [0, {num_tasks}), got {low if low < 0 else high}")
    return task.to(device)
