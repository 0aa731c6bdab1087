"""The command line end to end, on tiny random images made here: fit, checkpoint, test from the
checkpoint without restating the model, the report, the default invocation, and bad input."""

from __future__ import annotations

import json
from pathlib import Path

import lightning as L
import pytest
import torch
import yaml
from torch.utils.data import DataLoader, TensorDataset

from hyper import count_parameters
from hyper.training.cli import main, with_default_subcommand
from hyper.training.errors import one_line
from hyper.training.hyper_cli import find_config
from models import HyperResNet


class TinyImages(L.LightningDataModule):
    """Random 3×8×8 images, 4 classes read off the signs of two channel means (learnable).

    Args:
        size: images per split.
        batch_size: images per batch.
        seed: seed of the images.
    """

    num_classes = 4
    in_channels = 3
    image_size = 8

    def __init__(self, *, size: int = 32, batch_size: int = 16, seed: int = 0) -> None:
        super().__init__()
        self.save_hyperparameters()  # so a checkpoint names its data too

    def setup(self, stage: str) -> None:
        generator = torch.Generator().manual_seed(self.hparams.seed)
        images = torch.randn(self.hparams.size, 3, 8, 8, generator=generator)
        labels = (images[:, 0].mean((1, 2)) > 0).long() * 2 + (images[:, 1].mean((1, 2)) > 0).long()
        self.data = TensorDataset(images, labels)

    def train_dataloader(self) -> DataLoader:
        return DataLoader(self.data, batch_size=self.hparams.batch_size, shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return DataLoader(self.data, batch_size=self.hparams.batch_size)

    test_dataloader = val_dataloader


NETWORK = dict(depth=10, width=1, num_classes=4, in_channels=3, embedding_dim=4, hidden_dim=8)


def write_config(folder: Path, name: str = "tiny.yaml", **network: object) -> Path:
    """A train.py config: a HyperResNet-10-1 on TinyImages for 2 epochs of 2 steps."""
    config = {
        "trainer": {
            "max_epochs": 2,
            "default_root_dir": str(folder / "runs"),
            "enable_progress_bar": False,
            "enable_model_summary": False,
            "num_sanity_val_steps": 0,
        },
        "model": {
            "class_path": "hyper.training.ImageClassifier",
            "init_args": {
                "network": {"class_path": "models.HyperResNet", "init_args": {**NETWORK, **network}},
                "kernel_l2": 0.0005,
            },
        },
        "data": {"class_path": f"{__name__}.TinyImages"},
    }
    path = folder / name
    path.write_text(yaml.safe_dump(config))
    return path


def only_run(root: Path) -> Path:
    """The one run directory under ``root`` (a trainer's default_root_dir)."""
    (run,) = [p for p in root.glob("*/version_*") if p.is_dir()]
    return run


def test_fit_then_test_from_checkpoint_without_restating_the_model(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    assert main(["fit", "--config", str(config), "--model.network.embedding_dim", "6"]) == 0
    run = only_run(tmp_path / "runs")
    report = json.loads((run / "report.json").read_text())
    network = HyperResNet(**{**NETWORK, "embedding_dim": 6})
    counts = count_parameters(network)
    assert report["knobs"]["embedding_dim"] == 6
    assert report["trainable_params"] == counts.trainable
    assert report["plain_equivalent_params"] == counts.plain_equivalent
    assert report["compression_ratio"] == pytest.approx(counts.compression_ratio)
    assert report["steps"] == 4 and report["images_per_s"] > 0 and (report["val_acc"] * 32).is_integer()
    best = Path(report["best_checkpoint"])
    assert best.parent == run / "checkpoints" and (run / "checkpoints" / "last.ckpt").is_file()

    # Neither model nor data restated: both come from the checkpoint (embedding_dim 6, not 4).
    where = ["--trainer.default_root_dir", str(tmp_path / "test")]
    assert main(["test", "--ckpt_path", str(best), *where]) == 0
    tested = json.loads((only_run(tmp_path / "test") / "report.json").read_text())
    assert tested["knobs"]["embedding_dim"] == 6
    assert tested["trainable_params"] == counts.trainable
    assert (tested["test_acc"] * 32).is_integer() and tested["tested_checkpoint"] == str(best)  # k of 32 images

    # With a config that says embedding_dim 4, the checkpoint's network still wins.
    again = tmp_path / "again"
    where = ["--trainer.default_root_dir", str(again)]
    assert main(["test", "--config", str(config), "--ckpt_path", str(best), *where]) == 0
    assert json.loads((only_run(again) / "report.json").read_text())["test_acc"] == tested["test_acc"]


def test_run_fits_and_tests_the_best_checkpoint(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    assert main(["--config", str(config)]) == 0  # options only: the run subcommand
    report = json.loads((only_run(tmp_path / "runs") / "report.json").read_text())
    assert report["tested_checkpoint"] == report["best_checkpoint"]
    assert {"val_acc", "best_val_acc", "test_acc", "fit_time_s", "test_time_s", "seed"} <= set(report)
    assert report["best_val_acc"] >= report["val_acc"] - 1e-6


def test_no_arguments_run_the_default_config(tmp_path: Path) -> None:
    write_config(tmp_path, name="default.yaml")
    assert main([], config_dir=tmp_path) == 0
    report = json.loads((only_run(tmp_path / "runs") / "report.json").read_text())
    assert report["model"] == "HyperResNet" and "test_acc" in report and "val_acc" in report


def test_run_is_the_default_subcommand(tmp_path: Path) -> None:
    configs = tmp_path / "configs"
    default = str(configs / "default.yaml")
    assert with_default_subcommand([], configs) == ["run", "--config", default]
    overrides = ["--trainer.max_epochs", "3"]
    assert with_default_subcommand(overrides, configs) == ["run", "--config", default, *overrides]
    assert with_default_subcommand(["--config", "fast"], configs) == ["run", "--config", "fast"]
    assert with_default_subcommand(["fit", "-c", "x.yaml"], configs) == ["fit", "-c", "x.yaml"]
    assert with_default_subcommand(["--help"], configs) == ["--help"]


def test_config_names_a_file_or_a_preset(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    configs = tmp_path / "configs"
    configs.mkdir()
    (configs / "fast.yaml").write_text("{}")
    monkeypatch.chdir(tmp_path.parent)  # from anywhere: the name is found in configs/
    fast = configs / "fast.yaml"
    assert find_config("fast", configs) == fast
    assert find_config("fast.yaml", configs) == fast
    assert find_config("configs/fast.yaml", configs) == fast
    assert find_config(str(fast), configs) == fast
    with pytest.raises(FileNotFoundError, match="no such file, nor a preset in .* \\(fast\\)"):
        find_config("missing", configs)


@pytest.mark.parametrize(
    ("override", "says"),
    [
        (["--model.network.embedding_dim", "0"], "embedding_dim must be a positive integer"),
        (["--model.network.depth", "11"], "depth must be of the form 6n + 4"),
        (["--model.network.in_channels", "1"], "in_channels"),
        (["--model.network.num_classes", "3"], "num_classes"),
        (["--trainer.max_epochs", "x"], "trainer.max_epochs"),
        (["--model.schedule", "linear"], "model.schedule"),
        (["--model.nonsense", "1"], "nonsense"),
    ],
)
def test_a_bad_value_is_one_line_and_leaves_nothing(
    tmp_path: Path, capfd: pytest.CaptureFixture, override: list[str], says: str
) -> None:
    config = write_config(tmp_path)
    assert main(["fit", "--config", str(config), *override]) == 2
    error = capfd.readouterr().err.strip().splitlines()
    assert len(error) == 1 and error[0].startswith("error: ") and says in error[0], error
    assert not (tmp_path / "runs").exists()


def test_a_failure_inside_fit_removes_its_run_directory(tmp_path: Path, capfd: pytest.CaptureFixture) -> None:
    # An endless run cannot have a cosine schedule: found in configure_optimizers, after the
    # loggers made the run directory.
    config = write_config(tmp_path)
    assert main(["fit", "--config", str(config), "--trainer.max_epochs", "-1"]) == 2
    assert "finite run" in capfd.readouterr().err.strip().splitlines()[-1]
    assert not (tmp_path / "runs").exists()


def test_one_line_names_the_key_and_the_cause() -> None:
    try:
        try:
            raise ValueError("Expected a <class 'int'>. Got value: x")
        except ValueError as cause:
            raise TypeError('Parser key "trainer":\n  Parser key "max_epochs":\n    nested noise') from cause
    except TypeError as error:
        assert one_line(error) == "trainer.max_epochs: Expected a int. Got value: x"
    assert one_line(ValueError("plain message")) == "plain message"


def test_help_lists_every_command(capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit) as done:
        main(["--help"])
    assert done.value.code == 0
    out = capsys.readouterr().out
    assert all(f"  {command} " in out for command in ("fit", "test", "run", "sweep", "plot", "sample"))


def test_help_says_the_subcommand_is_optional(capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit):
        main(["--help"])
    out = capsys.readouterr().out
    assert "required" not in out, out  # no subcommand means run
    assert " [{fit,validate,test,predict,run}] [-c CONFIG] " in out.splitlines()[0], out
    assert "without one: run" in out


def test_last_checkpoint_is_the_latest_state_and_best_the_best(tmp_path: Path) -> None:
    # "step" never improves in mode min: best.ckpt stays at epoch 0, last.ckpt must move on.
    config = write_config(tmp_path)
    never_better = ["--checkpoint.monitor", "step", "--checkpoint.mode", "min"]
    assert main(["fit", "--config", str(config), "--trainer.max_epochs", "3", *never_better]) == 0
    checkpoints = only_run(tmp_path / "runs") / "checkpoints"
    assert sorted(p.name for p in checkpoints.iterdir()) == ["best.ckpt", "last.ckpt"]
    last = torch.load(checkpoints / "last.ckpt", weights_only=True)
    best = torch.load(checkpoints / "best.ckpt", weights_only=True)
    assert (last["epoch"], last["global_step"]) == (2, 6) and (best["epoch"], best["global_step"]) == (0, 2)
