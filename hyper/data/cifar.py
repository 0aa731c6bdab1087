"""CIFAR-10 and CIFAR-100 from the official *binary* files: nothing is ever unpickled.

A record is ``label_bytes`` label bytes then 3,072 pixel bytes: 1,024 red, 1,024 green,
1,024 blue, each plane row-major 32×32, i.e. exactly a (3, 32, 32) CHW uint8 image.

    cifar-10-batches-bin/data_batch_{1..5}.bin, test_batch.bin   1 label byte, 10,000 records each
    cifar-100-binary/train.bin (50,000), test.bin (10,000)        2 label bytes: coarse, fine

The paper's split: 45,000 training and 5,000 validation images drawn (seeded) from the 50,000
training records, and the official 10,000 test records.
"""
import urllib.error
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import torch
from lightning.pytorch.utilities import rank_zero_info
from torch import Tensor

from hyper.checks import check_int
from hyper.data import download
from hyper.data.images import InMemoryImageDataModule, TensorPairs

PIXEL_BYTES = 3 * 32 * 32


@dataclass(frozen=True)
class CifarSpec:
    """Where a CIFAR variant's files live and how its records are laid out."""

    name: str
    folder: str  # the folder the official archive unpacks to
    train_files: tuple[str, ...]
    test_files: tuple[str, ...]
    records_per_file: dict[str, int]  # official counts, quoted when a file has the wrong size
    label_bytes: int
    label_byte: int  # which label byte is the class label
    num_classes: int
    url: str
    md5: str
    mean: tuple[float, float, float]  # per channel, pixels scaled to [0, 1]
    std: tuple[float, float, float]

    @property
    def record_bytes(self) -> int:
        return self.label_bytes + PIXEL_BYTES


CIFAR10 = CifarSpec(
    name="CIFAR-10",
    folder="cifar-10-batches-bin",
    train_files=tuple(f"data_batch_{i}.bin" for i in range(1, 6)),
    test_files=("test_batch.bin",),
    records_per_file={**{f"data_batch_{i}.bin": 10_000 for i in range(1, 6)}, "test_batch.bin": 10_000},
    label_bytes=1,
    label_byte=0,
    num_classes=10,
    url="https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz",
    md5="c32a1d4ab5d03f1284b67883e8d87530",
    mean=(0.4914, 0.4822, 0.4465),
    std=(0.2470, 0.2435, 0.2616),
)

CIFAR100 = CifarSpec(
    name="CIFAR-100",
    folder="cifar-100-binary",
    train_files=("train.bin",),
    test_files=("test.bin",),
    records_per_file={"train.bin": 50_000, "test.bin": 10_000},
    label_bytes=2,
    label_byte=1,  # the fine label (100 classes); byte 0 is the coarse one (20 superclasses)
    num_classes=100,
    url="https://www.cs.toronto.edu/~kriz/cifar-100-binary.tar.gz",
    md5="03b5dce01913d631647c71ecec9e9cb8",
    mean=(0.5071, 0.4865, 0.4409),
    std=(0.2673, 0.2564, 0.2762),
)


def read_records(path: Path, spec: CifarSpec) -> tuple[Tensor, Tensor]:
    """One binary file → images uint8 (N, 3, 32, 32) and labels int64 (N,).

    Any whole number of records is accepted (small test files included); anything else is
    a truncated or foreign file and raises ValueError naming the file and the sizes.
    """
    size = check_record_file(path, spec)
    raw = torch.from_file(str(path), shared=False, size=size, dtype=torch.uint8)
    records = raw.view(-1, spec.record_bytes)  # (N, label_bytes + 3072)
    labels = records[:, spec.label_byte].long()
    if int(labels.max()) >= spec.num_classes:
        raise ValueError(
            f"{path} holds the label {int(labels.max())} but {spec.name} has {spec.num_classes} classes; "
            f"it is not a {spec.name} binary file"
        )
    images = records[:, spec.label_bytes :].reshape(-1, 3, 32, 32).clone()  # CHW planes as stored
    return images, labels


def check_record_file(path: Path, spec: CifarSpec) -> int:
    """The file's size in bytes; ValueError unless it holds a whole number of records."""
    size = path.stat().st_size
    if size == 0 or size % spec.record_bytes:
        official = spec.records_per_file.get(path.name, 10_000)
        raise ValueError(
            f"{path} is {size:,} bytes, not a whole number of {spec.record_bytes:,}-byte "
            f"{spec.name} records (the official file is {official:,} records = "
            f"{official * spec.record_bytes:,} bytes); it is probably truncated: copy or download it again"
        )
    return size


def read_files(folder: Path, names: tuple[str, ...], spec: CifarSpec) -> TensorPairs:
    parts = [read_records(folder / name, spec) for name in names]
    return TensorPairs(torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts]))


def split_train_val(n: int, *, val_size: int, seed: int) -> tuple[Tensor, Tensor]:
    """Seeded random (train, val) indices into n training records; val has ``val_size`` of them."""
    if not 0 <= val_size < n:
        raise ValueError(f"val_size must be between 0 and {n - 1} (the training records), got {val_size}")
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    return order[val_size:], order[:val_size]


class CifarDataModule(InMemoryImageDataModule):
    """CIFAR from the official binary files, held in memory as uint8 and augmented per batch.

    Batches reach the model as normalised float32 (B, 3, 32, 32) and int64 labels (B,);
    training batches are padded by 4, randomly cropped to 32×32 and flipped, on their device.
    """

    spec: ClassVar[CifarSpec]
    in_channels = 3
    image_size = 32
    crop_padding = 4
    flip = True

    def __init__(
        self,
        *,
        data_dir: str = "data",
        batch_size: int = 128,
        val_size: int = 5000,
        seed: int = 0,
        download: bool = False,
        num_workers: int = 0,
        augment: bool = True,
    ) -> None:
        """
        Args:
            data_dir: folder holding the unpacked official folder (cifar-10-batches-bin/ or
                cifar-100-binary/), or that folder itself.
            batch_size: images per batch.
            val_size: training records held out for validation (the paper: 5,000 of 50,000);
                0 trains on all of them.
            seed: seed of the train/validation split.
            download: fetch the official archive into ``data_dir`` (checksum verified) when the
                files are missing.
            num_workers: DataLoader worker processes (0 is fine: batches are one indexing op).
            augment: pad 4, random 32×32 crop and horizontal flip on training batches.
        """
        super().__init__(batch_size=batch_size, num_workers=num_workers, augment=augment)
        check_int("val_size", val_size, minimum=0)
        self.data_dir = data_dir
        self.val_size = val_size
        self.seed = seed
        self.download = download

    def prepare_data(self) -> None:
        """Download and unpack the official archive if the files are missing and ``download`` is on.

        Without ``download`` a missing file is reported by ``setup``, which knows what the stage
        needs (testing needs the test file only).
        """
        files = self.spec.train_files + self.spec.test_files
        if not self.download or self._folder_holding(files) is not None:
            return
        self._download()
        if self._folder_holding(files) is None:
            raise FileNotFoundError(f"unpacked {self.spec.url}, but " + self._missing_message(files))

    def check_files(self, stages: Collection[str]) -> None:
        """Raise FileNotFoundError or ValueError now, before a run starts, unless every file the
        ``stages`` will read is there and whole (a download still to come is not checked)."""
        needs_test = {"test", "predict"} & set(stages)
        needs_train = {"fit", "validate"} & set(stages)
        files = (self.spec.train_files if needs_train else ()) + (self.spec.test_files if needs_test else ())
        if not files or (self.download and self._folder_holding(files) is None):
            return
        folder = self._folder(files)
        for name in files:
            check_record_file(folder / name, self.spec)

    def setup(self, stage: str | None = None) -> None:
        self.set_pixel_stats(torch.tensor(self.spec.mean) * 255, torch.tensor(self.spec.std) * 255)
        if stage in (None, "fit", "validate") and "train" not in self.splits:
            self._load_train_val()
        if stage in (None, "test", "predict") and "test" not in self.splits:
            files = self.spec.test_files
            self.splits["test"] = read_files(self._folder(files), files, self.spec)

    def _load_train_val(self) -> None:
        files = self.spec.train_files
        records = read_files(self._folder(files), files, self.spec)
        train, val = split_train_val(len(records), val_size=self.val_size, seed=self.seed)
        self.splits["train"] = TensorPairs(records.images[train], records.labels[train])
        self.splits["val"] = TensorPairs(records.images[val], records.labels[val])

    # finding and fetching files ----------------------------------------------------------

    def _folder(self, files: tuple[str, ...]) -> Path:
        folder = self._folder_holding(files)
        if folder is None:
            raise FileNotFoundError(self._missing_message(files))
        return folder

    def _folder_holding(self, files: tuple[str, ...]) -> Path | None:
        root = Path(self.data_dir).expanduser()
        for folder in (root / self.spec.folder, root):
            if all((folder / name).is_file() for name in files):
                return folder
        return None

    def _missing_message(self, files: tuple[str, ...]) -> str:
        expected = Path(self.data_dir) / self.spec.folder
        missing = [name for name in files if not (expected / name).is_file()]
        return (
            f"{self.spec.name} binary files not found in {expected} (missing {', '.join(missing)}); "
            f"pass --data.data_dir DIR pointing at the folder that holds the official "
            f"{self.spec.folder}/, or --data.download true to fetch {self.spec.url}"
        )

    def _download(self) -> None:
        root = Path(self.data_dir).expanduser()
        archive = root / self.spec.url.rsplit("/", 1)[-1]
        rank_zero_info(f"downloading {self.spec.url} to {archive}")
        try:
            download.fetch(self.spec.url, archive, md5=self.spec.md5)
        except urllib.error.URLError as err:
            raise FileNotFoundError(
                f"{self.spec.name} binary files not found in {root / self.spec.folder} and the "
                f"download of {self.spec.url} failed ({err.reason}); fetch and unpack it there by hand, "
                f"or pass --data.data_dir DIR pointing at the folder that holds {self.spec.folder}/"
            ) from err
        download.extract(archive, root)


class CIFAR10DataModule(CifarDataModule):
    """CIFAR-10: 10 classes, 3×32×32; 45k train / 5k val from the training batches, 10k test."""

    spec = CIFAR10
    num_classes = CIFAR10.num_classes


class CIFAR100DataModule(CifarDataModule):
    """CIFAR-100 with its fine labels: 100 classes, 3×32×32; 45k / 5k / 10k as for CIFAR-10."""

    spec = CIFAR100
    num_classes = CIFAR100.num_classes
