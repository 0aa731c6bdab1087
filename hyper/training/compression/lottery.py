"""Lottery tickets: iterative magnitude pruning with rewinding (Frankle & Carbin 2019; rewinding
to an early step rather than to the initialisation: Frankle, Dziugaite, Roy & Carbin 2020).

The run is ``rounds + 1`` equal phases of ``phase_epochs`` epochs (by default
``max_epochs / (rounds + 1)``; a run given more epochs stops after its last phase, so a sweep can
vary ``rounds`` under one ``max_epochs``). After each of
the first ``rounds`` phases, ``amount`` of the remaining weights are pruned (L1 magnitude, each
tensor alike or ranked globally), and everything else is rewound to its state after
``rewind_step`` optimiser steps: the surviving weights, the other parameters and batch-norm
statistics, the optimiser's moments and the learning-rate schedule. The next phase retrains
that ticket; the last one is tested. After r rounds, 1 − (1 − amount)^r of the weights are
gone; a sweep over ``rounds`` draws the curve, one point per round.

Lightning's ``ModelPruning`` does the pruning, keeps masks through training and makes them
permanent in checkpoints; its own lottery-ticket reset copies back the pruned tensors' values
from ``setup`` only (the initialisation, and none of the optimiser's or the norms' state), so
the rewind here replaces it. Weights are every tensor of two or more dimensions that is a
direct parameter: conv and linear kernels, and a generated network's embeddings and generator.
The callback is a ``Compression`` that ``counts_nonzero``: the report counts the surviving weights.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any, Literal

import lightning as L
import torch
from lightning.pytorch.callbacks import ModelPruning
from torch import nn

from hyper.training.compression.phases import check_count, forget_best, restart_schedule, steps_per_epoch
from hyper.training.compression.protocol import Compression


class LotteryTicket(Compression, ModelPruning):
    """Iterative magnitude pruning, each round rewound to step ``rewind_step`` and retrained.

    Args:
        amount: the fraction of the remaining weights pruned each round, in (0, 1).
        rounds: prune-rewind-retrain rounds.
        phase_epochs: epochs of each of the rounds + 1 phases; None: ``trainer.max_epochs`` split
            into rounds + 1 equal phases (it must divide).
        rewind_step: the optimiser step whose state the survivors return to (0: the
            initialisation, as in the original lottery-ticket paper).
        scope: ``layer``: every tensor loses ``amount`` of its remaining weights; ``global``:
            all weights ranked together.
    """

    counts_nonzero = True

    def __init__(
        self,
        *,
        amount: float = 0.5,
        rounds: int = 2,
        phase_epochs: int | None = None,
        rewind_step: int = 0,
        scope: Literal["layer", "global"] = "layer",
    ) -> None:
        if not 0.0 < amount < 1.0:
            raise ValueError(f"amount must be a fraction in (0, 1), got {amount!r}")
        check_count("rounds", rounds, minimum=1)
        check_count("rewind_step", rewind_step)
        if phase_epochs is not None:
            check_count("phase_epochs", phase_epochs, minimum=1)
        if scope not in ("layer", "global"):
            raise ValueError(f"scope must be 'layer' or 'global', got {scope!r}")
        self.rounds = rounds
        self.scope = scope
        self.rewind_step = rewind_step
        self.phase_epochs = phase_epochs or 0
        self._given_phase_epochs = phase_epochs
        self._snapshot: dict[str, Any] | None = None
        super().__init__(
            pruning_fn="l1_unstructured",
            parameter_names=["weight"],
            use_global_unstructured=scope == "global",
            amount=amount,
            apply_pruning=False,  # ModelPruning's own epoch-end pruning: see on_train_epoch_start
            make_pruning_permanent=True,
            use_lottery_ticket_hypothesis=True,
            resample_parameters=False,
        )

    def arguments(self) -> dict[str, Any]:
        return {
            "amount": self.amount,
            "rounds": self.rounds,
            "phase_epochs": self._given_phase_epochs,
            "rewind_step": self.rewind_step,
            "scope": self.scope,
        }

    def _is_round_start(self, epoch: int) -> bool:
        return epoch > 0 and epoch % self.phase_epochs == 0 and epoch // self.phase_epochs <= self.rounds

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if stage == "fit":
            self.phase_epochs = self._phase_epochs(trainer.max_epochs)
        super().setup(trainer, pl_module, stage)

    def _phase_epochs(self, max_epochs: int | None) -> int:
        phases = self.rounds + 1
        if self._given_phase_epochs is not None:
            if max_epochs is not None and 0 <= max_epochs < phases * self._given_phase_epochs:
                raise ValueError(
                    f"trainer.max_epochs must be at least (rounds + 1) × phase_epochs = "
                    f"{phases * self._given_phase_epochs}, got {max_epochs}"
                )
            return self._given_phase_epochs
        if max_epochs is None or max_epochs < phases or max_epochs % phases:
            raise ValueError(
                f"trainer.max_epochs must be a multiple of rounds + 1 = {phases} (equal phases), got {max_epochs}"
            )
        return max_epochs // phases

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        per_phase = self.phase_epochs * steps_per_epoch(trainer)
        if self.rewind_step >= per_phase:
            raise ValueError(f"rewind_step must be below one phase's {per_phase} steps, got {self.rewind_step}")
        restart_schedule(trainer, pl_module, per_phase)
        if self.rewind_step == 0:
            self._snapshot = _state(trainer, pl_module)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:  # noqa: ANN001
        if self._snapshot is None and trainer.global_step == self.rewind_step:
            self._snapshot = _state(trainer, pl_module)

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # As a phase starts, not as the last one ends: the checkpoint saved at the end of a
        # phase must pair its network with that network's own validation score.
        if self._is_round_start(trainer.current_epoch):
            self._trainer, self._module = trainer, pl_module  # for the rewind, which ModelPruning calls bare
            self.apply_pruning(self.amount)
            self.apply_lottery_ticket_hypothesis()

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        super().on_train_epoch_end(trainer, pl_module)
        if trainer.current_epoch + 1 >= (self.rounds + 1) * self.phase_epochs:
            trainer.should_stop = True  # the last phase is over

    def apply_lottery_ticket_hypothesis(self) -> None:
        """Rewind everything but the masks to the state after ``rewind_step`` steps."""
        trainer, pl_module, snapshot = self._trainer, self._module, self._snapshot
        _load_network_state(pl_module.network, snapshot["network"])
        trainer.optimizers[0].load_state_dict(copy.deepcopy(snapshot["optimizer"]))
        restart_schedule(trainer, pl_module, self.phase_epochs * steps_per_epoch(trainer), start=self.rewind_step)
        forget_best(trainer)

    @staticmethod
    def sanitize_parameters_to_prune(
        pl_module: L.LightningModule, parameters_to_prune: Sequence = (), parameter_names: Sequence[str] = ()
    ) -> list[tuple[nn.Module, str]]:
        """Every direct parameter of two or more dimensions, wherever it sits."""
        return [
            (module, name)
            for module in pl_module.network.modules()
            for name, p in module.named_parameters(recurse=False)
            if p.dim() >= 2
        ]


def _state(trainer: L.Trainer, pl_module: L.LightningModule) -> dict[str, Any]:
    network = {name: tensor.detach().clone() for name, tensor in pl_module.network.state_dict().items()}
    return {"network": network, "optimizer": copy.deepcopy(trainer.optimizers[0].state_dict())}


@torch.no_grad()
def _load_network_state(network: nn.Module, saved: dict[str, torch.Tensor]) -> None:
    """Copy ``saved`` (names from before pruning) into the network; a pruned ``X_orig`` takes
    ``X``'s value, masks stay."""
    for name, tensor in network.state_dict().items():
        if name.endswith("_mask"):
            continue
        tensor.copy_(saved[name.removesuffix("_orig") if name.endswith("_orig") else name])
