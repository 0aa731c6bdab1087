"""CIFAR-10/100 from tiny files written in the official binary layout; no network, no ../shared."""

import dataclasses
import hashlib
import socket
import tarfile
import urllib.error
import urllib.request
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from hyper.data import CIFAR10DataModule, CIFAR100DataModule
from hyper.data.augment import normalize, random_crop_flip
from hyper.data.cifar import CIFAR10, CIFAR100, read_records, split_train_val

TRAIN_FILES = [f"data_batch_{i}.bin" for i in range(1, 6)]


@pytest.fixture(autouse=True)
def no_network(monkeypatch):
    """Any attempt to open a socket fails the test instead of reaching the internet."""

    def refuse(*args, **kwargs):
        raise AssertionError("a test tried to use the network")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


def make_records(
    n: int, *, first: int, label_bytes: int = 1, classes: int = 10
) -> tuple[bytes, torch.Tensor, torch.Tensor]:
    """n records: random CHW images whose first two bytes number the record; (n, label_bytes) labels."""
    g = torch.Generator().manual_seed(first)
    images = torch.randint(0, 256, (n, 3, 32, 32), generator=g, dtype=torch.uint8)
    images[:, 0, 0, 0] = torch.arange(first, first + n) % 256  # a fingerprint per record
    images[:, 0, 0, 1] = torch.arange(first, first + n) // 256
    labels = torch.randint(0, classes, (n, label_bytes), generator=g, dtype=torch.uint8)
    rows = [bytes(labels[i].tolist()) + bytes(images[i].flatten().tolist()) for i in range(n)]
    return b"".join(rows), images, labels.long()


def write_cifar10(root: Path, per_file: int = 4) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    folder = root / "cifar-10-batches-bin"
    folder.mkdir(parents=True)
    written = {}
    for k, name in enumerate([*TRAIN_FILES, "test_batch.bin"]):
        raw, images, labels = make_records(per_file, first=k * per_file)
        (folder / name).write_bytes(raw)
        written[name] = (images, labels[:, 0])
    return written


def fingerprint(images: torch.Tensor) -> list[int]:
    return (images[:, 0, 0, 0].long() + 256 * images[:, 0, 0, 1].long()).tolist()


def test_record_layout_is_label_then_red_green_blue_planes(tmp_path):
    record = bytearray(3073)
    record[0] = 7
    record[1 + 0 * 1024 + 2 * 32 + 5] = 11  # red, row 2, column 5
    record[1 + 1 * 1024 + 0 * 32 + 31] = 22  # green, row 0, column 31
    record[1 + 2 * 1024 + 31 * 32 + 0] = 33  # blue, row 31, column 0
    path = tmp_path / "one.bin"
    path.write_bytes(bytes(record) * 2)
    images, labels = read_records(path, CIFAR10)
    assert images.shape == (2, 3, 32, 32) and images.dtype == torch.uint8
    assert labels.tolist() == [7, 7] and labels.dtype == torch.int64
    assert images[0, 0, 2, 5] == 11 and images[0, 1, 0, 31] == 22 and images[0, 2, 31, 0] == 33
    assert int(images.sum()) == 2 * (11 + 22 + 33)


def test_cifar10_files_round_trip(tmp_path):
    written = write_cifar10(tmp_path)
    dm = CIFAR10DataModule(data_dir=str(tmp_path), val_size=0)
    dm.setup()
    assert torch.equal(dm.splits["test"].images, written["test_batch.bin"][0])
    assert torch.equal(dm.splits["test"].labels, written["test_batch.bin"][1])
    train_images = torch.cat([written[name][0] for name in TRAIN_FILES])
    order = torch.tensor(fingerprint(dm.splits["train"].images)).argsort()
    assert torch.equal(dm.splits["train"].images[order], train_images)
    assert (dm.num_classes, dm.in_channels, dm.image_size) == (10, 3, 32)


def test_cifar100_reads_the_fine_label(tmp_path):
    folder = tmp_path / "cifar-100-binary"
    folder.mkdir()
    raw, images, labels = make_records(6, first=0, label_bytes=2, classes=100)
    (folder / "train.bin").write_bytes(raw)
    (folder / "test.bin").write_bytes(raw[: 3 * 3074])
    dm = CIFAR100DataModule(data_dir=str(tmp_path), val_size=2)
    dm.setup("test")
    assert torch.equal(dm.splits["test"].labels, labels[:3, 1])  # byte 1: fine, not coarse
    assert torch.equal(dm.splits["test"].images, images[:3])
    assert dm.num_classes == 100


def test_train_val_split_arithmetic(tmp_path):
    write_cifar10(tmp_path, per_file=4)  # 20 training records, like 50,000 at 1/2500 scale
    dm = CIFAR10DataModule(data_dir=str(tmp_path), val_size=5, seed=1)
    dm.setup("fit")
    train, val = fingerprint(dm.splits["train"].images), fingerprint(dm.splits["val"].images)
    assert (len(train), len(val)) == (15, 5)
    assert sorted(train + val) == list(range(20))  # disjoint, and nothing lost
    assert "test" not in dm.splits  # fit does not read the test file


def test_split_is_seeded():
    a_train, a_val = split_train_val(50, val_size=10, seed=0)
    b_train, b_val = split_train_val(50, val_size=10, seed=0)
    c_train, c_val = split_train_val(50, val_size=10, seed=1)
    assert torch.equal(a_val, b_val) and torch.equal(a_train, b_train)
    assert not torch.equal(a_val.sort().values, c_val.sort().values)
    with pytest.raises(ValueError, match="val_size"):
        split_train_val(20, val_size=20, seed=0)


def test_data_dir_may_be_the_official_folder_itself(tmp_path):
    written = write_cifar10(tmp_path)
    dm = CIFAR10DataModule(data_dir=str(tmp_path / "cifar-10-batches-bin"))
    dm.setup("test")
    assert torch.equal(dm.splits["test"].images, written["test_batch.bin"][0])


def test_label_out_of_range_is_a_clear_error(tmp_path):
    write_cifar10(tmp_path)
    path = tmp_path / "cifar-10-batches-bin" / "test_batch.bin"
    raw = bytearray(path.read_bytes())
    raw[3073] = 42  # the second record's label byte
    path.write_bytes(bytes(raw))
    with pytest.raises(ValueError, match="test_batch.bin.*42"):
        CIFAR10DataModule(data_dir=str(tmp_path)).setup("test")


@pytest.mark.parametrize("delta", [-1, 100])
def test_wrong_size_file_is_a_clear_error(tmp_path, delta):
    write_cifar10(tmp_path)
    path = tmp_path / "cifar-10-batches-bin" / "data_batch_3.bin"
    path.write_bytes(path.read_bytes()[:delta] if delta < 0 else path.read_bytes() + bytes(delta))
    size = path.stat().st_size
    dm = CIFAR10DataModule(data_dir=str(tmp_path))
    with pytest.raises(ValueError) as error:
        dm.setup("fit")
    message = str(error.value)
    assert "data_batch_3.bin" in message and f"{size:,} bytes" in message and "3,073" in message
    assert "\n" not in message


def test_missing_files_one_actionable_line(tmp_path):
    dm = CIFAR10DataModule(data_dir=str(tmp_path / "nowhere"))
    dm.prepare_data()  # without download there is nothing to do; setup reports what is missing
    with pytest.raises(FileNotFoundError) as error:
        dm.setup("fit")
    message = str(error.value)
    assert "\n" not in message
    assert "cifar-10-batches-bin" in message and "--data.data_dir" in message and "--data.download" in message


def test_test_stage_needs_only_the_test_file(tmp_path):
    written = write_cifar10(tmp_path)
    (tmp_path / "cifar-10-batches-bin" / "data_batch_1.bin").unlink()
    dm = CIFAR10DataModule(data_dir=str(tmp_path))
    dm.setup("test")
    assert torch.equal(dm.splits["test"].labels, written["test_batch.bin"][1])
    with pytest.raises(FileNotFoundError, match="data_batch_1.bin"):
        dm.setup("fit")


# download ----------------------------------------------------------------------------------


def official_archive(tmp_path: Path) -> Path:
    """A .tar.gz shaped like the official one, built from tiny files."""
    source = tmp_path / "source"
    written = write_cifar10(source)
    archive = tmp_path / "served" / "cifar-10-binary.tar.gz"
    archive.parent.mkdir()
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(source / "cifar-10-batches-bin", arcname="cifar-10-batches-bin")
    return archive, written


def test_download_verifies_and_extracts(tmp_path, monkeypatch):
    archive, written = official_archive(tmp_path)
    md5 = hashlib.md5(archive.read_bytes()).hexdigest()
    spec = dataclasses.replace(CIFAR10, url=archive.as_uri(), md5=md5)  # file:// never leaves the machine
    monkeypatch.setattr(CIFAR10DataModule, "spec", spec)
    data_dir = tmp_path / "data"
    dm = CIFAR10DataModule(data_dir=str(data_dir), download=True, val_size=4)
    dm.prepare_data()
    assert (data_dir / "cifar-10-batches-bin" / "test_batch.bin").is_file()
    dm.setup()
    assert torch.equal(dm.splits["test"].images, written["test_batch.bin"][0])
    assert len(dm.splits["train"]) == 16 and len(dm.splits["val"]) == 4


def test_checksum_mismatch_is_a_clear_error(tmp_path, monkeypatch):
    archive, _ = official_archive(tmp_path)
    spec = dataclasses.replace(CIFAR10, url=archive.as_uri(), md5="0" * 32)
    monkeypatch.setattr(CIFAR10DataModule, "spec", spec)
    data_dir = tmp_path / "data"
    dm = CIFAR10DataModule(data_dir=str(data_dir), download=True)
    with pytest.raises(ValueError, match="checksum mismatch"):
        dm.prepare_data()
    assert not (data_dir / "cifar-10-batches-bin").exists()
    assert list(data_dir.iterdir()) == []  # the partial download is removed


def test_unreachable_network_is_one_actionable_line(tmp_path, monkeypatch):
    urls = []

    def unreachable(url, *args, **kwargs):
        urls.append(url)
        raise urllib.error.URLError("Temporary failure in name resolution")

    monkeypatch.setattr(urllib.request, "urlopen", unreachable)
    dm = CIFAR10DataModule(data_dir=str(tmp_path), download=True)
    with pytest.raises(FileNotFoundError) as error:
        dm.prepare_data()
    message = str(error.value)
    assert urls == [CIFAR10.url]
    assert "\n" not in message and CIFAR10.url in message and "--data.data_dir" in message


def test_official_checksums_and_urls():
    assert CIFAR10.md5 == "c32a1d4ab5d03f1284b67883e8d87530"
    assert CIFAR100.md5 == "03b5dce01913d631647c71ecec9e9cb8"
    assert CIFAR10.url.endswith("/cifar-10-binary.tar.gz")
    assert CIFAR100.url.endswith("/cifar-100-binary.tar.gz")


# per-batch augmentation --------------------------------------------------------------------


def reference_crop_flip(images, padding, generator):
    """The same random draws as random_crop_flip, applied image by image."""
    b, _, h, w = images.shape
    top = torch.randint(0, 2 * padding + 1, (b,), generator=generator)
    left = torch.randint(0, 2 * padding + 1, (b,), generator=generator)
    mirror = torch.rand(b, generator=generator) < 0.5
    padded = torch.nn.functional.pad(images, (padding,) * 4)
    out = []
    for i in range(b):
        crop = padded[i, :, top[i] : top[i] + h, left[i] : left[i] + w]
        out.append(crop.flip(2) if mirror[i] else crop)
    return torch.stack(out)


def test_crop_flip_matches_a_per_image_loop():
    images = torch.randint(0, 256, (64, 3, 32, 32), dtype=torch.uint8)
    got = random_crop_flip(images, padding=4, flip=True, generator=torch.Generator().manual_seed(3))
    expected = reference_crop_flip(images, 4, torch.Generator().manual_seed(3))
    assert got.shape == images.shape and got.dtype == torch.uint8
    assert torch.equal(got, expected)
    assert not torch.equal(got, images)


def test_crop_without_padding_or_flip_is_identity():
    images = torch.randint(0, 256, (8, 3, 32, 32), dtype=torch.uint8)
    assert torch.equal(random_crop_flip(images, padding=0, flip=False), images)


def test_preprocess_augments_training_batches_only(tmp_path):
    write_cifar10(tmp_path)
    dm = CIFAR10DataModule(data_dir=str(tmp_path), val_size=4)
    dm.setup("fit")
    images, labels = next(iter(dm.train_dataloader()))
    assert images.dtype == torch.uint8 and images.shape == (16, 3, 32, 32) and labels.dtype == torch.int64
    mean, std = torch.tensor(CIFAR10.mean) * 255, torch.tensor(CIFAR10.std) * 255
    expected = normalize(images, mean=mean, std=std)
    dm.trainer = SimpleNamespace(training=False)
    x, _ = dm.on_after_batch_transfer((images, labels), 0)
    assert torch.equal(x, expected) and x.dtype == torch.float32
    dm.trainer = SimpleNamespace(training=True)
    x, _ = dm.on_after_batch_transfer((images, labels), 0)
    assert x.shape == images.shape and x.dtype == torch.float32 and not torch.equal(x, expected)


@pytest.mark.parametrize("kwargs, name", [({"val_size": -1}, "val_size"), ({"batch_size": 0}, "batch_size")])
def test_bad_arguments_name_themselves(kwargs, name):
    with pytest.raises(ValueError, match=name):
        CIFAR10DataModule(**kwargs)
