"""Continual learning with a hypernetwork (von Oswald, Henning, Sacramento & Grewe, ICLR 2020).

Tasks t = 0, 1, ... arrive one after another, each with its data only. The hypernetwork h (a
``Hyper(num_tasks=T)`` source) generates the target's weights for task t from its task embedding:
Θ_t = h(e_t, θ_h). Before task t is learned, the generated weights of every earlier task are
recorded, with the hypernetwork as it is then (θ_h*): Θ*_s = h(e_s, θ_h*), s < t. While task t is
learned, an output regulariser keeps them:

    L = L_task(Θ_t) + β / t · Σ_{s<t} ‖h(e_s, θ_h) − Θ*_s‖²

with Θ the generated weights as one flat vector: the hypernetwork's output is held, not the
target's predictions, so no data of earlier tasks is kept, only one weight vector per task.

Where the code departs from the paper: no look-ahead (the paper's optional Δθ_h in the
regulariser); the embeddings of earlier tasks are fixed once learned (they enter the regulariser
detached, so only θ_h moves to keep their weights); the optimiser's state (Adam's moments) starts afresh
with each task, so that no momentum of one task moves what the next does not train.

The same module trains the baselines: a plain network fine-tuned task after task (one network,
the task selecting its classes among the outputs), and ``OnePerTask`` (a network per task).
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import lightning as L
import torch
import torch.nn.functional as F
from lightning.pytorch.callbacks import Callback
from torch import Tensor, nn
from torchmetrics.classification import MulticlassAccuracy

from hyper import GeneratedNetwork
from hyper.checks import check_int
from hyper.training.classification import _check_output_shape
from hyper.training.hparams import save_hyperparameters
from hyper.training.report import log_parameter_counts

OptimizerCallable = Callable[[Iterable], torch.optim.Optimizer]
STAGES = ("val", "test")


def task_count(network: nn.Module) -> int | None:
    """How many tasks ``network`` tells apart by ``task=``: its source's ``num_tasks``
    (``Hyper(num_tasks=T)``) or its own (``OnePerTask``); None for one network for every task."""
    if isinstance(network, GeneratedNetwork):
        return getattr(network.source, "num_tasks", None)
    return getattr(network, "num_tasks", None)


def flat_weights(weights: dict[str, Tensor]) -> Tensor:
    """The generated weights of B weight sets, ``{name: (B, *shape)}``, as one (B, P) matrix
    (in the source's order; a tensor tied under several names once)."""
    unique = {id(w): w for w in weights.values()}.values()
    return torch.cat([w.flatten(1) for w in unique], dim=1)


def generated_for_tasks(network: GeneratedNetwork, tasks: int) -> Tensor:
    """h(e_s, θ_h) for s < ``tasks``, (tasks, P), with the task embeddings detached (fixed)."""
    embeddings = network.source.task_embeddings[:tasks].detach()  # (tasks, c)
    return flat_weights(network.generated_weights(condition=embeddings))


@torch.no_grad()
def record_targets(network: GeneratedNetwork, tasks: int) -> Tensor:
    """Θ*_s for s < ``tasks``, (tasks, P): a snapshot, detached and copied, of what the
    hypernetwork generates now."""
    return generated_for_tasks(network, tasks).clone()


def output_regularizer(network: GeneratedNetwork, targets: Tensor) -> Tensor:
    """1/t · Σ_{s<t} ‖h(e_s, θ_h) − Θ*_s‖², t = len(targets)."""
    return (generated_for_tasks(network, len(targets)) - targets).square().sum(dim=1).mean()


def forgetting(matrix: Sequence[Sequence[float]]) -> float:
    """Average forgetting: ``matrix[l][s]`` is the accuracy on task s after learning tasks 0..l;
    the mean over tasks s before the last learned of (best accuracy on s since it was learned −
    its accuracy now). 0 with one task learned."""
    last = len(matrix) - 1
    drops = [max(row[s] for row in matrix[s:]) - matrix[last][s] for s in range(last)]
    return sum(drops) / len(drops) if drops else 0.0


class OnePerTask(nn.Module):
    """``num_tasks`` independent copies of ``network``, each initialised afresh: task t runs copy t.
    The baseline that cannot forget, at ``num_tasks`` times the parameters.

    Args:
        network: the network of one task.
        num_tasks: T, the number of copies.
    """

    def __init__(self, *, network: nn.Module, num_tasks: int) -> None:
        super().__init__()
        check_int("num_tasks", num_tasks)
        copies = [_reinitialised(copy.deepcopy(network)) for _ in range(num_tasks - 1)]
        self.networks = nn.ModuleList([network, *copies])
        self.num_tasks = num_tasks

    def forward(self, images: Tensor, *, task: int) -> Tensor:
        return self.networks[task](images)


class ContinualClassifier(L.LightningModule):
    """Learn a sequence of classification tasks, one after another, with the output regulariser.

    Batches are ``(images, labels, tasks)`` (``hyper.data.SplitDigitsDataModule``); a training
    batch holds one task's examples, and a batch of a new task starts that task (tasks arrive in
    increasing order). The network's outputs are every task's classes side by side; task t uses
    its own ``classes_per_task`` of them (task-incremental: the task id is given).

    Logged: ``val_acc_task{s}`` / ``test_acc_task{s}`` per task, ``val_acc`` / ``test_acc`` their
    mean over all tasks (not yet learned ones included), ``val_forgetting`` (``forgetting`` of the
    validations at the end of each task), ``train_output_reg`` (the regulariser before β).

    Args:
        network: images (B, C, H, W) to logits (B, num_classes): ``hyper.wrap(target,
            Hyper(num_tasks=T))`` (called with ``task=t``), ``OnePerTask``, or any plain network
            (fine-tuned: one network for every task).
        optimizer: optimiser over all parameters (constant learning rate; its state starts afresh
            with each task).
        beta: β, the output regulariser's weight (0: none); needs a hypernetwork with task
            embeddings, and every trainable weight of its target generated.
    """

    checkpoint_monitor = ("val_acc", "max")

    def __init__(
        self, *, network: nn.Module, optimizer: OptimizerCallable = torch.optim.Adam, beta: float = 0.01
    ) -> None:
        super().__init__()
        _check_beta(network, beta)
        save_hyperparameters(self)
        self.network = network
        self.make_optimizer = optimizer
        self.beta = beta
        self.task = -1  # the task being learned; -1 before the first
        self.targets: Tensor | None = None  # (task, P): Θ*_s of the earlier tasks
        self.history: list[list[float]] = []  # validation accuracy of every task, at the end of each task
        self.classes_per_task = 0  # from the data, in setup

    def forward(self, images: Tensor, task: int) -> Tensor:  # (B, C, H, W) -> (B, classes_per_task)
        logits = self.network(images, task=task) if task_count(self.network) else self.network(images)
        k = self.classes_per_task
        return logits[:, task * k : (task + 1) * k]

    def check_data(self, datamodule: L.LightningDataModule) -> None:
        """Raise ValueError unless ``datamodule`` serves tasks this network can learn."""
        missing = [n for n in ("num_tasks", "classes_per_task", "num_classes") if not hasattr(datamodule, n)]
        if missing:
            raise ValueError(
                f"ContinualClassifier needs data split into tasks (num_tasks, classes_per_task: "
                f"e.g. hyper.data.SplitDigitsDataModule), got {type(datamodule).__name__}"
            )
        tasks = task_count(self.network)
        if tasks is not None and tasks != datamodule.num_tasks:
            raise ValueError(
                f"the network has {tasks} tasks but {type(datamodule).__name__} serves {datamodule.num_tasks}: "
                f"set num_tasks to {datamodule.num_tasks}"
            )
        _check_output_shape(_OnTask(self.network, 0) if tasks else self.network, datamodule)

    def setup(self, stage: str) -> None:
        if self.trainer.datamodule is None:
            raise ValueError("ContinualClassifier needs a datamodule split into tasks")
        if hasattr(self, "metrics"):  # setup runs again for a test after fit
            return
        data = self.trainer.datamodule
        self.check_data(data)
        self.classes_per_task = data.classes_per_task
        self.metrics = nn.ModuleDict({
            stage: nn.ModuleList(
                [MulticlassAccuracy(num_classes=data.classes_per_task, average="micro") for _ in range(data.num_tasks)]
            )
            for stage in STAGES
        })

    def on_fit_start(self) -> None:
        log_parameter_counts(self)

    # training ----------------------------------------------------------------------------------

    def on_train_batch_start(self, batch: tuple[Tensor, Tensor, Tensor], batch_idx: int) -> None:
        task = _one_task(batch[2])
        if task != self.task:
            self.start_task(task)

    def start_task(self, task: int) -> None:
        """Record Θ*_s of the tasks before ``task`` (when regularised) and reset the optimiser."""
        if task < self.task:
            raise ValueError(f"tasks must arrive in increasing order: task {task} after task {self.task}")
        self.targets = record_targets(self.network, task) if self.beta and task > 0 else None
        for optimizer in self.trainer.optimizers if self._trainer is not None else ():
            optimizer.state.clear()  # Adam's moments of the last task would go on moving the weights
        self.task = task

    def training_step(self, batch: tuple[Tensor, Tensor, Tensor], batch_idx: int) -> Tensor:
        images, labels, _ = batch
        loss = F.cross_entropy(self(images, self.task), labels - self.task * self.classes_per_task)
        # Only on the steps the loggers write: each self.log costs about as much as a tiny step.
        logging = (batch_idx + 1) % self.trainer.log_every_n_steps == 0
        if logging:
            self.log("train_loss", loss, prog_bar=True)
        if self.targets is not None:
            regularizer = output_regularizer(self.network, self.targets)
            if logging:
                self.log("train_output_reg", regularizer)
            loss = loss + self.beta * regularizer
        return loss

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return self.make_optimizer(self.parameters())

    # evaluation --------------------------------------------------------------------------------

    def validation_step(self, batch: tuple[Tensor, Tensor, Tensor], batch_idx: int, dataloader_idx: int = 0) -> None:
        self._update(batch, "val")

    def test_step(self, batch: tuple[Tensor, Tensor, Tensor], batch_idx: int, dataloader_idx: int = 0) -> None:
        self._update(batch, "test")

    def predict_step(self, batch: tuple[Tensor, Tensor, Tensor], batch_idx: int, dataloader_idx: int = 0) -> Tensor:
        return self(batch[0], _one_task(batch[2])).softmax(dim=-1)  # (B, classes_per_task)

    def _update(self, batch: tuple[Tensor, Tensor, Tensor], stage: str) -> None:
        images, labels, tasks = batch
        task = _one_task(tasks)
        self.metrics[stage][task].update(self(images, task), labels - task * self.classes_per_task)

    def on_validation_epoch_end(self) -> None:
        accuracies = self._log_accuracies("val")
        if self.trainer.sanity_checking or self.task < 0:
            return
        self.history[self.task :] = [accuracies]  # the last validation of each task is its row
        self.log("val_forgetting", forgetting(self.history))

    def on_test_epoch_end(self) -> None:
        self._log_accuracies("test")

    def _log_accuracies(self, stage: str) -> list[float]:
        accuracies = []
        for task, metric in enumerate(self.metrics[stage]):
            accuracies.append(metric.compute().item() if metric.update_count else float("nan"))
            metric.reset()
            self.log(f"{stage}_acc_task{task}", accuracies[-1])
        self.log(f"{stage}_acc", sum(accuracies) / len(accuracies), prog_bar=True)
        return accuracies

    @torch.no_grad()
    def task_accuracies(self, split: str) -> list[float]:
        """Accuracy on every task's ``split`` of the trainer's data, now (outside the trainer's loops)."""
        data = self.trainer.datamodule
        was_training = self.training
        self.eval()
        try:
            return [self._accuracy(loader, t) for t, loader in enumerate(data.task_loaders(split))]
        finally:
            self.train(was_training)

    def _accuracy(self, loader: Iterable, task: int) -> float:
        correct = total = 0
        for images, labels in loader:
            images = self.trainer.datamodule.preprocess(images.to(self.device), train=False)
            predicted = self(images, task).argmax(dim=1) + task * self.classes_per_task
            correct += int((predicted == labels.to(self.device)).sum())
            total += len(labels)
        return correct / total

    # checkpoints -------------------------------------------------------------------------------

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["continual"] = {"task": self.task, "targets": self.targets, "history": self.history}

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        state = checkpoint.get("continual", {})
        self.task = state.get("task", -1)
        self.targets = state.get("targets")
        self.history = [list(row) for row in state.get("history", [])]


class AccuracyMatrix(Callback):
    """At the end of each task (training epoch), the accuracy on every task's ``split``:
    ``matrix[l][s]`` after learning tasks 0..l (``forgetting(matrix)``, ``matrix[-1]`` the final).

    Args:
        split: the data's split to measure on (``test`` or ``val``).
    """

    def __init__(self, *, split: str = "test") -> None:
        self.split = split
        self.matrix: list[list[float]] = []

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: ContinualClassifier) -> None:
        self.matrix[pl_module.task :] = [pl_module.task_accuracies(self.split)]

    def state_dict(self) -> dict[str, Any]:
        return {"matrix": self.matrix}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.matrix = [list(row) for row in state_dict.get("matrix", [])]


class _OnTask(nn.Module):
    """``network`` with ``task=`` given: called as an ordinary network by the image checks."""

    def __init__(self, network: nn.Module, task: int) -> None:
        super().__init__()
        self.network, self.task = network, task

    def forward(self, images: Tensor) -> Tensor:
        return self.network(images, task=self.task)


def _one_task(tasks: Tensor) -> int:
    """The task of a batch, which must hold one task's examples."""
    task = int(tasks[0])
    if bool((tasks != task).any()):
        raise ValueError(f"a batch must hold one task's examples, got tasks {sorted(set(tasks.tolist()))}")
    return task


def _reinitialised(network: nn.Module) -> nn.Module:
    for module in network.modules():
        if hasattr(module, "reset_parameters"):
            module.reset_parameters()
    return network


def _check_beta(network: nn.Module, beta: float) -> None:
    if not beta >= 0:
        raise ValueError(f"beta must be a non-negative number, got {beta}")
    if not beta:
        return
    if not (isinstance(network, GeneratedNetwork) and getattr(network.source, "num_tasks", None)):
        raise ValueError(
            f"beta regularises a hypernetwork's weights of earlier tasks, but this {type(network).__name__} "
            "generates none per task: wrap it with Hyper(num_tasks=...) or set beta to 0"
        )
    direct = [name for name, p in network.target.named_parameters() if p.requires_grad]
    if direct:
        raise ValueError(
            f"beta keeps the generated weights of earlier tasks, but the target's direct parameters "
            f"({', '.join(direct[:3])}{', ...' if len(direct) > 3 else ''}) are shared by every task and would "
            "drift: build the target without them (bias=False, no norms) or set beta to 0"
        )
