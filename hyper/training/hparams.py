"""What a LightningModule saves as hyperparameters, so that a checkpoint can rebuild it and never
has to pickle an object.

Under LightningCLI (``load_from_checkpoint_support``, on by default) the arguments Lightning saves
are the parsed config: an injected network is ``class_path`` + ``init_args``, which lets
``test --ckpt_path`` and ``load_from_checkpoint`` rebuild it. Built in Python, the arguments are
the objects themselves (a network, an optimizer class): a checkpoint must not pickle those, so
they are left out, as Lightning recommends for injected modules, and are given again to
``load_from_checkpoint(path, network=...)``.
"""

from __future__ import annotations

import inspect
import warnings
from typing import Any

import lightning as L


def save_hyperparameters(module: L.LightningModule) -> None:
    """Call from ``__init__``: save its arguments, less any that is not plain data."""
    frame = inspect.currentframe().f_back  # the caller's __init__, whose arguments are saved
    with warnings.catch_warnings():  # Lightning warns about a saved nn.Module, left out below
        warnings.filterwarnings("ignore", message=".*is an instance of `nn.Module`")
        module.save_hyperparameters(frame=frame)
    objects = [name for name, value in module.hparams.items() if not _plain(value)]
    if objects:
        module.save_hyperparameters(ignore=objects, frame=frame)


def _plain(value: Any) -> bool:
    """Whether ``value`` is data a checkpoint holds as is (numbers, strings, lists and dicts of them)."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return True
    if isinstance(value, (list, tuple)):
        return all(_plain(v) for v in value)
    if isinstance(value, dict):
        return all(isinstance(k, str) and _plain(v) for k, v in value.items())
    return False
