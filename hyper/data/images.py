"""The shared machinery of the image DataModules: whole splits held in memory as uint8 tensors,
batches gathered by one index per batch, normalisation and augmentation on the batch's device.

Loaders yield ``(images uint8 (B, C, H, W), labels int64 (B,))``; ``on_after_batch_transfer``
turns the images into normalised float32 (augmented only while the trainer is training).
Outside a Trainer, call :meth:`InMemoryImageDataModule.preprocess` on each batch yourself.
"""
import lightning as L
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, Sampler

from hyper.checks import check_int
from hyper.data.augment import normalize, random_crop_flip
from hyper.data.order import run_seed, resumable_loader


class TensorPairs(Dataset):
    """Images (N, C, H, W) and labels (N,) in memory; a whole batch is one indexing op."""

    def __init__(self, images: Tensor, labels: Tensor) -> None:
        if len(images) != len(labels):
            raise ValueError(f"{len(images)} images but {len(labels)} labels")
        self.images, self.labels = images, labels

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> tuple[Tensor, Tensor]:
        return self.images[index], self.labels[index]

    def __getitems__(self, indices: list[int]) -> tuple[Tensor, Tensor]:
        # DataLoader calls this with a batch's indices: one gather instead of B stacks
        index = torch.as_tensor(indices, dtype=torch.long)
        return self.images[index], self.labels[index]


def _already_batched(batch: tuple[Tensor, Tensor]) -> tuple[Tensor, Tensor]:
    """collate_fn for TensorPairs: __getitems__ has already stacked the batch."""
    return batch


class InMemoryImageDataModule(L.LightningDataModule):
    """Base for image DataModules whose splits fit in memory.

    Subclasses set the class attributes and, in ``setup``, fill ``self.splits`` ({"train", "val",
    "test"} → TensorPairs) and call ``set_pixel_stats``.
    """

    num_classes: int
    in_channels: int
    image_size: int
    crop_padding: int  # pixels of zero padding before the random crop
    flip: bool  # random horizontal flips (not for digits: a mirrored 2 is not a 2)

    def __init__(self, *, batch_size: int, num_workers: int, augment: bool) -> None:
        super().__init__()
        # Every subclass's constructor arguments go into checkpoints: `test --ckpt_path` needs nothing else.
        self.save_hyperparameters()
        check_int("batch_size", batch_size)
        check_int("num_workers", num_workers, minimum=0)
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.augment = augment
        self.splits: dict[str, TensorPairs] = {}
        # The order of training batches is a function of this seed and the epoch (kept in
        # checkpoints, so a resumed run sees the batches the uninterrupted run would have).
        self.shuffle_seed = run_seed()
        self.pixel_mean: Tensor | None = None
        self.pixel_std: Tensor | None = None
        self._stats_cache: dict[torch.device, tuple[Tensor, Tensor]] = {}

    # loaders -----------------------------------------------------------------------------

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val", shuffle=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", shuffle=False)

    def predict_dataloader(self) -> DataLoader:
        return self._loader("test", shuffle=False)

    def _loader(self, split: str, *, shuffle: bool) -> DataLoader:
        if split not in self.splits:
            raise RuntimeError(f"the {split} split is not loaded; call setup() first")
        return self.loader_of(self.splits[split], shuffle=shuffle)

    def loader_of(self, dataset: Dataset, *, shuffle: bool, sampler: Sampler | None = None) -> DataLoader:
        """A loader over ``dataset`` (a split, or part of one) in ``sampler``'s order if given."""
        return resumable_loader(
            dataset,
            shuffle=shuffle,
            sampler=sampler,
            seed=self.shuffle_seed,
            batch_size=self.batch_size,
            num_workers=self.num_workers,
            collate_fn=_already_batched,
            pin_memory=torch.cuda.is_available(),
            persistent_workers=self.num_workers > 0,
        )

    def state_dict(self) -> dict[str, int]:
        return {"shuffle_seed": self.shuffle_seed}

    def load_state_dict(self, state_dict: dict[str, int]) -> None:
        self.shuffle_seed = int(state_dict.get("shuffle_seed", self.shuffle_seed))

    # per-batch transforms ----------------------------------------------------------------

    def on_after_batch_transfer(
        self, batch: tuple[Tensor, Tensor], dataloader_idx: int
    ) -> tuple[Tensor, Tensor]:
        # Lightning calls this on the batch's device; it decides train-time augmentation here
        images, labels = batch
        training = self.trainer is not None and self.trainer.training
        return self.preprocess(images, train=training), labels

    def preprocess(
        self, images: Tensor, *, train: bool, generator: torch.Generator | None = None
    ) -> Tensor:
        """uint8 (B, C, H, W) → normalised float32 (B, C, H, W), augmented if ``train and augment``."""
        if train and self.augment:
            images = random_crop_flip(
                images, padding=self.crop_padding, flip=self.flip, generator=generator
            )
        mean, std = self._stats_on(images.device)
        return normalize(images, mean=mean, std=std)

    def set_pixel_stats(self, mean: Tensor, std: Tensor) -> None:
        """Per-channel statistics, (C,) each, in raw pixel units (0–255 for CIFAR, 0–16 for digits)."""
        self.pixel_mean, self.pixel_std = mean.float(), std.float()
        self._stats_cache.clear()

    def _stats_on(self, device: torch.device) -> tuple[Tensor, Tensor]:
        # cached per device: no host-to-device copy of the statistics on every batch
        if self.pixel_mean is None or self.pixel_std is None:
            raise RuntimeError("normalisation statistics are not set; call setup() first")
        if device not in self._stats_cache:
            self._stats_cache[device] = (self.pixel_mean.to(device), self.pixel_std.to(device))
        return self._stats_cache[device]
