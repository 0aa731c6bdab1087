"""One protocol for compression callbacks: a callback written against ``Compression`` alone is
counted by the report and compressed again wherever its checkpoint is reloaded, with nothing in
the report or the command line knowing it by name."""

import json
from pathlib import Path

import pytest
import torch
import yaml
from torch import nn

from hyper import count_parameters
from hyper.training.checkpoints import load_checkpoint, network_from_checkpoint
from hyper.training.cli import main
from hyper.training.compression import Compression, LotteryTicket, PostTrainingQuantization, QuantizationAwareTraining
from hyper.training.compression.protocol import RECORD_KEY, missing_from, record, recorded
from hyper.training.pruning import MagnitudePruning
from test_cli import only_run, write_config

pytestmark = pytest.mark.usefixtures("one_thread")


class HalfZeroed(Compression):
    """A compression the project does not ship: the smaller ``fraction`` of every weight matrix
    set to zero before the network is tested (post-training pruning, in its own words)."""

    counts_nonzero = True

    def __init__(self, *, fraction: float = 0.5) -> None:
        self.fraction = fraction

    def arguments(self) -> dict:
        return {"fraction": self.fraction}

    @torch.no_grad()
    def reapply(self, network: nn.Module) -> nn.Module:
        for p in network.parameters():
            if p.dim() >= 2:
                cut = p.abs().flatten().kthvalue(int(self.fraction * p.numel())).values
                p.masked_fill_(p.abs() <= cut, 0.0)
        return network


def nonzero(tensors) -> int:
    return sum(int(t.count_nonzero()) for t in tensors)


def test_a_new_compression_is_counted_and_reapplied_on_every_reload(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    settings = yaml.safe_load(config.read_text())
    settings["trainer"]["callbacks"] = [{"class_path": f"{__name__}.HalfZeroed", "init_args": {"fraction": 0.5}}]
    config.write_text(yaml.safe_dump(settings))
    assert main(["run", "--config", str(config)]) == 0
    report = json.loads((only_run(tmp_path / "runs") / "report.json").read_text())
    checkpoint = load_checkpoint(report["tested_checkpoint"])
    assert checkpoint[RECORD_KEY] == [{"class_path": f"{__name__}.HalfZeroed", "init_args": {"fraction": 0.5}}]

    # the report counts the tested network's non-zero weights, not the checkpoint's dense ones
    dense = network_from_checkpoint({**checkpoint, RECORD_KEY: []}, source="the checkpoint")
    assert report["pruned"] is True and report["trainable_params"] < count_parameters(dense).trainable

    # ``test`` with the checkpoint alone compresses again, and scores and counts what the run did
    out = tmp_path / "tested"
    assert main(["test", "--ckpt_path", report["tested_checkpoint"], "--trainer.default_root_dir", str(out)]) == 0
    retested = json.loads((only_run(out) / "report.json").read_text())
    assert retested["pruned"] is True and retested["trainable_params"] == report["trainable_params"]
    assert retested["test_loss"] == pytest.approx(report["test_loss"])

    # so does a network rebuilt in Python (sampling, a teacher)
    rebuilt = network_from_checkpoint(checkpoint, source="the checkpoint")
    assert count_parameters(rebuilt, nonzero=True).trainable == report["trainable_params"]
    assert nonzero(rebuilt.parameters()) < nonzero(dense.parameters())


@pytest.mark.parametrize(
    "callback",
    [
        PostTrainingQuantization(bits=2),
        QuantizationAwareTraining(bits=4, start_epoch=3),
        MagnitudePruning(amount=0.7, prune_at_epoch=2, scope="global"),
        LotteryTicket(amount=0.3, rounds=3, phase_epochs=2, rewind_step=5, scope="global"),
    ],
    ids=type,
)
def test_each_shipped_compression_is_made_again_from_its_record(callback: Compression) -> None:
    checkpoint = {RECORD_KEY: [record(callback)]}
    (again,) = recorded(checkpoint, source="the checkpoint")
    assert type(again) is type(callback) and again.arguments() == callback.arguments()
    assert again.counts_nonzero == isinstance(callback, (MagnitudePruning, LotteryTicket))
    assert missing_from(checkpoint, [type(callback)(**callback.arguments())], source="x") == []


def test_a_record_that_names_no_compression_is_refused() -> None:
    for path, says in [("torch.nn.Linear", "no compression callback"), ("nowhere.Thing", "cannot be imported")]:
        checkpoint = {RECORD_KEY: [{"class_path": path, "init_args": {}}]}
        with pytest.raises(ValueError, match=says):
            recorded(checkpoint, source="--ckpt_path x.ckpt")


def test_a_quantised_checkpoint_from_before_the_record_is_quantised_again() -> None:
    checkpoint = {"quantization": {"bits": 4}}  # what quantised runs wrote before the record
    (again,) = recorded(checkpoint, source="the checkpoint")
    assert type(again) is PostTrainingQuantization and again.bits == 4
