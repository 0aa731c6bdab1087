"""DigitsDataModule: shapes, a fixed test split, seeded train/val splits, batch preprocessing."""

import re
from types import SimpleNamespace

import lightning as L
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from hyper.data import DigitsDataModule
from hyper.data.digits import load_digits_tensors, split_indices


def setup_digits(**kwargs) -> DigitsDataModule:
    dm = DigitsDataModule(**kwargs)
    dm.setup("fit")
    return dm


def test_describes_its_images():
    dm = DigitsDataModule()
    assert (dm.num_classes, dm.in_channels, dm.image_size) == (10, 1, 8)


def test_loader_batches_and_preprocessed_images():
    dm = setup_digits(batch_size=16)
    images, labels = next(iter(dm.train_dataloader()))
    assert images.shape == (16, 1, 8, 8) and images.dtype == torch.uint8
    assert labels.shape == (16,) and labels.dtype == torch.int64
    assert int(images.max()) <= 16 and 0 <= int(labels.min()) and int(labels.max()) <= 9
    x = dm.preprocess(images, train=False)
    assert x.shape == (16, 1, 8, 8) and x.dtype == torch.float32
    # normalised with the training split's statistics
    train = dm.preprocess(dm.splits["train"].images, train=False)
    assert abs(train.mean().item()) < 1e-4 and abs(train.std().item() - 1) < 1e-3


def test_split_sizes_cover_everything_without_overlap():
    _, labels = load_digits_tensors()
    index = split_indices(labels, val_fraction=0.1, test_fraction=0.2, seed=3)
    sizes = {name: len(ix) for name, ix in index.items()}
    assert sum(sizes.values()) == len(labels) == 1797
    assert abs(sizes["test"] - 0.2 * 1797) <= 1 and abs(sizes["val"] - 0.1 * 1797) <= 1
    everything = torch.cat(list(index.values()))
    assert len(everything.unique()) == len(everything)  # no index in two splits
    # stratified: every class in every split, close to its overall share
    for ix in index.values():
        counts = torch.bincount(labels[ix], minlength=10).float()
        share = counts / counts.sum()
        assert (share - torch.bincount(labels).float() / len(labels)).abs().max() < 0.02


def test_test_split_fixed_and_val_split_seeded():
    _, labels = load_digits_tensors()
    a = split_indices(labels, val_fraction=0.1, test_fraction=0.2, seed=0)
    b = split_indices(labels, val_fraction=0.15, test_fraction=0.2, seed=1)
    again = split_indices(labels, val_fraction=0.1, test_fraction=0.2, seed=0)
    assert torch.equal(a["test"], b["test"])  # neither seed nor val_fraction moves it
    assert not torch.equal(a["val"].sort().values[:100], b["val"].sort().values[:100])
    for name in a:
        assert torch.equal(a[name], again[name])


def test_module_splits_match_indices():
    images, labels = load_digits_tensors()
    dm = setup_digits(seed=5)
    index = split_indices(labels, val_fraction=0.1, test_fraction=0.2, seed=5)
    for name, ix in index.items():
        assert torch.equal(dm.splits[name].images, images[ix])
        assert torch.equal(dm.splits[name].labels, labels[ix])


@pytest.mark.parametrize(
    "kwargs, name",
    [
        ({"val_fraction": 0.0}, "val_fraction"),
        ({"test_fraction": 1.5}, "test_fraction"),
        ({"val_fraction": 0.5, "test_fraction": 0.5}, "val_fraction + test_fraction"),
        ({"batch_size": 0}, "batch_size"),
    ],
)
def test_bad_arguments_name_themselves(kwargs, name):
    with pytest.raises(ValueError, match=re.escape(name)):
        DigitsDataModule(**kwargs)


def test_augmentation_shifts_training_batches_only():
    dm = setup_digits(augment=True)
    images = dm.splits["train"].images[:256]
    plain = dm.preprocess(images, train=False)
    shifted = dm.preprocess(images, train=True, generator=torch.Generator().manual_seed(0))
    assert shifted.shape == plain.shape and shifted.dtype == plain.dtype
    assert not torch.equal(shifted, plain)
    # a shift moves pixels, it never invents ink: at most as many lit pixels per image
    assert ((shifted > plain.min()).sum((1, 2, 3)) <= (plain > plain.min()).sum((1, 2, 3))).all()
    off = setup_digits(augment=False)
    assert torch.equal(off.preprocess(images, train=True), plain)


def test_hook_augments_only_while_the_trainer_trains():
    dm = setup_digits(augment=True)
    images, labels = dm.splits["train"].images[:128], dm.splits["train"].labels[:128]
    expected = dm.preprocess(images, train=False)
    dm.trainer = SimpleNamespace(training=False)
    x, y = dm.on_after_batch_transfer((images, labels), 0)
    assert torch.equal(x, expected) and torch.equal(y, labels)
    dm.trainer = SimpleNamespace(training=True)
    x, _ = dm.on_after_batch_transfer((images, labels), 0)
    assert x.dtype == torch.float32 and not torch.equal(x, expected)


class _Recorder(L.LightningModule):
    """A linear classifier that checks the batches Lightning hands it."""

    def __init__(self, val_expected: torch.Tensor) -> None:
        super().__init__()
        self.linear = nn.Linear(64, 10)
        self.val_expected = val_expected
        self.seen: list[str] = []

    def training_step(self, batch, batch_idx):
        x, y = batch
        assert x.dtype == torch.float32 and x.shape[1:] == (1, 8, 8) and y.dtype == torch.int64
        self.seen.append("train")
        return F.cross_entropy(self.linear(x.flatten(1)), y)

    def validation_step(self, batch, batch_idx):
        x, _ = batch
        start = batch_idx * len(x)  # the validation loader is not shuffled
        assert torch.equal(x, self.val_expected[start : start + len(x)])  # never augmented
        self.seen.append("val")

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


def test_trainer_hands_the_model_normalised_batches():
    dm = setup_digits(augment=True, batch_size=32)
    model = _Recorder(dm.preprocess(dm.splits["val"].images, train=False))
    trainer = L.Trainer(
        max_steps=3, limit_val_batches=2, num_sanity_val_steps=0, val_check_interval=3,
        logger=False, enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
    )
    trainer.fit(model, datamodule=dm)
    assert model.seen.count("train") == 3 and model.seen.count("val") == 2
