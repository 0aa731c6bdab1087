"""What every compression callback declares, so that the report and the paths that reload a
checkpoint treat them all alike, knowing none of them by name.

A compression callback is a ``Compression``. It says:

- ``counts_nonzero``: its compression is zeros in the weights (pruning), so the report counts
  trainable parameters on the non-zero weights (``count_parameters(nonzero=True)``). Bytes need
  no word from it: ``hyper.storage`` reads zeros and quantisers off the network itself;
- ``reapply(network)``: the network as the run tests it, made from the weights a checkpoint
  holds: quantisers put back on the float (latent) weights; nothing for pruning, whose zeros
  are in the weights. Idempotent: a network that is already compressed comes back as it is;
- ``arguments()``: the keyword arguments that make the callback again, as plain data.

Every checkpoint a compressed run writes records its compressions (``RECORD_KEY``: each one's
class path and arguments, in the order of the callbacks). A path that reloads the checkpoint
without those callbacks gets them back from there: ``test``, ``validate`` and ``predict
--ckpt_path`` add the missing ones to the trainer (``missing_from``), and
``network_from_checkpoint`` (``sample``, a teacher) reapplies them (``reapply_recorded``). In a
run, the callback reapplies itself before test, predict and a ``validate`` of its own.

Callbacks that replace the network (``hyper.training.compression.surgery``) are not compressions
in this sense: their checkpoints hold a network that the config does not build (test them in
the run that made them).
"""

from __future__ import annotations

import importlib
from collections.abc import Iterable
from typing import Any, ClassVar

import lightning as L
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.trainer.states import TrainerFn
from torch import nn

RECORD_KEY = "compression"  # a checkpoint's list of {"class_path": ..., "init_args": {...}}
# Quantised runs' checkpoints from before the record: {"quantization": {"bits": b}}, still read.
LEGACY_QUANTIZATION_KEY = "quantization"
LEGACY_QUANTIZATION_CLASS = "hyper.training.compression.quantization.PostTrainingQuantization"


class Compression(Callback):
    """A callback that compresses the network it trains or tests (see the module doc).

    Subclasses set ``counts_nonzero`` and override ``reapply`` and ``arguments`` as they need; a
    subclass that overrides ``on_save_checkpoint`` calls this one's (it writes the record).
    """

    counts_nonzero: ClassVar[bool] = False

    def arguments(self) -> dict[str, Any]:
        """The keyword arguments that make this callback again: plain data (a checkpoint keeps them)."""
        return {}

    def reapply(self, network: nn.Module) -> nn.Module:
        """``network``, holding the run's saved weights, compressed as the run tested it."""
        return network

    def on_test_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        pl_module.network = self.reapply(pl_module.network)

    def on_predict_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        pl_module.network = self.reapply(pl_module.network)

    def on_validation_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.state.fn == TrainerFn.VALIDATING:  # ``validate`` on its own, not fit's
            pl_module.network = self.reapply(pl_module.network)

    def on_save_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict[str, Any]) -> None:
        checkpoint.setdefault(RECORD_KEY, []).append(record(self))
        super().on_save_checkpoint(trainer, pl_module, checkpoint)


def record(compression: Compression) -> dict[str, Any]:
    """What a checkpoint keeps of ``compression``: its class path and arguments."""
    kind = type(compression)
    return {"class_path": f"{kind.__module__}.{kind.__qualname__}", "init_args": compression.arguments()}


def counts_nonzero(callbacks: Iterable[Callback]) -> bool:
    """Whether a compression among ``callbacks`` has its network counted on non-zero weights."""
    return any(isinstance(callback, Compression) and callback.counts_nonzero for callback in callbacks)


def recorded(checkpoint: dict[str, Any], *, source: str) -> list[Compression]:
    """The compressions a checkpoint's run used, made again from its record.

    Args:
        checkpoint: ``load_checkpoint``'s answer.
        source: how the user gave it (``--ckpt_path X``), for the message.
    """
    entries = list(checkpoint.get(RECORD_KEY, []))
    if not entries and checkpoint.get(LEGACY_QUANTIZATION_KEY):  # written before the record existed
        bits = int(checkpoint[LEGACY_QUANTIZATION_KEY]["bits"])
        entries = [{"class_path": LEGACY_QUANTIZATION_CLASS, "init_args": {"bits": bits}}]
    return [_rebuild(entry, source=source) for entry in entries]


def missing_from(checkpoint: dict[str, Any], callbacks: Iterable[Callback], *, source: str) -> list[Compression]:
    """The checkpoint's compressions of which ``callbacks`` hold no callback of the same class."""
    present = {type(callback) for callback in callbacks}
    return [compression for compression in recorded(checkpoint, source=source) if type(compression) not in present]


def reapply_recorded(network: nn.Module, checkpoint: dict[str, Any], *, source: str) -> nn.Module:
    """``network``, loaded with the checkpoint's weights, compressed as the checkpoint's run tested it."""
    for compression in recorded(checkpoint, source=source):
        network = compression.reapply(network)
    return network


def _rebuild(entry: dict[str, Any], *, source: str) -> Compression:
    path = entry["class_path"]
    module_name, _, name = path.rpartition(".")
    try:
        kind = getattr(importlib.import_module(module_name), name)
    except (ImportError, AttributeError, ValueError):
        raise ValueError(f"{source} was compressed by {path}, which cannot be imported here") from None
    if not (isinstance(kind, type) and issubclass(kind, Compression)):
        raise ValueError(f"{source} records {path} as its compression, but it is no compression callback")
    return kind(**entry["init_args"])
