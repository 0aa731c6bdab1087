"""Post-training routes through the real training code: SVD + fine-tune, unit removal, a trained
network compressed into a hypernetwork (weight-space fit), a small network trained directly."""

import csv
import json

import lightning as L
import pytest
import torch
import yaml

from hyper import count_parameters, materialize
from hyper.compression.fit import compress_into, reconstruction_error, trained_kernels
from hyper.training import ImageClassifier
from hyper.training.cli import main
from hyper.training.compression import ChannelDropping
from models import HyperResNet, WideResNet
from test_cli import TinyImages, only_run, write_config

PLAIN = {"class_path": "models.WideResNet", "init_args": {"depth": 10, "width": 1, "num_classes": 4, "in_channels": 3}}
HYPER = {"class_path": "models.HyperResNet", "init_args": {**PLAIN["init_args"], "embedding_dim": 4, "hidden_dim": 8}}
CONFIGURED = count_parameters(WideResNet(**PLAIN["init_args"])).plain_equivalent


def test_the_weight_space_fit_lowers_the_reconstruction_error():
    torch.manual_seed(0)
    trained = HyperResNet(depth=10, width=1, embedding_dim=4, hidden_dim=8)  # kernels a hypernetwork can make
    with torch.no_grad():
        trained.target.classifier.weight.add_(1.0)
    student = HyperResNet(depth=10, width=1, embedding_dim=4, hidden_dim=8)
    kernels = trained_kernels(trained, student)
    errors = compress_into(student, trained, steps=150, lr=0.02)
    assert errors[-1] < 0.2 * errors[0]
    assert reconstruction_error(student, kernels).item() == pytest.approx(errors[-1], rel=1e-4)
    assert torch.equal(student.target.classifier.weight, materialize(trained).classifier.weight)  # taken as trained


def run_with(tmp_path, callback, network=PLAIN, max_epochs=2, *extra):
    path = write_config(tmp_path)
    config = yaml.safe_load(path.read_text())
    config["model"]["init_args"].update(network=network, kernel_l2=0.0)
    config["trainer"]["max_epochs"] = max_epochs
    config["trainer"]["callbacks"] = [callback]
    path.write_text(yaml.safe_dump(config))
    code = main(["run", "--config", str(path), *extra])
    run = only_run(tmp_path / "runs") if code == 0 else None
    return code, (json.loads((run / "report.json").read_text()) if run else None), run


def test_svd_then_fine_tune_tests_the_factorised_network(tmp_path):
    callback = {"class_path": "hyper.training.compression.LowRankFactorization", "init_args": {"rank": 2, "at_epoch": 0}}
    earliest = ["--checkpoint.monitor", "step", "--checkpoint.mode", "min"]  # the first checkpoint after the change wins
    code, report, _ = run_with(tmp_path, callback, PLAIN, 2, *earliest)
    assert code == 0
    checkpoint = torch.load(report["tested_checkpoint"], weights_only=False)
    # Not the checkpoint of the epoch that ended as the layers changed: that one is the trained,
    # unfactorised network with its own score; the factorised network is first saved a phase later.
    assert checkpoint["global_step"] == 4
    state = checkpoint["state_dict"]
    assert "network.stem.0.weight" in state and "network.stem.1.weight" in state  # the factorised pair was tested
    assert report["plain_equivalent_params"] == CONFIGURED
    assert report["trainable_params"] == sum(v.numel() for k, v in state.items() if "running" not in k and "num_batches" not in k)
    assert report["compression_ratio"] > 3 and report["latency_ms"] > 0 and report["latency_batch"] == 16


def test_channel_dropping_tests_a_smaller_dense_network(tmp_path):
    callback = {"class_path": "hyper.training.compression.ChannelDropping", "init_args": {"penalty": 0.01, "threshold": 0.97, "at_epoch": 0}}
    code, report, _ = run_with(tmp_path, callback)
    assert code == 0
    state = torch.load(report["tested_checkpoint"], weights_only=False)["state_dict"]
    widths = [state[f"network.stages.{s}.0.conv1.weight"].shape[0] for s in range(3)]
    assert all(w < full for w, full in zip(widths, (16, 32, 64)))  # every block lost inner channels
    assert [state[f"network.stages.{s}.0.conv2.weight"].shape[1] for s in range(3)] == widths
    assert report["plain_equivalent_params"] == CONFIGURED and report["trainable_params"] < CONFIGURED


class AddedGradients(L.Callback):
    """(epoch, whether the callbacks after this one added to the gradients) at every step: the
    gradients as backward left them, against those the optimiser is about to use."""

    def __init__(self) -> None:
        self.steps: list[tuple[int, bool]] = []

    def on_after_backward(self, trainer, pl_module) -> None:  # noqa: ANN001
        self._backward = [(p, p.grad.clone()) for p in pl_module.parameters() if p.grad is not None]

    def on_before_optimizer_step(self, trainer, pl_module, optimizer) -> None:  # noqa: ANN001
        added = any(not torch.equal(p.grad, grad) for p, grad in self._backward)
        self.steps.append((trainer.current_epoch, added))


def test_the_channel_penalty_acts_through_the_end_of_at_epoch_then_stops(tmp_path, one_thread):
    torch.manual_seed(0)
    added = AddedGradients()  # before ChannelDropping: sees the gradients without its penalty
    trainer = L.Trainer(
        max_epochs=3, callbacks=[added, ChannelDropping(penalty=0.01, threshold=0.5, at_epoch=1)], default_root_dir=tmp_path,
        logger=False, enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False, limit_val_batches=0,
    )
    trainer.fit(ImageClassifier(network=WideResNet(**PLAIN["init_args"])), datamodule=TinyImages())  # 2 steps an epoch
    assert added.steps == [(0, True), (0, True), (1, True), (1, True), (2, False), (2, False)]


def test_compress_a_trained_network_into_a_hypernetwork_taught_by_it(tmp_path):
    callback = {
        "class_path": "hyper.training.compression.CompressInto",
        "init_args": {"network": HYPER, "at_epoch": 0, "fit_steps": 20, "distill": True},
    }
    code, report, run = run_with(tmp_path, callback)
    assert code == 0
    hyper = count_parameters(HyperResNet(**HYPER["init_args"]))
    assert report["model"] == "HyperResNet" and report["trainable_params"] == hyper.trainable
    assert report["plain_equivalent_params"] == CONFIGURED == hyper.plain_equivalent
    rows = [r for r in csv.DictReader(open(run / "metrics.csv")) if r.get("fit_error_end")]
    assert float(rows[0]["fit_error_end"]) < float(rows[0]["fit_error_start"])


def test_a_small_network_trained_directly_is_counted_against_the_configured_one(tmp_path):
    small = {"class_path": "models.WideResNet", "init_args": {**PLAIN["init_args"], "depth": 10, "width": 1}}
    big = {"class_path": "models.WideResNet", "init_args": {**PLAIN["init_args"], "depth": 16, "width": 2}}
    callback = {"class_path": "hyper.training.compression.CompressInto", "init_args": {"network": small}}
    code, report, _ = run_with(tmp_path, callback, network=big, max_epochs=1)
    assert code == 0
    big_count = count_parameters(WideResNet(**big["init_args"])).plain_equivalent
    assert report["trainable_params"] == CONFIGURED and report["plain_equivalent_params"] == big_count
    assert report["compression_ratio"] == pytest.approx(big_count / CONFIGURED)


@pytest.mark.parametrize(
    "callback, says",
    [
        ({"class_path": "hyper.training.compression.LowRankFactorization", "init_args": {"rank": 2, "at_epoch": 1}}, "at_epoch must be below 1 (trainer.max_epochs 2) to leave an epoch to fine-tune, got 1"),
        ({"class_path": "hyper.training.compression.LowRankFactorization", "init_args": {"rank": 0}}, "rank must be an integer >= 1, got 0"),
        ({"class_path": "hyper.training.compression.CompressInto", "init_args": {"network": PLAIN, "at_epoch": 0, "fit_steps": 5}}, "network must be a generated network"),
        ({"class_path": "hyper.training.compression.CompressInto", "init_args": {"network": HYPER, "distill": True}}, "distill needs a trained network"),
        ({"class_path": "hyper.training.compression.ChannelDropping", "init_args": {"threshold": 1.0}}, "threshold must be in [0, 1)"),
    ],
)
def test_bad_arguments_are_one_line(tmp_path, capsys, callback, says):
    code, _, _ = run_with(tmp_path, callback)
    assert code == 2
    assert says in capsys.readouterr().err
