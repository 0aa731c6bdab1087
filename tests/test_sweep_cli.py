"""``train.py sweep`` and ``train.py plot`` end to end, on tiny images, through the real training code."""

import json

import pytest
import yaml
from torch import nn

from hyper import LowRank, count_parameters
from hyper.training.cli import main
from models import create_model
from test_cli import write_config

PLAIN = {"class_path": "models.WideResNet", "init_args": {"depth": 10, "width": 1, "num_classes": 4, "in_channels": 3}}
BLOCK_CONVS = ["stages.*.conv1.weight", "stages.*.conv2.weight"]


def write_sweep(folder):
    write_config(folder, name="base.yaml")
    sweep = {
        "base": "base.yaml",
        "metric": "test_acc",
        "overrides": {"model.init_args.kernel_l2": 0.0, "trainer.max_epochs": 1},
        "methods": [
            {"name": "hyper", "vary": {"model.init_args.network.init_args.embedding_dim": [2, 4]}},
            {
                "name": "lowrank",
                "set": {"model.init_args.network": {"class_path": "hyper.Wrapped", "init_args": {
                    "target": PLAIN, "include": BLOCK_CONVS, "source": {"class_path": "hyper.LowRank"}}}},
                "vary": {"model.init_args.network.init_args.source.init_args.rank": [1]},
            },
            {
                "name": "pruned",
                "set": {
                    "model.init_args.network": PLAIN,
                    "trainer.callbacks": [{"class_path": "hyper.training.pruning.MagnitudePruning"}],
                },
                "vary": {"trainer.callbacks.0.init_args.amount": [0.75]},
            },
        ],
    }
    path = folder / "tiny_sweep.yaml"
    path.write_text(yaml.safe_dump(sweep))
    return path


def test_sweep_runs_resumes_and_plots(tmp_path, capsys):
    out = tmp_path / "results"
    sweep = write_sweep(tmp_path)
    assert main(["sweep", "--config", str(sweep), "--out", str(out)]) == 0
    rows = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    assert [r["method"] for r in rows] == ["hyper", "hyper", "lowrank", "pruned"]
    assert rows[0]["knobs"] == {"embedding_dim": 2} and rows[0]["source"] == "hyper"
    assert rows[0]["trainable_params"] < rows[1]["trainable_params"]  # grows with embedding size
    lowrank = count_parameters(create_model("wrn10_1", num_classes=4, source=LowRank(rank=1)))
    assert rows[2]["source"] == "lowrank" and rows[2]["trainable_params"] == lowrank.trainable
    assert rows[2]["compression_ratio"] == pytest.approx(lowrank.compression_ratio)
    # Counted on non-zero weights: round(75%) of each conv and linear weight is gone.
    plain = create_model("wrn10_1", num_classes=4)
    pruned = sum(round(0.75 * m.weight.numel()) for m in plain.modules() if isinstance(m, (nn.Conv2d, nn.Linear)))
    size = sum(p.numel() for p in plain.parameters())
    assert rows[3]["pruned"] is True and rows[3]["trainable_params"] == size - pruned
    assert rows[3]["compression_ratio"] == pytest.approx(size / (size - pruned))
    assert (out / "tiny_sweep.png").is_file()
    printed = capsys.readouterr().out
    assert "[4/4] pruned(amount=0.75) seed=0" in printed and "| lowrank | rank=1 |" in printed

    assert main(["sweep", "--config", str(sweep), "--out", str(out)]) == 0  # rerun: nothing to do
    assert "4 already done, 0 to run" in capsys.readouterr().out
    assert len((out / "results.jsonl").read_text().splitlines()) == 4

    assert main(["plot", str(out), "--out", str(tmp_path / "again.png")]) == 0
    assert (tmp_path / "again.png").is_file()
    assert all(r["size_bytes"] > 0 and r["compression_bytes"] > 0 for r in rows)
    assert rows[3]["compression_bytes"] < rows[3]["compression_ratio"]  # sparse storage pays for its bitmask
    assert main(["plot", str(out), "--x", "bytes", "--out", str(tmp_path / "bytes.png")]) == 0
    assert "| byte compression |" in capsys.readouterr().out and (tmp_path / "bytes.png").is_file()


def test_sweep_errors_are_one_line(tmp_path, capsys):
    assert main(["sweep", "--config", str(tmp_path / "nope.yaml")]) == 2
    assert capsys.readouterr().err.strip() == f"error: sweep file not found: {tmp_path / 'nope.yaml'}"
    assert main(["plot", str(tmp_path)]) == 2
    assert "no results file" in capsys.readouterr().err
