"""Magnitude pruning, the baseline on the compression axes: Lightning's ModelPruning, set up to
prune once and fine-tune.

ModelPruning's defaults prune at the end of *every* epoch, and a float amount then compounds
(0.5 a time empties a net in a few epochs); they also prune biases and norm gains. Here the
weight matrices and kernels (conv and linear weights, and a recurrent layer's input and
recurrent matrices: nn.LSTM's ``weight_ih_l*``/``weight_hh_l*``, an LSTM layer's
``weight_x``/``weight_h``; not embeddings, norms or biases) are pruned once by L1 magnitude
to ``amount`` after epoch ``prune_at_epoch`` (each matrix by the same fraction, or ranked
globally); training goes on with the mask fixed, and the pruning is made
permanent (zeros in ordinary weights) in checkpoints and at the end. The callback is a
``Compression`` that ``counts_nonzero``: the run's report counts trainable parameters on non-zero
weights (``count_parameters(nonzero=True)``), also when its checkpoint is tested alone.

Scope: ``layer`` (default) prunes every layer by ``amount``. ``global`` ranks all weights
together, which at high sparsity empties whole layers whose initial scale is small (the wide
late stages, the 1×1 shortcuts) and cuts the signal path: on the digits WRN-16-1, 90% global
pruning fell to chance while 80% did not.

When the weights are pruned, the checkpoint callbacks forget their best so far: a dense
checkpoint from before pruning must not become the "best" model that the run tests, or the
report would pair a dense network's accuracy with the pruned network's count. The pruning
happens as the next epoch starts, not as ``prune_at_epoch`` ends: the checkpoint saved at the end
of an epoch would otherwise hold the pruned weights under the dense network's score.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import lightning as L
from lightning.pytorch.callbacks import ModelPruning
from torch import nn

from hyper.checks import check_int
from hyper.training.compression.phases import forget_best
from hyper.training.compression.protocol import Compression

NOT_PRUNED = (nn.Embedding, nn.EmbeddingBag)  # a lookup table, not a weight matrix


class MagnitudePruning(Compression, ModelPruning):
    """Global L1-magnitude pruning of conv and linear weights, once, then fine-tuning.

    Args:
        amount: fraction of those weights set to zero, in (0, 1).
        prune_at_epoch: the (0-based) epoch after which the weights are pruned.
        scope: ``layer``: each layer loses ``amount`` of its weights; ``global``: the smallest
            ``amount`` of all weights together go, wherever they are.
        verbose: 0 silent, 1 the sparsity once, 2 per layer (ModelPruning's).
    """

    counts_nonzero = True

    def __init__(
        self,
        *,
        amount: float = 0.5,
        prune_at_epoch: int = 0,
        scope: Literal["layer", "global"] = "layer",
        verbose: int = 0,
    ) -> None:
        if not 0.0 < amount < 1.0:
            raise ValueError(f"amount must be a fraction in (0, 1), got {amount!r}")
        check_int("prune_at_epoch", prune_at_epoch, minimum=0)
        if scope not in ("layer", "global"):
            raise ValueError(f"scope must be 'layer' or 'global', got {scope!r}")
        self.prune_at_epoch = prune_at_epoch
        self.scope = scope
        self._pruned = False
        super().__init__(
            pruning_fn="l1_unstructured",
            parameter_names=["weight"],
            use_global_unstructured=scope == "global",
            amount=amount,
            apply_pruning=False,  # ModelPruning's own epoch-end pruning: see on_train_epoch_start
            make_pruning_permanent=True,
            verbose=verbose,
        )

    def arguments(self) -> dict[str, Any]:
        return {
            "amount": self.amount,
            "prune_at_epoch": self.prune_at_epoch,
            "scope": self.scope,
            "verbose": self._verbose,
        }

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        max_epochs = trainer.max_epochs
        if stage == "fit" and max_epochs is not None and max_epochs >= 0 and self.prune_at_epoch >= max_epochs:
            raise ValueError(
                f"prune_at_epoch must be below trainer.max_epochs ({max_epochs}), got {self.prune_at_epoch}"
            )
        super().setup(trainer, pl_module, stage)

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.current_epoch == self.prune_at_epoch + 1:
            self._prune(trainer)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.current_epoch == self.prune_at_epoch + 1 and not self._pruned:
            self._prune(trainer)  # after the last epoch: pruned, not fine-tuned; the final weights are tested
        super().on_train_end(trainer, pl_module)

    def _prune(self, trainer: L.Trainer) -> None:
        self.apply_pruning(self.amount)
        self._pruned = True
        forget_best(trainer)

    @staticmethod
    def sanitize_parameters_to_prune(
        pl_module: L.LightningModule, parameters_to_prune: Sequence = (), parameter_names: Sequence[str] = ()
    ) -> list[tuple[nn.Module, str]]:
        """Every module's own weight matrices and kernels: parameters named ``weight`` or
        ``weight_*`` with two or more dimensions (generated weights are no parameters of their
        module, so they are not prunable), embeddings excepted."""
        return [
            (module, name)
            for module in pl_module.modules()
            if not isinstance(module, NOT_PRUNED)
            for name, parameter in module.named_parameters(recurse=False)
            if (name == "weight" or name.startswith("weight_")) and parameter.dim() >= 2
        ]
