"""Character language models on two devices (DDP, two CPU processes over gloo): each rank reads
its own contiguous streams, and the run equals one device reading all of them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from hyper.data.text import CharDataModule, batchify
from hyper.training.cli import main

ROOT = Path(__file__).resolve().parents[1]
TEXT = "".join(f"{word} sat on the {thing}. " for word in ("the cat", "a rat", "my dog") for thing in ("mat", "hat")) * 12
B, T, STEPS = 2, 8, 4


def write_config(folder: Path, record: Path) -> Path:
    corpus = folder / "corpus.txt"
    corpus.write_text(TEXT)
    config = {
        "seed_everything": 0,
        "threads": 1,
        "trainer": {
            "accelerator": "cpu",
            "max_steps": STEPS,
            "val_check_interval": STEPS,
            "check_val_every_n_epoch": None,
            "gradient_clip_val": 1.0,
            "default_root_dir": str(folder / "runs"),
            "enable_progress_bar": False,
            "enable_model_summary": False,
            "callbacks": [{"class_path": "lm_ddp_probe.RecordTraining", "init_args": {"folder": str(record)}}],
        },
        "report": {"unit": "tokens", "count": "elements"},
        "model": {
            "class_path": "hyper.training.CharLanguageModel",
            "init_args": {
                "network": {"class_path": "models.CharRNN", "init_args": {"core": "ln_lstm", "hidden_size": 8, "embedding_size": 4}},
                "optimizer": {"class_path": "torch.optim.Adam", "init_args": {"lr": 0.01}},
            },
        },
        "data": {
            "class_path": "hyper.data.CharDataModule",
            "init_args": {"path": str(corpus), "batch_size": B, "seq_len": T, "split": [0.8, 0.1, 0.1]},
        },
    }
    path = folder / "lm.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def test_two_ranks_read_disjoint_contiguous_streams_and_equal_one_device(tmp_path: Path) -> None:
    config = write_config(tmp_path, tmp_path / "ddp")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "tests"), str(ROOT)])}
    ddp = ["fit", "--config", str(config), "--trainer.devices", "2", "--trainer.strategy", "ddp"]
    done = subprocess.run([sys.executable, "train.py", *ddp], cwd=ROOT, env=env, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr[-3000:]
    ranks = [json.loads((tmp_path / "ddp" / f"rank{r}.json").read_text()) for r in (0, 1)]

    # each rank: B streams of its own, windows in order; together the first 2B of the split's streams
    data = CharDataModule(path=str(tmp_path / "corpus.txt"), batch_size=B, seq_len=T, split=(0.8, 0.1, 0.1))
    streams = batchify(data._stream_ids("train"), 2 * B).long()
    for rank in ranks:
        assert rank["world_size"] == 2 and len(rank["inputs"]) == STEPS
        mine = streams[rank["rank"] * B : (rank["rank"] + 1) * B]
        for k, inputs in enumerate(rank["inputs"]):
            assert torch.equal(torch.tensor(inputs), mine[:, k * T : (k + 1) * T])

    # one device over the same 2B streams: the same losses (the mean of the ranks'), weights and val_bpc
    sys.path.insert(0, str(ROOT / "tests"))
    single = ["fit", "--config", str(config), "--data.batch_size", str(2 * B),
              "--trainer.callbacks.init_args.folder", str(tmp_path / "single")]
    assert main(single) == 0
    one = json.loads((tmp_path / "single" / "rank0.json").read_text())
    mean_of_ranks = [(a + b) / 2 for a, b in zip(ranks[0]["losses"], ranks[1]["losses"])]
    assert mean_of_ranks == pytest.approx(one["losses"], rel=1e-5)
    assert ranks[0]["val_bpc"] == pytest.approx(one["val_bpc"], rel=1e-5)
    ddp_weights, one_weights = (torch.load(tmp_path / name / "weights.pt") for name in ("ddp", "single"))
    for name, weight in one_weights.items():
        torch.testing.assert_close(ddp_weights[name], weight, rtol=1e-4, atol=1e-5)
