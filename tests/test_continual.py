"""Continual learning with a hypernetwork: the split, the recorded targets, the regulariser's effect,
the preset, and the committed comparison against docs/conditional.md."""

from __future__ import annotations

import json
import re
import statistics
import warnings
from pathlib import Path

import lightning as L
import pytest
import torch
import torch.nn.functional as F

from hyper import Hyper, wrap
from hyper.data import SplitDigitsDataModule
from hyper.data.split_digits import OneTaskPerEpoch
from hyper.training import ContinualClassifier, OnePerTask
from hyper.training.cli import main
from hyper.training.continual import forgetting, generated_for_tasks, output_regularizer
from models.mlp import MLP

from doc_text import RESULTS, doc, section

pytestmark = pytest.mark.usefixtures("one_thread")
PRESET = Path(__file__).resolve().parents[1] / "configs" / "continual_digits.yaml"


def hyper_mlp(num_tasks: int = 5, seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a tiny target need not compress
        return wrap(MLP(hidden=[32]), Hyper(embedding_dim=8, hidden_dim=8, num_tasks=num_tasks), pad=True)


@pytest.fixture(scope="module")
def digits() -> SplitDigitsDataModule:
    data = SplitDigitsDataModule()
    data.setup("test")
    return data


# the split -----------------------------------------------------------------------------------


def test_five_tasks_of_two_consecutive_digits_cover_every_split_without_overlap(digits: SplitDigitsDataModule) -> None:
    assert digits.num_tasks == 5
    for split, pairs in digits.splits.items():
        labels = [digits.task_split(split, t).labels for t in range(5)]
        for t, task_labels in enumerate(labels):
            assert set(task_labels.tolist()) == {2 * t, 2 * t + 1}, (split, t)
        assert sum(len(x) for x in labels) == len(pairs)  # every image in exactly one task
    images = {split: {tuple(x.flatten().tolist()) for x in pairs.images} for split, pairs in digits.splits.items()}
    assert not images["train"] & images["test"]  # (the digits have a few duplicate images; none across)


def test_epoch_t_serves_task_t_only_and_every_epoch_is_as_long(digits: SplitDigitsDataModule) -> None:
    tasks = digits.task_of(digits.splits["train"].labels)
    order = OneTaskPerEpoch(tasks, examples=1000, seed=3)
    for epoch in range(5):
        order.set_epoch(epoch)
        served = list(order)
        assert len(served) == len(order) == 1000
        assert set(tasks[served].tolist()) == {epoch}
        assert set(served) == set((tasks == epoch).nonzero().squeeze(1).tolist())  # a whole pass at least
    order.set_epoch(5)
    with pytest.raises(ValueError, match="max_epochs to at most 5"):
        list(order)
    loaders = digits.task_loaders("test")
    assert [set((loader.dataset.labels // 2).tolist()) for loader in loaders] == [{t} for t in range(5)]


def test_classes_per_task_must_divide_the_digits() -> None:
    assert SplitDigitsDataModule(classes_per_task=5).num_tasks == 2
    with pytest.raises(ValueError, match="classes_per_task must divide"):
        SplitDigitsDataModule(classes_per_task=3)


# the recorded targets ------------------------------------------------------------------------


def test_targets_recorded_before_a_task_are_detached_snapshots() -> None:
    network = hyper_mlp()
    module = ContinualClassifier(network=network, beta=0.1)
    module.classes_per_task = 2  # what setup reads off the data
    module.start_task(0)
    assert module.targets is None  # nothing to keep before the first task
    with torch.no_grad():  # task 0 "learned": the hypernetwork and e_0 move
        for p in network.parameters():
            p.add_(0.1 * torch.randn_like(p))
    module.start_task(2)
    targets = module.targets
    now = generated_for_tasks(network, 2)
    assert targets.shape == now.shape == (2, now.shape[1]) and torch.equal(targets, now.detach())
    assert not targets.requires_grad and targets.grad_fn is None
    optimizer = torch.optim.SGD(network.parameters(), lr=0.1)
    F.cross_entropy(module.forward(torch.randn(4, 1, 8, 8), 2), torch.tensor([0, 1, 0, 1])).backward()
    optimizer.step()
    assert not torch.equal(generated_for_tasks(network, 2), now)  # the hypernetwork moved on
    assert torch.equal(module.targets, now.detach())  # the snapshot did not
    with pytest.raises(ValueError, match="increasing order"):
        module.start_task(1)


def test_the_regulariser_trains_the_hypernetwork_not_the_earlier_task_embeddings() -> None:
    network = hyper_mlp()
    targets = generated_for_tasks(network, 3).detach() + 0.01
    output_regularizer(network, targets).backward()
    assert network.source.task_embeddings.grad is None
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for n, p in network.named_parameters() if "film" in n)


def test_beta_needs_a_hypernetwork_whose_target_has_no_direct_weights() -> None:
    with pytest.raises(ValueError, match="generates none per task"):
        ContinualClassifier(network=MLP(), beta=0.1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        biased = wrap(MLP(bias=True), Hyper(embedding_dim=8, hidden_dim=8, num_tasks=5), pad=True)
    with pytest.raises(ValueError, match=r"direct parameters \(layers.1.bias"):
        ContinualClassifier(network=biased, beta=0.1)
    ContinualClassifier(network=biased, beta=0.0)  # without the regulariser, allowed


def test_one_network_per_task_runs_the_tasks_copy() -> None:
    torch.manual_seed(0)
    networks = OnePerTask(network=MLP(), num_tasks=3)
    x = torch.randn(2, 1, 8, 8)
    assert torch.equal(networks(x, task=1), networks.networks[1](x))
    assert not torch.equal(networks(x, task=0), networks(x, task=1))  # initialised apart


def test_forgetting_is_the_mean_drop_from_the_best_accuracy_since_learned() -> None:
    matrix = [[1.0, 0.5, 0.5], [0.9, 0.8, 0.5], [0.95, 0.6, 0.9]]
    assert forgetting(matrix) == pytest.approx(((1.0 - 0.95) + (0.8 - 0.6)) / 2)
    assert forgetting(matrix[:1]) == 0.0


# the regulariser holds earlier tasks: measured ---------------------------------------------------


class Task0(L.Callback):
    """After each task: task 0's test loss and generated weights."""

    def __init__(self) -> None:
        self.loss: list[float] = []
        self.weights: list[torch.Tensor] = []

    @torch.no_grad()
    def on_train_epoch_end(self, trainer: L.Trainer, module: ContinualClassifier) -> None:
        pairs = trainer.datamodule.task_split("test", 0)
        images = trainer.datamodule.preprocess(pairs.images, train=False)
        self.loss.append(F.cross_entropy(module(images, 0), pairs.labels).item())
        self.weights.append(generated_for_tasks(module.network, 1)[0].clone())


def two_tasks(beta: float) -> Task0:
    L.seed_everything(0, verbose=False)
    adam = lambda parameters: torch.optim.Adam(parameters, lr=0.01)  # noqa: E731
    module = ContinualClassifier(network=hyper_mlp(num_tasks=2), beta=beta, optimizer=adam)
    data = SplitDigitsDataModule(classes_per_task=5, steps_per_task=40)  # 0-4, then 5-9
    probe = Task0()
    trainer = L.Trainer(
        max_epochs=2, logger=False, enable_checkpointing=False, enable_progress_bar=False,
        enable_model_summary=False, limit_val_batches=0, callbacks=[probe],
    )
    trainer.fit(module, datamodule=data)
    return probe


def test_without_the_regulariser_the_first_task_is_forgotten_more() -> None:
    held, free = two_tasks(beta=0.1), two_tasks(beta=0.0)
    probes = {"held": held, "free": free}
    drift = {name: (probe.weights[1] - probe.weights[0]).norm().item() for name, probe in probes.items()}
    loss_rise = {name: probe.loss[1] - probe.loss[0] for name, probe in probes.items()}
    assert drift["free"] > 3 * drift["held"], drift  # task 0's generated weights: kept only with β > 0
    assert loss_rise["free"] > loss_rise["held"] + 0.1, loss_rise  # and so is what it learned


# the preset ----------------------------------------------------------------------------------


def test_the_preset_runs_a_few_steps_of_every_task(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    threads = torch.get_num_threads()
    args = ["fit", "--config", str(PRESET), "--trainer.default_root_dir", str(tmp_path),
            "--data.steps_per_task", "2", "--trainer.limit_val_batches", "1", "--trainer.enable_progress_bar", "false"]
    try:
        assert main(args) == 0
    finally:
        torch.set_num_threads(threads)
    (report,) = tmp_path.rglob("report.json")
    row = json.loads(report.read_text())
    assert row["status"] == "finished" and row["steps"] == 10 and row["epochs"] == 5
    assert {f"val_acc_task{t}" for t in range(5)} <= set(row) and "val_forgetting" in row
    assert row["trainable_params"] < row["plain_equivalent_params"] / 5  # smaller than one plain MLP


# the committed comparison ----------------------------------------------------------------------


def results() -> list[dict]:
    return [json.loads(line) for line in (RESULTS / "continual_digits.jsonl").read_text().splitlines()]


def cell(values: list[float], digits: int = 1) -> str:
    values = [100 * v for v in values]
    return f"{statistics.mean(values):.{digits}f} ± {statistics.stdev(values):.{digits}f}"


def test_the_committed_rows_are_whole_and_consistent() -> None:
    rows = results()
    methods = {"hyper + regulariser", "hyper, β = 0", "fine-tuning", "one network per task"}
    seeds = {r["seed"] for r in rows}
    assert {r["method"] for r in rows} == methods and len(seeds) >= 3
    assert sorted((r["method"], r["seed"]) for r in rows) == sorted((m, s) for m in methods for s in seeds)
    for r in rows:
        matrix = r["accuracy_matrix"]
        assert len(matrix) == 5 and r["final_acc"] == matrix[-1]
        assert r["forgetting"] == pytest.approx(forgetting(matrix))
        assert r["mean_final_acc"] == pytest.approx(statistics.mean(r["final_acc"]))


def test_the_docs_table_is_the_committed_rows() -> None:
    rows = results()
    lines = [line for line in section("continual", doc("conditional")).splitlines() if line.startswith("| ")][1:]
    assert len(lines) == 4
    for line in lines:
        method, params, *accuracies, mean, forgotten, seeds = [c.strip() for c in line.strip("|").split("|")]
        mine = [r for r in rows if r["method"] == method]
        assert params == f"{mine[0]['trainable_params']:,}" and int(seeds) == len(mine)
        assert accuracies == [cell([r["final_acc"][t] for r in mine]) for t in range(5)]
        assert mean == cell([r["mean_final_acc"] for r in mine])
        assert forgotten == cell([r["forgetting"] for r in mine], digits=2)
    stated = re.search(r"forgetting of ([\d.]+) points", section("continual", doc("conditional")))
    regularised = [r["forgetting"] for r in rows if r["method"] == "hyper + regulariser"]
    assert stated and stated.group(1) == f"{100 * statistics.mean(regularised):.2f}"
