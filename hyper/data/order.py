"""Batches in an order that a resumed run reproduces exactly.

- The order of training examples is a function of (seed, epoch) alone. torch's ``RandomSampler``
  and ``DataLoader`` draw from torch's global generator when an epoch starts, and the state of
  that generator depends on everything that ran before (in a resumed run: something else); here
  every loader owns its generator.
- A loader remembers how many batches of the current epoch it has served. Lightning keeps that
  (``state_dict``) in every checkpoint and gives it back (``load_state_dict``) when a run resumes
  from a checkpoint written mid-epoch, and the loader then skips those batches.
"""

from __future__ import annotations

from collections.abc import Iterator, Sized
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset, RandomSampler, Sampler

SEED_MODULUS = 2**63  # torch.Generator.manual_seed takes seeds below 2**64


class EpochShuffle(RandomSampler):
    """A fresh random order every epoch, drawn from ``seed`` and the epoch number only.

    Lightning calls ``set_epoch`` at the start of every training epoch (as it does for
    ``DistributedSampler``). Under DDP, Lightning replaces this sampler, a ``RandomSampler``, by
    a ``DistributedSampler``, whose order is also a function of seed and epoch.

    Args:
        data_source: the dataset (only its length is used).
        seed: the run's seed.
    """

    def __init__(self, data_source: Sized, *, seed: int) -> None:
        super().__init__(data_source)
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self) -> Iterator[int]:
        generator = torch.Generator().manual_seed((self.seed * 1_000_003 + self.epoch) % SEED_MODULUS)
        yield from torch.randperm(len(self.data_source), generator=generator).tolist()


class ResumableLoader(DataLoader):
    """A DataLoader that counts the batches it served this epoch and can skip them when resumed."""

    _served = 0  # class defaults: Lightning may re-create the loader from its constructor arguments
    _skip = 0

    def __iter__(self) -> Iterator[Any]:
        skip, self._skip, self._served = self._skip, 0, 0
        for index, batch in enumerate(super().__iter__()):
            if index >= skip:  # skipped batches are still drawn: the rest of the epoch is unchanged
                self._served = index + 1
                yield batch

    def state_dict(self) -> dict[str, int]:
        return {"served": self._served}

    def load_state_dict(self, state_dict: dict[str, int]) -> None:
        served = int(state_dict.get("served", 0))
        self._skip = served if served < len(self) else 0  # a finished epoch: the next starts afresh


def run_seed() -> int:
    """The seed the run was started with (``seed_everything``'s), for the loaders' own generators."""
    return torch.initial_seed() % SEED_MODULUS


def resumable_loader(
    dataset: Dataset, *, shuffle: bool, seed: int, sampler: Sampler | None = None, **kwargs: Any
) -> ResumableLoader:
    """A ``ResumableLoader`` that never draws from torch's global generator.

    Its own generator also gives worker processes their seeds (DataLoader draws one per epoch).
    ``sampler`` replaces the order of an unshuffled loader (a data module that shards by itself).
    """
    if shuffle:
        sampler = EpochShuffle(dataset, seed=seed)
    generator = torch.Generator().manual_seed(seed)
    return ResumableLoader(dataset, sampler=sampler, generator=generator, **kwargs)
