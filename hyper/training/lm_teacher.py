"""A trained character model as the teacher of another (``CharLanguageModel(teacher=...)``).

The teacher reads the same batches as the student and, like it, carries its own hidden state
from one TBPTT batch to the next (reset when the student's is), so its soft targets for a
batch are those of a model that has read the stream from its start. The loss is
``hyper.training.distillation.distillation_loss`` over every character.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor, nn

from hyper.training.checkpoints import load_checkpoint, network_from_checkpoint
from hyper.training.sampling import DATA_STATE_KEY, data_from_checkpoint

State = tuple[Tensor, ...]


class Teacher:
    """A frozen character model, its state carried across the batches it reads."""

    def __init__(self, network: nn.Module) -> None:
        self.network = network.eval().requires_grad_(False)
        self.hidden: State | None = None

    def reset(self) -> None:
        """Start over at the streams' beginning (a new epoch)."""
        self.hidden = None

    def to(self, device: torch.device) -> Teacher:
        self.network.to(device)
        return self

    @torch.no_grad()
    def logits(self, tokens: Tensor) -> Tensor:
        """Logits (B, T, V) for the batch that continues the last one it read."""
        logits, self.hidden = self.network(tokens, self.hidden)
        return logits


def load_teacher(path: str | Path, *, vocab: list[str] | None) -> Teacher:
    """The network of a ``CharLanguageModel`` checkpoint, checked against the student's
    vocabulary ``vocab`` (id → character; None: not checked)."""
    source = f"--model.teacher {path}"
    checkpoint = load_checkpoint(path, flag="--model.teacher")
    network = network_from_checkpoint(checkpoint, source=source)
    if vocab is not None and DATA_STATE_KEY in checkpoint:
        teacher_vocab = data_from_checkpoint(checkpoint, source=source).vocab
        if teacher_vocab != vocab:
            raise ValueError(
                f"the teacher {path} was trained on another vocabulary ({len(teacher_vocab)} characters, "
                f"this data has {len(vocab)}): distil on the corpus the teacher was trained on"
            )
    return Teacher(network)
