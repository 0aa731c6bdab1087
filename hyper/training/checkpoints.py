"""Checkpoints: read safely, written as a run needs them, found where a run keeps them.

Every checkpoint the project reads goes through ``load_checkpoint``: ``torch.load`` with
``weights_only=True``, which refuses to run code hidden in a pickle, and a one-line error naming
the file when it is missing, empty, truncated or not a checkpoint.

A run keeps two files in ``RUN/checkpoints/``: ``best.ckpt``, the best on the monitored validation
metric, and ``last.ckpt``, the latest state (written at the end of every epoch, or after every
validation when validation is step-based, and put in place once the metrics logged up to it are
on disk); ``--ckpt_path RUN/checkpoints/last.ckpt`` resumes it.
"""

from __future__ import annotations

import os
import pickle
import zipfile
from pathlib import Path
from typing import Any

import lightning as L
import torch
from jsonargparse import ArgumentParser
from lightning.pytorch.callbacks import ModelCheckpoint
from torch import nn

from hyper.training.compression.protocol import reapply_recorded

BEST, LAST = "best", "last"
PART = ".part"  # a checkpoint written, not yet in place


def load_checkpoint(path: str | Path, *, flag: str = "--ckpt_path") -> dict[str, Any]:
    """A Lightning checkpoint's contents on the CPU; ValueError or FileNotFoundError in the user's terms.

    Args:
        path: the checkpoint file.
        flag: how the user gave it (``--ckpt_path``, ``--model.teacher``), for the message.
    """
    path = Path(path)
    if path.is_dir():
        raise ValueError(f"{flag} {path} is a directory; expected a .ckpt file written by train.py")
    if not path.is_file():
        raise FileNotFoundError(f"{flag} {path}: no such checkpoint file")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except pickle.UnpicklingError as err:
        raise ValueError(_unpickling_message(path, flag, err)) from None
    except (RuntimeError, EOFError, OSError, ValueError, zipfile.BadZipFile) as err:
        reason = (str(err).strip().splitlines() or [type(err).__name__])[0]
        raise ValueError(
            f"{flag} {path} is not a readable checkpoint ({reason}); it is empty, truncated or not "
            "a .ckpt written by train.py"
        ) from None
    if not isinstance(checkpoint, dict) or "state_dict" not in checkpoint:
        raise ValueError(f"{flag} {path} is not a Lightning checkpoint (it holds no state_dict)")
    return checkpoint


def _unpickling_message(path: Path, flag: str, err: pickle.UnpicklingError) -> str:
    if "weights only" in str(err).lower():  # torch refused a global: code or an arbitrary object
        return (
            f"{flag} {path} holds Python objects other than tensors and plain data; it was refused "
            "unread (weights_only loading), since unpickling them could run code"
        )
    return f"{flag} {path} is not a readable checkpoint ({str(err).strip()}); it is corrupt or not a .ckpt"


def run_checkpoints(*, monitor: str, mode: str, step_based: bool) -> list[ModelCheckpoint]:
    """``best.ckpt`` on ``monitor`` (first: the trainer's ``checkpoint_callback``) and ``last.ckpt``.

    Args:
        monitor: the validation metric the best checkpoint follows (``val_acc``).
        mode: ``max`` or ``min``.
        step_based: validation runs every so many steps (``check_val_every_n_epoch: null``): the
            latest state is then written after every validation, else at the end of every epoch.
    """
    best = ModelCheckpoint(
        monitor=monitor, mode=mode, filename=BEST, save_top_k=1, enable_version_counter=False
    )
    return [best, LatestCheckpoint(step_based=step_based)]


class LatestCheckpoint(ModelCheckpoint):
    """``last.ckpt``: the newest state, put in place only once the metrics logged up to it are on disk.

    Lightning logs an epoch's training metrics (``train_acc``) just after the checkpoints of the
    epoch's end are written, and a run resumed from them does not log that row again: a kill in
    between lost it. So the file is written beside (``last.ckpt.part``) and renamed into place,
    after the loggers have saved what they hold, when training goes on (the next batch), ends or
    fails. A kill before the rename resumes from the previous ``last.ckpt``.

    Args:
        step_based: validation runs every so many steps: write after every validation (mid-epoch
            too), not at the end of every epoch.
    """

    def __init__(self, *, step_based: bool) -> None:
        # monitor=None keeps the newest state only. ModelCheckpoint(save_last=True) would not do: it
        # writes last.ckpt only when the monitored metric improves (Lightning 2.6).
        super().__init__(
            filename=LAST, save_top_k=1, enable_version_counter=False, save_on_train_epoch_end=not step_based
        )
        self._unpublished: str | None = None

    def _save_checkpoint(self, trainer: L.Trainer, filepath: str) -> None:  # ModelCheckpoint's one writer
        super()._save_checkpoint(trainer, filepath + PART)
        self._last_checkpoint_saved = self._unpublished = filepath

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:  # noqa: ANN001
        self._publish(trainer)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        super().on_train_end(trainer, pl_module)
        self._publish(trainer)

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException) -> None:
        super().on_exception(trainer, pl_module, exception)
        self._publish(trainer)

    def _publish(self, trainer: L.Trainer) -> None:
        if self._unpublished is None:
            return
        for logger in trainer.loggers:
            logger.save()
        written = Path(self._unpublished + PART)
        if trainer.is_global_zero and written.is_file():  # a failed run's folder may be gone
            os.replace(written, self._unpublished)
        self._unpublished = None


def run_folder(checkpoint: str | Path) -> Path | None:
    """The run folder a checkpoint was written in (``RUN/checkpoints/X.ckpt`` → ``RUN``), or None."""
    folder = Path(checkpoint).resolve().parent
    if folder.name != "checkpoints":
        return None
    run = folder.parent
    return run if (run / "config.yaml").is_file() or (run / "report.json").is_file() else None


def network_from_checkpoint(checkpoint: dict[str, Any], *, source: str) -> nn.Module:
    """The module's ``network``, rebuilt from the saved config and loaded with its weights,
    compressed again as the checkpoint's run was (quantised again where it was quantised).

    Args:
        checkpoint: ``load_checkpoint``'s answer.
        source: how the user gave it (``--ckpt_path X``), for the message.
    """
    config = checkpoint.get("hyper_parameters", {}).get("network")
    if not isinstance(config, dict) or "class_path" not in config:
        raise ValueError(
            f"{source} does not say how to build its network (no hyper_parameters.network): "
            "use a checkpoint written by train.py, or build the network in Python"
        )
    parser = ArgumentParser(exit_on_error=False)
    parser.add_argument("--network", type=nn.Module)
    network = parser.instantiate_classes(parser.parse_object({"network": config})).network
    prefix = "network."
    weights = {k.removeprefix(prefix): v for k, v in checkpoint["state_dict"].items() if k.startswith(prefix)}
    try:
        network.load_state_dict(weights)
    except RuntimeError as err:
        raise ValueError(f"{source}: its weights do not fit its network ({str(err).splitlines()[0]})") from None
    return reapply_recorded(network, checkpoint, source=source)
