"""Split digits: the 10 digits as a sequence of tasks of 2 classes (0/1, 2/3, 4/5, 6/7, 8/9),
served one after another (task-incremental continual learning, ``hyper/training/continual.py``).

Training epoch t of the trainer is task t: ``steps_per_task`` batches of task t's training images
only, so ``trainer.max_epochs`` is the number of tasks learned (5 for the whole sequence).
Validation and test have one loader per task, so every evaluation measures every task.
Batches reach the model as ``(images (B, 1, 8, 8) float32, labels (B,) the digits, tasks (B,))``
with task = label // classes_per_task: the task id is given (task-incremental), the model picks
that task's classes among its outputs.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch import Tensor
from torch.utils.data import DataLoader, Sampler

from hyper.checks import check_int
from hyper.data.digits import DigitsDataModule
from hyper.data.images import TensorPairs
from hyper.data.order import SEED_MODULUS


class OneTaskPerEpoch(Sampler[int]):
    """In epoch t, ``examples`` indices of task t's examples: passes over them, each in a fresh
    random order drawn from (seed, epoch) alone, the last pass cut short.

    Lightning calls ``set_epoch`` at the start of every training epoch. The length is the same
    every epoch (tasks differ in size by a few images), so one loader serves every task.

    Args:
        tasks: (N,) the task of every example.
        examples: indices per epoch (steps per task × batch size).
        seed: the run's seed.
    """

    def __init__(self, tasks: Tensor, *, examples: int, seed: int) -> None:
        self.tasks, self.examples, self.seed = tasks, examples, seed
        self.num_tasks = int(tasks.max()) + 1
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.examples

    def __iter__(self) -> Iterator[int]:
        if self.epoch >= self.num_tasks:
            raise ValueError(
                f"epoch {self.epoch}: there are {self.num_tasks} tasks, one per training epoch; "
                f"set trainer.max_epochs to at most {self.num_tasks}"
            )
        members = (self.tasks == self.epoch).nonzero().squeeze(1)  # (N_t,)
        generator = torch.Generator().manual_seed((self.seed * 1_000_003 + self.epoch) % SEED_MODULUS)
        passes = -(-self.examples // len(members))
        order = torch.cat([members[torch.randperm(len(members), generator=generator)] for _ in range(passes)])
        yield from order[: self.examples].tolist()


class SplitDigitsDataModule(DigitsDataModule):
    """The digits as ``10 // classes_per_task`` tasks of consecutive classes, one per training epoch.

    Args:
        batch_size: images per batch.
        steps_per_task: training batches of each task (its one epoch).
        classes_per_task: classes of each task (2: 0/1, 2/3, ...); must divide 10.
        val_fraction: share of all images held out for validation (stratified).
        test_fraction: share of all images held out for testing (fixed; 0.3 leaves ~108 test
            images per task, so that one mistake moves a task's accuracy by under a point).
        seed: seed of the train/validation split.
        num_workers: DataLoader worker processes.
        augment: random shifts of up to one pixel on training batches.
    """

    def __init__(
        self,
        *,
        batch_size: int = 32,
        steps_per_task: int = 300,
        classes_per_task: int = 2,
        val_fraction: float = 0.1,
        test_fraction: float = 0.3,
        seed: int = 0,
        num_workers: int = 0,
        augment: bool = False,
    ) -> None:
        super().__init__(
            batch_size=batch_size,
            val_fraction=val_fraction,
            test_fraction=test_fraction,
            seed=seed,
            num_workers=num_workers,
            augment=augment,
        )
        check_int("steps_per_task", steps_per_task)
        check_int("classes_per_task", classes_per_task, minimum=2)
        if self.num_classes % classes_per_task:
            raise ValueError(f"classes_per_task must divide the {self.num_classes} digits, got {classes_per_task}")
        self.steps_per_task = steps_per_task
        self.classes_per_task = classes_per_task
        self.num_tasks = self.num_classes // classes_per_task

    def task_of(self, labels: Tensor) -> Tensor:
        """The task of each label: (B,) -> (B,)."""
        return labels // self.classes_per_task

    def task_split(self, split: str, task: int) -> TensorPairs:
        """The images and labels of one task in ``split`` (``train``, ``val``, ``test``)."""
        pairs = self.splits[split]
        keep = self.task_of(pairs.labels) == task
        return TensorPairs(pairs.images[keep], pairs.labels[keep])

    def setup(self, stage: str | None = None) -> None:
        super().setup(stage)
        if stage == "fit" and self.trainer is not None:
            epochs = self.trainer.max_epochs
            if epochs is None or not 0 < epochs <= self.num_tasks:
                raise ValueError(
                    f"trainer.max_epochs is the number of tasks learned ({type(self).__name__} serves task t "
                    f"in epoch t): set it to at most {self.num_tasks}, got {epochs}"
                )

    def train_dataloader(self) -> DataLoader:
        pairs = self.splits["train"]
        order = OneTaskPerEpoch(
            self.task_of(pairs.labels), examples=self.steps_per_task * self.batch_size, seed=self.shuffle_seed
        )
        return self.loader_of(pairs, shuffle=False, sampler=order)

    def val_dataloader(self) -> list[DataLoader]:
        return self.task_loaders("val")

    def test_dataloader(self) -> list[DataLoader]:
        return self.task_loaders("test")

    def predict_dataloader(self) -> list[DataLoader]:
        return self.task_loaders("test")

    def task_loaders(self, split: str) -> list[DataLoader]:
        """One loader per task, in task order (dataloader_idx = task)."""
        if split not in self.splits:
            raise RuntimeError(f"the {split} split is not loaded; call setup() first")
        return [self.loader_of(self.task_split(split, t), shuffle=False) for t in range(self.num_tasks)]

    def on_after_batch_transfer(
        self, batch: tuple[Tensor, Tensor], dataloader_idx: int
    ) -> tuple[Tensor, Tensor, Tensor]:
        images, labels = super().on_after_batch_transfer(batch, dataloader_idx)
        return images, labels, self.task_of(labels)
