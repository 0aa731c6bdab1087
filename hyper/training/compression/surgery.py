"""Train a network, then change it mid-run and fine-tune what comes out: the post-training
routes to a smaller network, each a callback.

- ``LowRankFactorization``: truncated SVD of every layer at ``rank``;
- ``ChannelDropping``: a group-lasso penalty on every removable unit, then the dead units cut
  out (a smaller dense network: fewer channels, fewer FLOPs);
- ``CompressInto``: the trained network compressed into another one, ``network``: a
  hypernetwork (or any generated network) fitted to the trained kernels by weight-space
  regression, or a smaller plain network; trained on the labels or, with ``distill``, taught
  by the trained network (student–teacher), and with ``feature_weight`` also pulled towards its
  block outputs (feature-map distillation, ``features.py``). Reconstruction, then
  distillation, as two phases (NeRN, Ashkenazi et al. 2023; arXiv 2407.00356). With
  ``at_epoch: null`` the configured network is never trained and ``network`` trains from the
  start: a small network trained directly, on the same axes.

Each phase runs the module's learning-rate schedule over its own steps (the trained network
is annealed before it is compressed). The tested and reported network is the one that comes
out; the report compares it with the configured network (``plain_equivalent_params``), and
its ``latency_ms`` is measured. Checkpoints saved after the change hold the new network, which
the config does not build: test them in the same run (``run`` does).
"""

from __future__ import annotations

from typing import Any, Literal

import lightning as L
from lightning.pytorch.callbacks import Callback
from torch import nn

from hyper.compression.channels import check_threshold, dead_units, group_lasso, remove_units, unit_groups
from hyper.compression.factorize import factorize
from hyper.compression.fit import Error, check_error, compress_into
from hyper.network import GeneratedNetwork
from hyper.training.compression.features import FeatureMatching, block_names, check_modules
from hyper.training.compression.phases import check_count, check_epoch, replace_network, restart_schedule, steps_per_epoch


class _Recompress(Callback):
    """Train until the end of epoch ``at_epoch``, then put ``compress(network)`` in its place.

    Args:
        at_epoch: the (0-based) epoch after which the network changes; None: before training.
        distill: train the new network against the old one's soft targets (``ImageClassifier``).
    """

    def __init__(self, *, at_epoch: int | None, distill: bool) -> None:
        if at_epoch is not None:
            check_count("at_epoch", at_epoch)
        if distill and at_epoch is None:
            raise ValueError("distill needs a trained network to learn from: set at_epoch")
        self.at_epoch = at_epoch
        self.distill = distill

    def compress(self, trained: nn.Module) -> nn.Module:
        raise NotImplementedError

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if stage != "fit":
            return
        if self.at_epoch is not None:
            check_epoch("at_epoch", self.at_epoch + 1, trainer, shown=self.at_epoch, leave="an epoch to fine-tune")
        if self.distill and not hasattr(pl_module, "set_teacher"):
            raise ValueError(f"distill needs a module that takes a teacher (ImageClassifier), got {type(pl_module).__name__}")

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.at_epoch is None:
            self._change(trainer, pl_module)
        else:
            restart_schedule(trainer, pl_module, (self.at_epoch + 1) * steps_per_epoch(trainer))

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # At the start of the next epoch, not the end of this one: the checkpoint saved at the end
        # of ``at_epoch`` must pair the trained network with its own validation score.
        if self.at_epoch is not None and trainer.current_epoch == self.at_epoch + 1:
            self._change(trainer, pl_module)

    def _change(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        trained = pl_module.network
        smaller = self.compress(trained)
        remaining = max(int(trainer.estimated_stepping_batches) - trainer.global_step, 1)
        replace_network(trainer, pl_module, smaller, steps=remaining)
        if self.distill:
            pl_module.set_teacher(trained)


class LowRankFactorization(_Recompress):
    """Truncated SVD of every conv and linear layer of the trained network, then fine-tuning.

    Args:
        rank: r; layers whose rank-r pair would not be smaller stay as they are.
        at_epoch: the (0-based) epoch after which the layers are factorised.
        distill: fine-tune against the unfactorised network's soft targets.
    """

    def __init__(self, *, rank: int = 4, at_epoch: int = 0, distill: bool = False) -> None:
        check_count("rank", rank, minimum=1)
        super().__init__(at_epoch=at_epoch, distill=distill)
        self.rank = rank

    def compress(self, trained: nn.Module) -> nn.Module:
        return factorize(trained, rank=self.rank)


class ChannelDropping(_Recompress):
    """Group-lasso training of every removable unit, then removal of the dead ones.

    The penalty λ Σ_units ‖unit's weights‖₂ (``hyper.compression.channels``) is added to the
    gradients of every step up to the end of ``at_epoch``; then units whose norm is at most
    ``threshold`` × the largest of their layer are removed (as the next epoch starts) and the
    smaller network fine-tuned.

    Args:
        penalty: λ, the group-lasso coefficient.
        threshold: a unit is dead at or below this fraction of its layer's largest unit norm.
        at_epoch: the (0-based) epoch after which the dead units are removed.
        distill: fine-tune against the unpruned network's soft targets.
    """

    def __init__(self, *, penalty: float = 1e-3, threshold: float = 0.05, at_epoch: int = 0, distill: bool = False) -> None:
        if not penalty >= 0:
            raise ValueError(f"penalty must be non-negative, got {penalty!r}")
        check_threshold(threshold)
        super().__init__(at_epoch=at_epoch, distill=distill)
        self.penalty = penalty
        self.threshold = threshold
        self._groups: list | None = None

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._groups = unit_groups(pl_module.network)
        if not self._groups:
            raise ValueError(
                f"{type(pl_module.network).__name__} has no removable units (conv/linear outputs that only "
                "conv/linear layers read, through norms and activations)"
            )

    def on_after_backward(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.penalty and self._groups is not None and trainer.current_epoch <= self.at_epoch:
            (self.penalty * group_lasso(pl_module.network, self._groups)).backward()

    def compress(self, trained: nn.Module) -> nn.Module:
        keep = dead_units(trained, self._groups, threshold=self.threshold)
        smaller = remove_units(trained, keep)
        self._groups = None  # the penalty stops with the removal
        return smaller


class CompressInto(_Recompress):
    """Train the configured network, then compress it into ``network`` and fine-tune.

    Two phases after ``at_epoch``: reconstruction (``fit_*``: the source regressed onto the
    trained kernels in weight space, no data), then distillation (the remaining epochs: soft
    targets with ``distill``, block outputs with ``feature_weight``).

    Args:
        network: what the trained network becomes: a generated network (``models.HyperResNet``,
            any source) or a smaller plain one.
        at_epoch: the (0-based) epoch after which ``network`` takes over; None: from the start,
            with no training of the configured network (a small network trained directly).
        fit_steps: Adam steps of weight-space regression of ``network``'s weight source onto
            the trained kernels (a generated ``network`` of the same target); 0: it starts
            from its own initialisation.
        fit_lr: the regression's learning rate.
        fit_error: what the regression minimises: ``total`` Σ‖Ŵ − W‖² / Σ‖W‖², or
            ``per_layer``, the mean of each layer's ‖Ŵ − W‖² / ‖W‖² (``hyper.compression.fit``).
        fit_schedule: the regression's learning rate: ``constant``, or ``cosine`` (annealed to 0).
        distill: fine-tune against the trained network's soft targets (student–teacher).
        feature_weight: λ of feature-map distillation: the mean normalised squared error between
            ``network``'s and the trained network's ``feature_modules`` outputs, added to the
            fine-tuning loss; 0: none.
        feature_modules: the modules matched (names in the target); None: the blocks of the
            generated layers (``stages.1.0`` for ``stages.1.0.conv1.weight``).
    """

    def __init__(
        self,
        *,
        network: nn.Module,
        at_epoch: int | None = None,
        fit_steps: int = 0,
        fit_lr: float = 0.01,
        fit_error: Error = "total",
        fit_schedule: Literal["constant", "cosine"] = "constant",
        distill: bool = False,
        feature_weight: float = 0.0,
        feature_modules: list[str] | None = None,
    ) -> None:
        check_count("fit_steps", fit_steps)
        _check_fit(fit_lr, fit_error, fit_schedule)
        if fit_steps and not (isinstance(network, GeneratedNetwork) and next(network.source.parameters(), None) is not None):
            raise ValueError(
                "fit_steps fits a weight source: network must be a generated network whose source has "
                f"parameters (models.HyperResNet, ...), got {type(network).__name__}"
            )
        if fit_steps and at_epoch is None:
            raise ValueError("fit_steps fits the trained kernels: set at_epoch")
        _check_features(feature_weight, at_epoch)
        super().__init__(at_epoch=at_epoch, distill=distill)
        self.network = network
        self.fit_steps = fit_steps
        self.fit_lr = fit_lr
        self.fit_error = fit_error
        self.fit_cosine = fit_schedule == "cosine"
        self.feature_weight = feature_weight
        self.feature_modules = None if feature_modules is None else list(feature_modules)
        if feature_weight:  # a bad name stops the run before the first epoch
            check_modules(network, self._feature_names(), "student")
        self.fit_errors: list[float] = []
        self.features: FeatureMatching | None = None

    def compress(self, trained: nn.Module) -> nn.Module:
        student = self.network.to(next(trained.parameters()).device)
        if self.fit_steps:
            self.fit_errors = compress_into(
                student, trained, steps=self.fit_steps, lr=self.fit_lr, error=self.fit_error, cosine=self.fit_cosine
            )
        if self.feature_weight:
            names = self._feature_names()
            self.features = FeatureMatching(student=student, teacher=trained.eval(), names=names, weight=self.feature_weight)
        return student

    def _feature_names(self) -> list[str]:
        return self.feature_modules if self.feature_modules is not None else block_names(self.network)

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        super().on_train_epoch_start(trainer, pl_module)
        if self.fit_errors and self.at_epoch is not None and trainer.current_epoch == self.at_epoch + 1:
            errors = {"fit_error_start": self.fit_errors[0], "fit_error_end": self.fit_errors[-1]}
            for logger in trainer.loggers:
                logger.log_metrics(errors, step=trainer.global_step)

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any, batch_idx: int) -> None:
        if self.features is not None:
            teacher = getattr(pl_module, "teacher", None) if self.distill else None  # the same network, distilling
            self.features.teacher_features(
                batch[0] if isinstance(batch, (tuple, list)) else batch, run=None if teacher is None else teacher.ahead
            )

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        loss = None if self.features is None else self.features.loss()
        if loss is not None:
            pl_module.log("train_feature_loss", loss, on_step=False, on_epoch=True)

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.features is not None:
            self.features.remove()
            self.features = None


def _check_fit(lr: float, error: str, schedule: str) -> None:
    if not lr > 0:
        raise ValueError(f"fit_lr must be positive, got {lr!r}")
    check_error(error)
    if schedule not in ("constant", "cosine"):
        raise ValueError(f"fit_schedule must be constant or cosine, got {schedule!r}")


def _check_features(weight: float, at_epoch: int | None) -> None:
    if isinstance(weight, bool) or not isinstance(weight, (int, float)) or not weight >= 0:
        raise ValueError(f"feature_weight must be a non-negative number, got {weight!r}")
    if weight and at_epoch is None:
        raise ValueError("feature_weight matches a trained network's features: set at_epoch")
