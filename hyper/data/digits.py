"""The embedded default dataset: scikit-learn's bundled copy of the UCI handwritten digits.

1,797 grey 8×8 images of the digits 0–9 (pixel values 0–16), shipped inside scikit-learn, so the
default run needs no download and still trains on real data.
"""
import torch
from torch import Tensor

from hyper.data.images import InMemoryImageDataModule, TensorPairs

TEST_SPLIT_SEED = 0  # the test set never moves with ``seed``: runs stay comparable


def _check_fraction(name: str, value: float) -> None:
    if not 0.0 < value < 1.0:
        raise ValueError(f"{name} must be a fraction strictly between 0 and 1, got {value}")


def load_digits_tensors() -> tuple[Tensor, Tensor]:
    """All 1,797 digits: images uint8 (N, 1, 8, 8) with values 0–16, labels int64 (N,)."""
    # scikit-learn (and SciPy) take seconds to import; only the digits need them, so not at import
    from sklearn.datasets import load_digits

    bunch = load_digits()
    images = torch.as_tensor(bunch.images, dtype=torch.uint8).unsqueeze(1)  # (N, 1, 8, 8)
    labels = torch.as_tensor(bunch.target, dtype=torch.int64)
    return images, labels


def split_indices(
    labels: Tensor, *, val_fraction: float, test_fraction: float, seed: int
) -> dict[str, Tensor]:
    """Stratified train/val/test indices; test depends on ``test_fraction`` alone, val on ``seed``.

    Both fractions are of the whole set.
    """
    from sklearn.model_selection import train_test_split

    everything = torch.arange(len(labels)).numpy()
    rest, test = train_test_split(
        everything, test_size=test_fraction, random_state=TEST_SPLIT_SEED, stratify=labels.numpy()
    )
    train, val = train_test_split(
        rest,
        test_size=val_fraction / (1.0 - test_fraction),
        random_state=seed,
        stratify=labels[rest].numpy(),
    )
    return {name: torch.as_tensor(ix) for name, ix in [("train", train), ("val", val), ("test", test)]}


class DigitsDataModule(InMemoryImageDataModule):
    """UCI handwritten digits (scikit-learn's bundled copy): 10 classes, 1×8×8, no download.

    Batches reach the model as normalised float32 (B, 1, 8, 8) and int64 labels (B,).
    """

    num_classes = 10
    in_channels = 1
    image_size = 8
    crop_padding = 1  # shifts of at most one pixel: the digits fill most of the 8×8 frame
    flip = False

    def __init__(
        self,
        *,
        batch_size: int = 64,
        val_fraction: float = 0.1,
        test_fraction: float = 0.2,
        seed: int = 0,
        num_workers: int = 0,
        augment: bool = False,
    ) -> None:
        """
        Args:
            batch_size: images per batch.
            val_fraction: share of all 1,797 images held out for validation (stratified).
            test_fraction: share of all images held out for testing; the test set depends on
                this alone, never on ``seed``.
            seed: seed of the train/validation split.
            num_workers: DataLoader worker processes (0 loads in the main process; the data is tiny).
            augment: random shifts of up to one pixel on training batches. Off by default: at
                the default budget they did not raise test accuracy.
        """
        super().__init__(batch_size=batch_size, num_workers=num_workers, augment=augment)
        _check_fraction("val_fraction", val_fraction)
        _check_fraction("test_fraction", test_fraction)
        if val_fraction + test_fraction >= 1.0:
            raise ValueError(
                f"val_fraction + test_fraction must be below 1, got {val_fraction} + {test_fraction}"
            )
        self.val_fraction = val_fraction
        self.test_fraction = test_fraction
        self.seed = seed

    def setup(self, stage: str | None = None) -> None:
        if self.splits:
            return  # fit then test reuse the same split
        images, labels = load_digits_tensors()
        index = split_indices(
            labels, val_fraction=self.val_fraction, test_fraction=self.test_fraction, seed=self.seed
        )
        self.splits = {name: TensorPairs(images[ix], labels[ix]) for name, ix in index.items()}
        train_pixels = images[index["train"]].float()
        self.set_pixel_stats(train_pixels.mean().view(1), train_pixels.std().view(1))
