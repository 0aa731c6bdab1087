"""Student–teacher distillation (Hinton, Vinyals & Dean 2015): soft targets at a temperature,
mixed with the true labels, so that "a big net teaches the hypernetwork" is one line of config.

    loss = w · T² · KL(softmax(t / T) ‖ softmax(s / T)) + (1 − w) · CE(s, y)

The T² keeps the soft term's gradients on the scale of the hard term's as T changes.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from hyper.training.checkpoints import load_checkpoint, network_from_checkpoint


class Teacher:
    """A trained classifier's network, frozen: a function of the images, loaded when fit starts.

    Not an ``nn.Module``, so that a LightningModule holding one as an attribute does not register
    it: the teacher is never optimised, counted or saved with the student.

    Args:
        checkpoint: a checkpoint written by train.py whose network maps the student's images to
            the same classes.
        network: or the teacher network itself, already in memory (trained earlier in the same
            run, as a compression route's teacher).
    """

    def __init__(self, checkpoint: str | Path | None = None, *, network: nn.Module | None = None) -> None:
        if (checkpoint is None) == (network is None):
            raise ValueError("a teacher is a checkpoint or a network, exactly one of the two")
        self.checkpoint = None if checkpoint is None else Path(checkpoint)
        self.network = None if network is None else network.eval().requires_grad_(False)

    def load(self) -> None:
        """Read the checkpoint (weights_only) and rebuild its network, once."""
        if self.network is None:
            source = f"--model.teacher {self.checkpoint}"
            saved = load_checkpoint(self.checkpoint, flag="--model.teacher")
            self.network = network_from_checkpoint(saved, source=source).eval().requires_grad_(False)

    def to(self, device: torch.device) -> Teacher:
        self.load()
        self.network.to(device)
        return self

    @torch.no_grad()
    def __call__(self, images: Tensor) -> Tensor:  # (B, C, H, W) -> (B, num_classes)
        self.load()
        return self.network(images)


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
