"""Character-level language modelling as a LightningModule: truncated BPTT and bits per character.

The network (``models.CharRNN``: tokens (B, T) → logits (B, T, V), state) is injected. Batches
come from ``hyper.data.CharDataModule`` in stream order: batch k+1 continues batch k in each of
the B streams, so the hidden state left by one training batch is carried into the next with its
graph cut (truncated backpropagation through time), and starts from zero when an epoch or an
evaluation loop starts over at window 0. Gradient clipping is the Trainer's own
(``trainer.gradient_clip_val``). The loss is cross-entropy in nats; the metric is bits per
character, token-weighted over a whole loop (evaluation's last window is shorter).

Several devices (DDP): ``hyper.data.CharDataModule`` gives each rank its own contiguous streams
(batch_size per device), so each rank carries its own state exactly as one device does; the
gradients are averaged as usual and the bits per character are summed over the ranks' tokens.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import lightning as L
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchmetrics import Metric, MetricCollection

from hyper.training.classification import OptimizerCallable
from hyper.training.distillation import Teacher, check_distillation, distillation_loss
from hyper.training.hparams import save_hyperparameters
from hyper.training.report import log_parameter_counts
from hyper.training.schedules import Schedule, check_schedule, optimizers_config

State = tuple[Tensor, ...]
LN2 = math.log(2.0)


class BitsPerCharacter(Metric):
    """Bits per character: summed cross-entropy over every scored token ÷ tokens ÷ ln 2.

    Token-weighted, so a loop whose batches differ in length (a short last window) gives the
    same value as one pass over all its tokens.
    """

    is_differentiable = False
    higher_is_better = False
    full_state_update = False

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        # float64: millions of per-token losses are summed before the one division
        self.add_state("nll", default=torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("tokens", default=torch.tensor(0, dtype=torch.long), dist_reduce_fx="sum")

    def update(self, logits: Tensor, targets: Tensor) -> None:
        """logits (..., V), targets (...) int64."""
        nll = F.cross_entropy(logits.flatten(0, -2).float(), targets.flatten(), reduction="sum")
        self.nll += nll.detach().double()
        self.tokens += targets.numel()

    def compute(self) -> Tensor:
        return (self.nll / self.tokens / LN2).float()


class CharLanguageModel(L.LightningModule):
    """Train a next-character model with truncated BPTT; bits per character per stage.

    Args:
        network: tokens (B, T) int64 → (logits (B, T, vocab_size), state), with a
            ``vocab_size`` attribute: ``models.CharRNN`` with any recurrent core. Its
            ``vocab_size`` must be the data's (the characters of the training split plus
            ``<unk>``): train.py reads it off the data (a value in a config is replaced);
            built in Python, a mismatch is refused with the right number.
        optimizer: optimiser over all parameters, e.g. ``torch.optim.Adam`` with ``lr``.
        schedule: learning rate over the run, stepped every optimiser step: ``constant``,
            ``cosine`` (to zero) or ``multistep`` (times ``gamma`` at each milestone).
        milestones: fractions of the run at which ``multistep`` decays the learning rate.
        gamma: the ``multistep`` decay factor.
        teacher: checkpoint of a trained CharLanguageModel to distil from (None: no teacher),
            on the same vocabulary. Training then mixes its soft targets for every character
            with the true next characters (see ``distill_*``); it carries its own state across
            batches like the student. Validation and test are the student's alone.
        distill_temperature: T, the softmax temperature of the soft targets.
        distill_weight: w, the share of the soft-target term; 1 - w goes to the true characters.
    """

    # The metric and mode train.py's best checkpoint follows for this module.
    checkpoint_monitor = ("val_bpc", "min")

    def __init__(
        self,
        *,
        network: nn.Module,
        optimizer: OptimizerCallable = torch.optim.Adam,
        schedule: Schedule = "constant",
        milestones: Sequence[float] = (0.5, 0.75),
        gamma: float = 0.1,
        teacher: str | None = None,
        distill_temperature: float = 4.0,
        distill_weight: float = 0.9,
    ) -> None:
        super().__init__()
        check_schedule(schedule=schedule, milestones=milestones, gamma=gamma)
        check_distillation(distill_temperature, distill_weight)
        if not isinstance(getattr(network, "vocab_size", None), int):
            raise ValueError(f"network must have an integer vocab_size (a CharRNN), got {type(network).__name__}")
        save_hyperparameters(self)
        self.network = network
        self.make_optimizer = optimizer
        self.schedule = schedule
        self.milestones = tuple(milestones)
        self.gamma = gamma
        metrics = MetricCollection({"bpc": BitsPerCharacter()})
        self.train_metrics = metrics.clone(prefix="train_")
        self.val_metrics = metrics.clone(prefix="val_")
        self.test_metrics = metrics.clone(prefix="test_")
        self.hidden: State | None = None  # the state the next batch of this loop starts from
        self._train_hidden: State | None = None  # kept while a validation loop runs mid-epoch
        self.teacher = Teacher(teacher) if teacher is not None else None  # loaded when fit starts
        self.distill_temperature = distill_temperature
        self.distill_weight = distill_weight

    def forward(self, tokens: Tensor, state: State | None = None) -> tuple[Tensor, State]:
        return self.network(tokens, state)  # (B, T) -> (B, T, V), state

    def check_data(self, datamodule: L.LightningDataModule) -> None:
        """Raise ValueError unless the network's vocabulary is the size of ``datamodule``'s."""
        data_size = getattr(datamodule, "vocab_size", None)
        if data_size is None:
            raise ValueError(
                f"CharLanguageModel needs character data with a vocab_size (hyper.data.CharDataModule), "
                f"got {type(datamodule).__name__}"
            )
        if self.network.vocab_size != data_size:
            raise ValueError(
                f"network.vocab_size is {self.network.vocab_size} but {type(datamodule).__name__} has "
                f"vocab_size={data_size} (its characters plus <unk>): set network.vocab_size to {data_size}"
            )

    def setup(self, stage: str) -> None:
        if self.trainer.datamodule is not None:
            self.check_data(self.trainer.datamodule)
        if stage == "fit" and self.teacher is not None:  # a bad teacher stops the run before its first step
            self.teacher.load(vocab=getattr(self.trainer.datamodule, "vocab", None))

    def on_fit_start(self) -> None:
        if self.teacher is not None:
            self.teacher.to(self.device)
        log_parameter_counts(self)

    # Each loop starts at window 0 of its streams: the state of another loop (or of the last
    # epoch's final window) is not this batch's past.
    def on_train_epoch_start(self) -> None:
        self.hidden = None
        if self.teacher is not None:
            self.teacher.reset()

    def on_validation_epoch_start(self) -> None:
        self._train_hidden, self.hidden = self.hidden, None

    def on_validation_epoch_end(self) -> None:
        self.hidden, self._train_hidden = self._train_hidden, None

    def on_test_epoch_start(self) -> None:
        self.hidden = None

    def training_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Tensor:
        tokens, targets = batch  # (B, T) each
        logits = self._continue(tokens)
        loss = self.fit_loss(tokens, logits, targets)
        self.log("train_loss", loss, prog_bar=True)
        self.train_metrics.update(logits, targets)
        self.log_dict(self.train_metrics, on_step=False, on_epoch=True)
        return loss

    def validation_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        self._evaluate(batch, self.val_metrics, "val")

    def test_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        self._evaluate(batch, self.test_metrics, "test")

    def configure_optimizers(self) -> Any:
        return optimizers_config(self)

    # A checkpoint written mid-epoch carries the training state, so that a resumed run continues
    # the streams where they were (its loader skips the batches already seen).
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["tbptt_state"] = [s.cpu() for s in self.hidden] if self.hidden is not None else None

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        state = checkpoint.get("tbptt_state")
        self.hidden = tuple(state) if state is not None else None

    def fit_loss(self, tokens: Tensor, logits: Tensor, targets: Tensor) -> Tensor:
        """The training loss of a batch: cross-entropy in nats per character, or with a teacher
        its soft targets mixed in (the teacher reads ``tokens``, continuing its own state)."""
        if self.teacher is None:
            return F.cross_entropy(logits.flatten(0, 1), targets.flatten())
        return distillation_loss(
            logits.flatten(0, 1),
            self.teacher(tokens).flatten(0, 1),
            targets.flatten(),
            temperature=self.distill_temperature,
            weight=self.distill_weight,
        )

    def _continue(self, tokens: Tensor) -> Tensor:
        """Logits (B, T, V) of the batch that continues the last one; keeps its final state."""
        if self.hidden is not None and self.hidden[0].device != tokens.device:
            self.hidden = tuple(s.to(tokens.device) for s in self.hidden)  # restored on the CPU
        logits, state = self.network(tokens, self.hidden)
        self.hidden = tuple(s.detach() for s in state)  # the values carry on, the graph stops here
        return logits

    def _evaluate(self, batch: tuple[Tensor, Tensor], metrics: MetricCollection, stage: str) -> None:
        tokens, targets = batch
        logits = self._continue(tokens)
        loss = F.cross_entropy(logits.flatten(0, 1), targets.flatten())
        # batch_size = tokens: the epoch's mean loss is then token-weighted like the bpc
        self.log(f"{stage}_loss", loss, batch_size=targets.numel(), sync_dist=True)
        metrics.update(logits, targets)
        self.log_dict(metrics, prog_bar=True)
