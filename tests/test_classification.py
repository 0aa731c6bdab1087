"""ImageClassifier: the kernel L2 penalty, schedules, model-data checks, metrics, checkpoints."""

from __future__ import annotations

import lightning as L
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from hyper import Tied
from hyper.training import ImageClassifier, kernel_penalty
from hyper.training.schedules import build_scheduler, check_schedule
from models import HyperResNet, WideResNet, wide_resnet

TINY = dict(depth=10, width=1, num_classes=4, in_channels=3)


class RandomImages(L.LightningDataModule):
    """16 random 3×8×8 images in 4 classes, one batch per split."""

    num_classes, in_channels, image_size = 4, 3, 8

    def setup(self, stage: str) -> None:
        generator = torch.Generator().manual_seed(0)
        self.data = TensorDataset(torch.randn(16, 3, 8, 8, generator=generator), torch.arange(16) % 4)

    def train_dataloader(self) -> DataLoader:
        return DataLoader(self.data, batch_size=16)

    val_dataloader = test_dataloader = train_dataloader


def one_sgd_step(module: ImageClassifier) -> L.Trainer:
    trainer = L.Trainer(
        max_steps=1, logger=False, enable_checkpointing=False, enable_progress_bar=False,
        enable_model_summary=False, num_sanity_val_steps=0, limit_val_batches=0,
    )
    trainer.fit(module, datamodule=RandomImages())
    return trainer


def sgd(params):  # noqa: ANN001, ANN201 - an OptimizerCallable
    return torch.optim.SGD(params, lr=1.0)


def test_kernel_penalty_is_half_the_sum_of_squares_of_distinct_kernels() -> None:
    shared = torch.ones(2, 2)
    weights = {"a": shared, "b": shared, "c": torch.full((3,), 2.0)}
    assert kernel_penalty(weights).item() == pytest.approx((4 * 1 + 3 * 4) / 2)
    tied = wide_resnet(**{**TINY, "depth": 16}, source=Tied(tying_groups=1)).generated_weights()
    distinct = {id(w): w for w in tied.values()}
    assert len(distinct) < len(tied)  # the tied source shares kernels: counted once each
    expected = sum(w.square().sum() for w in distinct.values()) / 2
    assert kernel_penalty(tied).item() == pytest.approx(expected.item())


def test_kernel_l2_is_positive_and_changes_the_update() -> None:
    torch.manual_seed(0)
    network = HyperResNet(**TINY, embedding_dim=4, hidden_dim=8)
    start = {k: v.clone() for k, v in network.state_dict().items()}
    module = ImageClassifier(network=network, optimizer=sgd, schedule="constant", kernel_l2=0.5)
    _, penalty = module.logits_and_penalty(torch.randn(2, 3, 8, 8))
    expected = 0.5 * kernel_penalty(network.generated_weights())
    assert penalty.item() > 0 and penalty.item() == pytest.approx(expected.item(), rel=1e-5)

    trainer = one_sgd_step(module)
    assert trainer.callback_metrics["train_kernel_l2"] > 0
    penalised = {k: v.clone() for k, v in network.state_dict().items()}

    network.load_state_dict(start)
    one_sgd_step(ImageClassifier(network=network, optimizer=sgd, schedule="constant"))
    moved = [k for k in penalised if not torch.equal(penalised[k], network.state_dict()[k])]
    assert any("embedding" in k or "generator" in k for k in moved), moved


def test_kernel_l2_needs_generated_kernels() -> None:
    with pytest.raises(ValueError, match="generates none"):
        ImageClassifier(network=WideResNet(**TINY), kernel_l2=0.0005)
    with pytest.raises(ValueError, match="generates none"):
        ImageClassifier(network=nn.Linear(3, 4), kernel_l2=0.0005)


def test_check_data_refuses_a_network_that_does_not_fit() -> None:
    data = RandomImages()
    ImageClassifier(network=HyperResNet(**TINY)).check_data(data)
    with pytest.raises(ValueError, match="in_channels is 1 but RandomImages has in_channels=3"):
        ImageClassifier(network=HyperResNet(**{**TINY, "in_channels": 1})).check_data(data)
    with pytest.raises(ValueError, match="num_classes is 10"):
        ImageClassifier(network=HyperResNet(**{**TINY, "num_classes": 10})).check_data(data)
    # a network with no config: found by one forward pass
    with pytest.raises(ValueError, match="maps images"):
        ImageClassifier(network=nn.Sequential(nn.Flatten(), nn.Linear(192, 5))).check_data(data)
    with pytest.raises(ValueError, match="cannot read"):
        ImageClassifier(network=nn.Sequential(nn.Flatten(), nn.Linear(64, 4))).check_data(data)


def test_metrics_per_stage_and_a_checkpoint_without_pickled_objects(tmp_path) -> None:  # noqa: ANN001
    module = ImageClassifier(network=HyperResNet(**TINY, embedding_dim=4, hidden_dim=8))
    trainer = one_sgd_step(module)
    assert module.train_metrics is not module.val_metrics is not module.test_metrics
    trainer.test(module, datamodule=RandomImages(), verbose=False)
    assert (trainer.callback_metrics["test_acc"].item() * 16).is_integer()  # k of 16 images
    # Built in Python (not by the CLI), the network and optimiser are left out of hparams,
    # so the checkpoint loads without unpickling objects.
    assert "network" not in module.hparams and module.hparams["schedule"] == "cosine"
    trainer.save_checkpoint(tmp_path / "model.ckpt")
    saved = torch.load(tmp_path / "model.ckpt", weights_only=True)
    assert "network" not in saved["hyper_parameters"]


# 12 images, 3 classes: (label, predicted) pairs with the confusion matrix (rows: label)
#   [[3, 0, 1, 0], [0, 4, 1, 0], [0, 0, 2, 1]]: 9 of 12 right. In batches of 5 the batch
# accuracies are 2/5, 5/5 and 2/2, so a mean of batch accuracies (0.8) is not the answer either.
LABELS = [2, 0, 2, 0, 1, 1, 0, 2, 0, 1, 1, 1]
PREDICTED = [2, 2, 3, 0, 2, 1, 0, 2, 0, 1, 1, 1]


class PredictsItsFirstPixel(nn.Module):
    """A stand-in network whose prediction for each image is the class written in its first pixel."""

    def __init__(self) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.ones(()))

    def forward(self, images: torch.Tensor) -> torch.Tensor:  # (B, 3, 8, 8) -> (B, 4)
        return nn.functional.one_hot(images[:, 0, 0, 0].long(), 4).float() * self.scale


class KnownPredictions(RandomImages):
    def setup(self, stage: str) -> None:
        images = torch.zeros(len(LABELS), 3, 8, 8)
        images[:, 0, 0, 0] = torch.tensor(PREDICTED, dtype=torch.float)
        self.data = TensorDataset(images, torch.tensor(LABELS))

    def train_dataloader(self) -> DataLoader:
        return DataLoader(self.data, batch_size=5)

    val_dataloader = test_dataloader = train_dataloader


def test_accuracy_is_the_fraction_of_images_classified_correctly() -> None:
    module = ImageClassifier(network=PredictsItsFirstPixel())
    trainer = L.Trainer(logger=False, enable_progress_bar=False, enable_model_summary=False)
    (validated,) = trainer.validate(module, datamodule=KnownPredictions(), verbose=False)
    (tested,) = trainer.test(module, datamodule=KnownPredictions(), verbose=False)
    # Exactly 9/12 as float32 divides it: the per-class mean of recalls (macro: 0.554), a mean
    # of batch accuracies (0.8) and a support-weighted mean of recalls (algebraically 9/12,
    # but rounded per class: 0.75000006) all differ.
    assert validated["val_acc"] == tested["test_acc"] == 9 / 12


def test_schedules_span_the_run() -> None:
    def lrs(schedule: str, steps: int = 10) -> list[float]:
        optimizer = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=1.0)
        scheduler = build_scheduler(
            optimizer, schedule=schedule, total_steps=steps, milestones=(0.3, 0.6), gamma=0.1
        )
        rates = []
        for _ in range(steps):
            rates.append(optimizer.param_groups[0]["lr"])
            optimizer.step()
            if scheduler is not None:
                scheduler.step()
        return rates

    cosine = lrs("cosine")
    assert cosine[0] == 1.0 and cosine[-1] < 0.03 and cosine == sorted(cosine, reverse=True)
    assert lrs("multistep") == pytest.approx([1.0] * 3 + [0.1] * 3 + [0.01] * 4)
    assert lrs("constant") == [1.0] * 10
    with pytest.raises(ValueError, match="finite run"):
        build_scheduler(torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=1.0), schedule="cosine",
                        total_steps=float("inf"), milestones=(), gamma=0.1)
    with pytest.raises(ValueError, match="milestones"):
        check_schedule(schedule="multistep", milestones=(0.6, 0.3), gamma=0.1)
