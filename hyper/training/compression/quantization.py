"""Quantisation from the command line: after training (post-training quantisation) or during it
(quantisation-aware training), of whatever network the module trains.

Either way the network that is tested runs the quantised weights, and the report counts its
bytes at ``bits`` per weight (``hyper.storage``). Checkpoints hold the float (latent) weights
under the network's own parameter names, so they load into the network a config builds; the
callback quantises again (``reapply``) before each test. Like every ``Compression``, the callback
is recorded in its run's checkpoints: ``test``, ``validate`` and ``predict`` given such a
checkpoint quantise again on their own, so its scores are those of the quantised network; a
network rebuilt from it (``network_from_checkpoint``: sampling, a teacher) is quantised too.

    trainer:
      callbacks:
        - class_path: hyper.training.compression.QuantizationAwareTraining
          init_args: {bits: 4, start_epoch: 10}
"""

from __future__ import annotations

import re
from typing import Any

import lightning as L
from torch import nn

from hyper.compression.quantize import check_bits, dequantize, is_quantized, quantize
from hyper.training.compression.phases import check_count, check_epoch, forget_best
from hyper.training.compression.protocol import Compression

LATENT = re.compile(r"(^|\.)parametrizations\.(\w+)\.original$")


class PostTrainingQuantization(Compression):
    """Quantise the trained network's weights (per-channel symmetric) before it is tested.

    Args:
        bits: 8, 4, 2 (ternary) or 1 (binary).
    """

    def __init__(self, *, bits: int = 8) -> None:
        check_bits(bits)
        self.bits = bits

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if stage != "fit":  # the checkpoint about to be loaded holds float weights
            dequantize(pl_module.network)

    def arguments(self) -> dict[str, Any]:
        return {"bits": self.bits}

    def reapply(self, network: nn.Module) -> nn.Module:
        return quantize(network, bits=self.bits)  # quantised tensors are left as they are

    def on_save_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict[str, Any]) -> None:
        checkpoint["state_dict"] = {LATENT.sub(r"\1\2", k): v for k, v in checkpoint["state_dict"].items()}
        super().on_save_checkpoint(trainer, pl_module, checkpoint)


class QuantizationAwareTraining(PostTrainingQuantization):
    """Train with fake-quantised weights (straight-through gradients) from ``start_epoch`` on.

    Args:
        bits: 8, 4, 2 (ternary) or 1 (binary).
        start_epoch: the (0-based) epoch from which the forward pass uses quantised weights;
            0 trains quantised from the start, a later epoch fine-tunes a float-trained network.
    """

    def __init__(self, *, bits: int = 4, start_epoch: int = 0) -> None:
        super().__init__(bits=bits)
        check_count("start_epoch", start_epoch)
        self.start_epoch = start_epoch

    def arguments(self) -> dict[str, Any]:
        return {"bits": self.bits, "start_epoch": self.start_epoch}

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if stage == "fit":
            check_epoch("start_epoch", self.start_epoch, trainer)
        super().setup(trainer, pl_module, stage)

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.current_epoch >= self.start_epoch and not is_quantized(pl_module.network):
            # the optimiser keeps its parameters: they become the latent weights
            quantize(pl_module.network, bits=self.bits)
            if trainer.current_epoch > 0:
                forget_best(trainer)
