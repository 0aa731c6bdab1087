"""Any model from the command line: ``hyper.Wrapped`` around a module named by its import path,
trained, reported and rebuilt from its checkpoint like the shipped families."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml

from hyper import Hyper, count_parameters, wrap
from hyper.training.cli import main
from models import CharTransformer
from targets import ResNet18Style
from test_cli import only_run, write_config

pytestmark = pytest.mark.usefixtures("one_thread")


def test_a_users_module_wrapped_from_the_command_line(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    flags = [
        "--model.network", "hyper.Wrapped",
        "--model.network.target", "models.ResNet",
        "--model.network.target.blocks", "[2, 2]",
        "--model.network.target.widths", "[16, 32]",
        "--model.network.target.num_classes", "4",
        "--model.network.source", "hyper.Hyper",
        "--model.network.source.embedding_dim", "4",
        "--model.network.exclude", "*downsample*",
        "--model.kernel_l2", "0",
    ]
    assert main(["fit", "--config", str(config), *flags]) == 0
    report = json.loads((only_run(tmp_path / "runs") / "report.json").read_text())
    expected = count_parameters(wrap(ResNet18Style(num_classes=4), Hyper(embedding_dim=4), exclude="*downsample*"))
    assert (report["model"], report["source"]) == ("ResNet+hyper", "hyper")
    assert report["trainable_params"] == expected.trainable
    assert report["plain_equivalent_params"] == expected.plain_equivalent
    # the checkpoint rebuilds the wrapped network: nothing restated
    where = ["--trainer.default_root_dir", str(tmp_path / "again")]
    assert main(["test", "--ckpt_path", report["best_checkpoint"], *where]) == 0
    tested = json.loads((only_run(tmp_path / "again") / "report.json").read_text())
    assert tested["trainable_params"] == expected.trainable and "test_acc" in tested


def test_a_wrapped_character_model_round_trips_through_its_checkpoint(tmp_path: Path, capfd) -> None:
    text = "the cat sat on the mat; a rat ate the hat. " * 8
    corpus = tmp_path / "corpus.txt"
    corpus.write_text(text)
    vocab_size = len(set(text[: int(0.6 * len(text))])) + 1  # the training split's characters and <unk>
    target = dict(vocab_size=vocab_size, num_layers=2, num_heads=2, embed_dim=32, context=16)
    config = {
        "trainer": {"max_steps": 2, "val_check_interval": 2, "default_root_dir": str(tmp_path / "runs"),
                    "enable_progress_bar": False, "enable_model_summary": False},
        "checkpoint": {"monitor": "val_bpc", "mode": "min"},
        "model": {"class_path": "hyper.training.CharLanguageModel", "init_args": {"network": {
            "class_path": "hyper.Wrapped", "init_args": {
                "target": {"class_path": "models.CharTransformer", "init_args": target},
                "source": {"class_path": "hyper.Hyper", "init_args": {"embedding_dim": 4}},
                "include": ["blocks.*"]}}}},
        "data": {"class_path": "hyper.data.CharDataModule",
                 "init_args": {"path": str(corpus), "batch_size": 2, "seq_len": 8, "split": [0.6, 0.2, 0.2]}},
    }
    path = tmp_path / "wrapped_lm.yaml"
    path.write_text(yaml.safe_dump(config))
    assert main(["run", "--config", str(path)]) == 0
    report = json.loads((only_run(tmp_path / "runs") / "report.json").read_text())
    torch.manual_seed(0)
    expected = count_parameters(wrap(CharTransformer(**target), Hyper(embedding_dim=4), include="blocks.*"))
    assert report["trainable_params"] == expected.trainable
    best = report["best_checkpoint"]
    assert main(["test", "--ckpt_path", best, "--trainer.default_root_dir", str(tmp_path / "test")]) == 0
    assert json.loads((only_run(tmp_path / "test") / "report.json").read_text())["test_bpc"] == pytest.approx(report["test_bpc"], rel=1e-5)
    capfd.readouterr()
    assert main(["sample", "--ckpt_path", best, "--prompt", "the ", "--length", "12"]) == 0
    assert capfd.readouterr().out.startswith("the ")
