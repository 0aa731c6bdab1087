"""Compressing a trained network into a weight source: fit the source's parameters (a
hypernetwork's embeddings and generator, low-rank factors, DCT coefficients...) so that the
weights it generates reproduce the trained kernels (weight-space regression), and take the
layers it does not generate (stem, norms, classifier) from the trained network as they are.

The regression minimises a relative reconstruction error with Adam, at a constant learning
rate or annealed over its steps (``cosine``):

- ``total``: Σ‖Ŵ − W‖² / Σ‖W‖² over the generated layers (the widest layers dominate);
- ``per_layer``: the mean over layers of ‖Ŵ − W‖² / ‖W‖², every layer counted alike however
  many weights it has (a 16-channel layer is as much of the function as a 64-channel one).

A fine-tune on the task (optionally distilled from the trained network) follows in
``hyper.training.compression``.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor, nn

from hyper.materialize import materialize
from hyper.network import GeneratedNetwork

Error = Literal["total", "per_layer"]
ERRORS = ("total", "per_layer")


def trained_kernels(trained: nn.Module, student: GeneratedNetwork) -> dict[str, Tensor]:
    """The trained network's weights for each layer ``student`` generates, by target name."""
    plain = dict(materialize(trained).named_parameters())
    missing = [layer.name for layer in student.layers if layer.name not in plain]
    if missing:
        raise ValueError(f"the trained network has no weight for the student's generated layers {missing[:3]}")
    wrong = [l.name for l in student.layers if tuple(plain[l.name].shape) != tuple(l.shape)]
    if wrong:
        raise ValueError(f"the trained network's weights differ in shape from the student's: {wrong[:3]}")
    return {layer.name: plain[layer.name].detach() for layer in student.layers}


def reconstruction_error(student: GeneratedNetwork, kernels: dict[str, Tensor], *, error: Error = "total") -> Tensor:
    """The relative error of the generated weights against ``kernels`` (a tied weight against each
    layer it serves): ``total`` Σ‖Ŵ − W‖² / Σ‖W‖², ``per_layer`` mean of ‖Ŵ − W‖² / ‖W‖²."""
    check_error(error)
    generated = student.generated_weights()
    misses = {name: (generated[name] - kernel).square().sum() for name, kernel in kernels.items()}
    norms = {name: kernel.square().sum() for name, kernel in kernels.items()}
    if error == "per_layer":
        return sum(misses[name] / norms[name] for name in kernels) / len(kernels)
    return sum(misses.values()) / sum(norms.values())


def fit_source(
    student: GeneratedNetwork,
    kernels: dict[str, Tensor],
    *,
    steps: int,
    lr: float = 0.01,
    error: Error = "total",
    cosine: bool = False,
) -> list[float]:
    """Regress the student's weight source onto ``kernels`` for ``steps`` Adam steps (the learning
    rate annealed to 0 along a cosine with ``cosine``); the reconstruction error (``error``)
    before and after every step (``steps + 1`` values)."""
    optimizer = torch.optim.Adam(student.source.parameters(), lr=lr)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, max(steps, 1)) if cosine else None
    errors = []
    for _ in range(steps):
        loss = reconstruction_error(student, kernels, error=error)
        errors.append(loss.item())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if schedule is not None:
            schedule.step()
    with torch.no_grad():
        errors.append(reconstruction_error(student, kernels, error=error).item())
    return errors


def check_error(error: str) -> None:
    if error not in ERRORS:
        raise ValueError(f"fit_error must be one of {', '.join(ERRORS)}, got {error!r}")


@torch.no_grad()
def copy_shared_state(student: GeneratedNetwork, trained: nn.Module) -> list[str]:
    """Copy the trained network's parameters and buffers into the student's target wherever a
    name and shape match (the layers the source does not generate); returns the names copied."""
    source = materialize(trained).state_dict()
    copied = []
    for name, tensor in student.target.state_dict().items():
        if name in source and source[name].shape == tensor.shape:
            tensor.copy_(source[name])
            copied.append(name)
    return copied


def compress_into(
    student: GeneratedNetwork,
    trained: nn.Module,
    *,
    steps: int,
    lr: float = 0.01,
    error: Error = "total",
    cosine: bool = False,
) -> list[float]:
    """Make ``student`` reproduce ``trained``: shared layers copied, the source fitted to the
    trained kernels (``fit_source``). Returns the reconstruction errors of the fit."""
    check_error(error)
    kernels = trained_kernels(trained, student)
    copy_shared_state(student, trained)
    return fit_source(student, kernels, steps=steps, lr=lr, error=error, cosine=cosine)
