"""A callback for the multi-device language-model test: what each rank trained on and got.

Not a test module: ``test_language_model_ddp.py`` names it in the config of a ``train.py fit``
that Lightning runs as one process per rank.
"""

from __future__ import annotations

import json
from pathlib import Path

import lightning as L
import torch


class RecordTraining(L.Callback):
    """Writes ``rank{r}.json`` (the training batches' inputs, the losses, the final val_bpc) and,
    from rank 0, ``weights.pt`` (the network's final state dict) into ``folder``."""

    def __init__(self, folder: str) -> None:
        self.folder = Path(folder)
        self.inputs: list[list[list[int]]] = []
        self.losses: list[float] = []
        self.val_bpc: float | None = None

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self.inputs.append(batch[0].tolist())

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.losses.append(float(outputs["loss"]))

    def on_validation_end(self, trainer, pl_module) -> None:
        self.val_bpc = float(trainer.callback_metrics["val_bpc"])

    def on_fit_end(self, trainer, pl_module) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        record = dict(rank=trainer.global_rank, world_size=trainer.world_size, inputs=self.inputs,
                      losses=self.losses, val_bpc=self.val_bpc)
        (self.folder / f"rank{trainer.global_rank}.json").write_text(json.dumps(record))
        if trainer.global_rank == 0:
            torch.save({k: v.detach().cpu() for k, v in pl_module.network.state_dict().items()}, self.folder / "weights.pt")
