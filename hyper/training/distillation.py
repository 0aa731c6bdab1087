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


def load_teacher(checkpoint: str | Path) -> nn.Module:
    """The frozen network of a trained ``ImageClassifier`` checkpoint, in eval mode."""
    from hyper.training.classification import ImageClassifier  # the module that saved it

    path = Path(checkpoint)
    if not path.is_file():
        raise FileNotFoundError(f"teacher checkpoint not found: {path}")
    network = ImageClassifier.load_from_checkpoint(path, map_location="cpu").network
    network.eval().requires_grad_(False)
    return network


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


@torch.no_grad()
def teacher_logits(teacher: nn.Module, images: Tensor) -> Tensor:
    return teacher(images)
