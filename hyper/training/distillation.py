"""Student–teacher distillation (Hinton, Vinyals & Dean 2015): soft targets at a temperature,
mixed with the true labels, so that "a big net teaches the hypernetwork" is one line of config.

    loss = w · T² · KL(softmax(t / T) ‖ softmax(s / T)) + (1 − w) · CE(s, y)

The T² keeps the soft term's gradients on the scale of the hard term's as T changes. Both
students use it: an image classifier on each image's logits, a character model on every
character's, its ``Teacher`` reading the same batches in stream order.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from hyper.training.checkpoints import load_checkpoint, network_from_checkpoint
from hyper.training.sampling import DATA_STATE_KEY, data_from_checkpoint

State = tuple[Tensor, ...]


class Teacher:
    """A trained network, frozen: the function whose soft targets a student learns.

    It is called as the student's network is: images (B, C, H, W) → logits (B, classes), or tokens
    (B, T) → logits (B, T, V) for a recurrent network, one that returns ``(logits, state)``. A
    recurrent teacher, like its student, carries its state from one batch to the next (each batch
    continues the one it read last), so its soft targets are those of a model that has read the
    streams from their start; ``reset`` starts it over.

    Not an ``nn.Module``, so that a LightningModule holding one as an attribute does not register
    it: the teacher is never optimised, counted or saved with the student.

    Args:
        checkpoint: a checkpoint written by train.py whose network reads the student's inputs
            and predicts the same classes (characters); read when fit starts (``load``).
        network: or the teacher network itself, already in memory (trained earlier in the same
            run, as a compression route's teacher).
    """

    def __init__(self, checkpoint: str | Path | None = None, *, network: nn.Module | None = None) -> None:
        if (checkpoint is None) == (network is None):
            raise ValueError("a teacher is a checkpoint or a network, exactly one of the two")
        self.checkpoint = None if checkpoint is None else Path(checkpoint)
        self.network = None if network is None else network.eval().requires_grad_(False)
        self.state: State | None = None  # a recurrent teacher's, after the batch it read last
        self._ahead: tuple[Tensor, Tensor] | None = None  # (inputs, logits) of a call made before the step

    def load(self, *, vocab: list[str] | None = None) -> None:
        """Read the checkpoint (weights_only) and rebuild its network, once.

        Args:
            vocab: the student's characters (id → character): a character model's checkpoint
                trained on another vocabulary is refused. None: not checked.
        """
        if self.network is not None:
            return
        source = f"--model.teacher {self.checkpoint}"
        saved = load_checkpoint(self.checkpoint, flag="--model.teacher")
        if vocab is not None and DATA_STATE_KEY in saved:
            _check_vocabulary(data_from_checkpoint(saved, source=source).vocab, vocab, source)
        self.network = network_from_checkpoint(saved, source=source).eval().requires_grad_(False)

    def reset(self) -> None:
        """Start over at the streams' beginning (a new epoch): a recurrent teacher forgets its state."""
        self.state = None

    def to(self, device: torch.device) -> Teacher:
        self.load()
        self.network.to(device)
        return self

    @torch.no_grad()
    def __call__(self, inputs: Tensor) -> Tensor:
        """Logits of ``inputs``: (B, C, H, W) -> (B, classes), or (B, T) -> (B, T, V) continuing the state."""
        ahead, self._ahead = self._ahead, None
        if ahead is not None and ahead[0] is inputs:  # run already for these very inputs (``ahead``)
            return ahead[1]
        self.load()
        output = self.network(inputs) if self.state is None else self.network(inputs, self.state)
        if isinstance(output, tuple):  # a recurrent network: (logits, state)
            output, self.state = output
        return output


    def ahead(self, inputs: Tensor) -> Tensor:
        """The logits of ``inputs`` now, kept for the step's own call on the same tensor: a
        callback that needs the teacher before the step (feature matching reads its block
        outputs) runs it once, not twice. Any other call in between drops them."""
        logits = self(inputs)
        self._ahead = (inputs, logits)
        return logits


def distillation_loss(
    student: Tensor, teacher: Tensor, labels: Tensor, *, temperature: float, weight: float, label_smoothing: float = 0.0
) -> Tensor:
    """Soft-target KL (scaled by T²) mixed with cross-entropy; logits (B, C), labels (B,)."""
    soft = F.kl_div(
        F.log_softmax(student / temperature, dim=-1),
        F.log_softmax(teacher / temperature, dim=-1),
        log_target=True,
        reduction="batchmean",
    )
    hard = F.cross_entropy(student, labels, label_smoothing=label_smoothing)
    return weight * temperature**2 * soft + (1.0 - weight) * hard


def check_distillation(temperature: float, weight: float) -> None:
    if not temperature > 0:
        raise ValueError(f"distill_temperature must be positive, got {temperature}")
    if not 0.0 <= weight <= 1.0:
        raise ValueError(f"distill_weight must be in [0, 1], got {weight}")


def _check_vocabulary(teacher: list[str], student: list[str], source: str) -> None:
    if teacher != student:
        raise ValueError(
            f"{source} was trained on another vocabulary ({len(teacher)} characters, this data has "
            f"{len(student)}): distil on the corpus the teacher was trained on"
        )
