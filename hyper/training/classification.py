"""Image classification as a LightningModule: any network in; loss, metrics and optimiser here.

The network is injected, so plain, tied and hyper models train through the same code. With
``kernel_l2`` the paper's L2 penalty on the generated kernels is added to the loss: the kernels
are generated once per step, used by the forward pass and penalised (a tied kernel once).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

import lightning as L
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchmetrics import MetricCollection
from torchmetrics.classification import MulticlassAccuracy

from hyper.training.distillation import Teacher, check_distillation, distillation_loss
from hyper.training.hparams import save_hyperparameters
from hyper.training.report import log_parameter_counts
from hyper.training.schedules import Schedule, check_schedule, optimizers_config

# Lightning's ``OptimizerCallable`` spelled out, so that the module needs no argument parser:
# a config gives ``class_path: torch.optim.SGD`` and ``init_args`` without the parameters.
OptimizerCallable = Callable[[Iterable], torch.optim.Optimizer]


class ImageClassifier(L.LightningModule):
    """Train an image classifier: cross-entropy, accuracy per stage, optional kernel L2 penalty.

    ``train_acc``, ``val_acc`` and ``test_acc`` are the fraction of images classified
    correctly over the epoch (error = 1 - acc).

    Args:
        network: images (B, C, H, W) to logits (B, num_classes): a ``GeneratedNetwork``
            (``models.HyperResNet``, ``models.WideResNet`` with any source) or any nn.Module.
        optimizer: optimiser over all parameters, e.g. ``torch.optim.SGD`` with ``lr``,
            ``momentum``, ``nesterov``, ``weight_decay``, or ``torch.optim.Adam``.
        schedule: learning rate over the run, stepped every optimiser step: ``cosine`` (to
            zero), ``multistep`` (times ``gamma`` at each milestone) or ``constant``.
        milestones: fractions of the run at which ``multistep`` decays the learning rate.
        gamma: the ``multistep`` decay factor.
        label_smoothing: label smoothing of the training cross-entropy, in [0, 1).
        kernel_l2: coefficient c of the penalty c * sum(w**2) / 2 over the generated kernels
            (its gradient is c * w: weight decay on the kernels); the paper uses 0.0005.
        teacher: checkpoint of a trained ImageClassifier to distil from (None: no teacher).
            Training then mixes its soft targets with the labels (see ``distill_*``).
        distill_temperature: T, the softmax temperature of the soft targets.
        distill_weight: w, the share of the soft-target term; 1 - w goes to the labels.
    """

    # The metric and mode train.py's best checkpoint follows for this module.
    checkpoint_monitor = ("val_acc", "max")

    def __init__(
        self,
        *,
        network: nn.Module,
        optimizer: OptimizerCallable = torch.optim.Adam,
        schedule: Schedule = "cosine",
        milestones: Sequence[float] = (0.3, 0.6, 0.8),
        gamma: float = 0.2,
        label_smoothing: float = 0.0,
        kernel_l2: float = 0.0,
        teacher: str | None = None,
        distill_temperature: float = 4.0,
        distill_weight: float = 0.9,
    ) -> None:
        super().__init__()
        check_schedule(schedule=schedule, milestones=milestones, gamma=gamma)
        _check_loss_options(network, label_smoothing, kernel_l2)
        check_distillation(distill_temperature, distill_weight)
        save_hyperparameters(self)
        self.network = network
        self.make_optimizer = optimizer
        self.schedule = schedule
        self.milestones = tuple(milestones)
        self.gamma = gamma
        self.label_smoothing = label_smoothing
        self.kernel_l2 = kernel_l2
        self.teacher = Teacher(teacher) if teacher is not None else None  # loaded when fit starts
        self.distill_temperature = distill_temperature
        self.distill_weight = distill_weight

    def forward(self, images: Tensor) -> Tensor:  # (B, C, H, W) -> (B, num_classes)
        return self.network(images)

    def check_data(self, datamodule: L.LightningDataModule) -> None:
        """Raise ValueError unless the network reads ``datamodule``'s images and predicts its classes."""
        missing = [name for name in ("num_classes", "in_channels", "image_size") if not hasattr(datamodule, name)]
        if missing:
            raise ValueError(
                f"ImageClassifier needs image data with num_classes, in_channels and image_size "
                f"(an image DataModule), got {type(datamodule).__name__}"
            )
        config = getattr(self.network, "config", {})
        for name in ("in_channels", "num_classes"):
            value = getattr(datamodule, name)
            if name in config and config[name] != value:
                raise ValueError(
                    f"network.{name} is {config[name]} but {type(datamodule).__name__} has "
                    f"{name}={value}: set network.{name} to {value}"
                )
        _check_output_shape(self.network, datamodule)

    def setup(self, stage: str) -> None:
        datamodule = self.trainer.datamodule
        if datamodule is None:
            raise ValueError(
                "ImageClassifier needs a datamodule with num_classes, in_channels and image_size"
            )
        if not hasattr(self, "val_metrics"):  # setup runs again for a test after fit
            self.check_data(datamodule)
            # Micro: the fraction of images classified correctly (error = 1 - acc), not
            # torchmetrics' default per-class (macro) mean of recalls.
            accuracy = MulticlassAccuracy(num_classes=datamodule.num_classes, average="micro")
            metrics = MetricCollection({"acc": accuracy})
            self.train_metrics = metrics.clone(prefix="train_")
            self.val_metrics = metrics.clone(prefix="val_")
            self.test_metrics = metrics.clone(prefix="test_")
        if stage == "fit" and self.teacher is not None:
            self.teacher.load()  # a bad teacher checkpoint stops the run before its first step
            _check_output_shape(self.teacher.network, datamodule, what=f"the teacher {self.teacher.checkpoint}")

    def set_teacher(self, network: nn.Module | None) -> None:
        """Distil from ``network`` (frozen, in eval mode) from now on; None trains on the labels.

        For callbacks that train a network and then a smaller one taught by it in the same run.
        """
        self.teacher = None if network is None else Teacher(network=network).to(self.device)

    def on_fit_start(self) -> None:
        if self.teacher is not None:
            self.teacher.to(self.device)
        log_parameter_counts(self)

    def training_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Tensor:
        images, labels = batch
        logits, penalty = self.logits_and_penalty(images)
        loss = self._fit_loss(images, logits, labels)
        self.log("train_loss", loss, prog_bar=True)
        if penalty is not None:
            self.log("train_kernel_l2", penalty)
            loss = loss + penalty
        self.train_metrics(logits, labels)
        self.log_dict(self.train_metrics, on_step=False, on_epoch=True)
        return loss

    def validation_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        self._evaluate(batch, self.val_metrics, "val")

    def test_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        self._evaluate(batch, self.test_metrics, "test")

    def predict_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Tensor:
        return self.network(batch[0]).softmax(dim=-1)  # (B, num_classes) class probabilities

    def configure_optimizers(self) -> Any:
        return optimizers_config(self)

    def _fit_loss(self, images: Tensor, logits: Tensor, labels: Tensor) -> Tensor:
        if self.teacher is None:
            return F.cross_entropy(logits, labels, label_smoothing=self.label_smoothing)
        return distillation_loss(
            logits,
            self.teacher(images),
            labels,
            temperature=self.distill_temperature,
            weight=self.distill_weight,
            label_smoothing=self.label_smoothing,
        )

    def logits_and_penalty(self, images: Tensor) -> tuple[Tensor, Tensor | None]:
        """Logits (B, num_classes) and the kernel L2 penalty (None when ``kernel_l2`` is 0)."""
        if not self.kernel_l2:
            return self.network(images), None
        weights = self.network.generated_weights()  # once per step: forward and penalty share it
        return self.network(images, weights=weights), self.kernel_l2 * kernel_penalty(weights)

    def _evaluate(self, batch: tuple[Tensor, Tensor], metrics: MetricCollection, stage: str) -> None:
        images, labels = batch
        logits = self.network(images)
        self.log(f"{stage}_loss", F.cross_entropy(logits, labels), sync_dist=True)
        metrics.update(logits, labels)
        self.log_dict(metrics, prog_bar=True)


def kernel_penalty(weights: dict[str, Tensor]) -> Tensor:
    """sum(w**2) / 2 over the distinct kernels of ``weights`` (a tied kernel counts once)."""
    unique = {id(w): w for w in weights.values()}
    return sum(w.square().sum() for w in unique.values()) / 2


def _check_loss_options(network: nn.Module, label_smoothing: float, kernel_l2: float) -> None:
    if not 0.0 <= label_smoothing < 1.0:
        raise ValueError(f"label_smoothing must be in [0, 1), got {label_smoothing}")
    if kernel_l2 < 0:
        raise ValueError(f"kernel_l2 must be non-negative, got {kernel_l2}")
    if kernel_l2 and not (hasattr(network, "generated_weights") and network.generated_weights()):
        raise ValueError(
            f"kernel_l2 penalises generated kernels, but this {type(network).__name__} generates none "
            "(plain source?): set kernel_l2 to 0 and use the optimizer's weight_decay"
        )


@torch.no_grad()
def _check_output_shape(network: nn.Module, datamodule: L.LightningDataModule, *, what: str = "the network") -> None:
    size = datamodule.image_size
    height, width = (size, size) if isinstance(size, int) else size
    like = next(network.parameters())  # the network's device and dtype, wherever it is now
    images = torch.zeros(2, datamodule.in_channels, height, width, device=like.device, dtype=like.dtype)
    was_training = network.training
    network.eval()
    try:
        logits = network(images)
    except RuntimeError as error:
        first_line = str(error).splitlines()[0]
        data = f"{type(datamodule).__name__}'s images {tuple(images.shape)}"
        raise ValueError(f"{what} cannot read {data}: {first_line}") from None
    finally:
        network.train(was_training)
    if tuple(logits.shape) != (2, datamodule.num_classes):
        raise ValueError(
            f"{what} maps images {tuple(images.shape)} to {tuple(logits.shape)}, "
            f"but {type(datamodule).__name__} has {datamodule.num_classes} classes"
        )
