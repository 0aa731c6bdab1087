"""Random generators in checkpoints, so that a resumed run continues as the uninterrupted run would.

Lightning restores the weights, optimiser, schedulers and loop counters; the state of torch's,
NumPy's and Python's global generators (data augmentation, dropout) it does not. This callback
keeps them in every checkpoint and sets them back when a run resumes. With the data modules'
loaders (``hyper.data.order``), whose order never depends on the global generators, a run
resumed on the CPU with ``--trainer.deterministic true`` ends with the same metrics as one that
never stopped.
"""

from __future__ import annotations

import random
from typing import Any

import numpy as np
import torch
from lightning.pytorch.callbacks import Callback


class RandomState(Callback):
    """Save the global random generators' states in checkpoints; restore them on resume."""

    def state_dict(self) -> dict[str, Any]:
        kind, keys, position, has_gauss, cached = np.random.get_state()
        return {
            "torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
            # plain values only: checkpoints are read with weights_only=True
            "numpy": [kind, torch.from_numpy(keys.astype(np.int64)), position, has_gauss, cached],
            "python": random.getstate(),
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        torch.set_rng_state(state_dict["torch"])
        if state_dict["cuda"] and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state_dict["cuda"])
        kind, keys, position, has_gauss, cached = state_dict["numpy"]
        np.random.set_state((kind, keys.numpy().astype(np.uint32), position, has_gauss, cached))
        version, internal, gauss = state_dict["python"]
        random.setstate((version, tuple(internal), gauss))
