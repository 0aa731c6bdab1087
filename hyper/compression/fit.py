"""Compressing a trained network into a weight source: fit the source's parameters (a
hypernetwork's embeddings and generator, low-rank factors, DCT coefficients...) so that the
weights it generates reproduce the trained kernels (weight-space regression), and take the
layers it does not generate (stem, norms, classifier) from the trained network as they are.

The regression minimises the relative reconstruction error Σ‖Ŵ − W‖² / Σ‖W‖² over the
generated layers with Adam; a short fine-tune on the task (optionally with the trained network
as teacher) follows in ``hyper.training.compression``.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from hyper.materialize import materialize
from hyper.network import GeneratedNetwork


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


def reconstruction_error(student: GeneratedNetwork, kernels: dict[str, Tensor]) -> Tensor:
    """Σ‖Ŵ − W‖² / Σ‖W‖² over the generated layers (a tied weight against each layer it serves)."""
    generated = student.generated_weights()
    error = sum((generated[name] - kernel).square().sum() for name, kernel in kernels.items())
    return error / sum(kernel.square().sum() for kernel in kernels.values())


def fit_source(student: GeneratedNetwork, kernels: dict[str, Tensor], *, steps: int, lr: float = 0.01) -> list[float]:
    """Regress the student's weight source onto ``kernels`` for ``steps`` Adam steps; the
    relative reconstruction error before and after every step (``steps + 1`` values)."""
    optimizer = torch.optim.Adam(student.source.parameters(), lr=lr)
    errors = []
    for _ in range(steps):
        loss = reconstruction_error(student, kernels)
        errors.append(loss.item())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    with torch.no_grad():
        errors.append(reconstruction_error(student, kernels).item())
    return errors


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


def compress_into(student: GeneratedNetwork, trained: nn.Module, *, steps: int, lr: float = 0.01) -> list[float]:
    """Make ``student`` reproduce ``trained``: shared layers copied, the source fitted to the
    trained kernels. Returns the reconstruction errors of the fit."""
    kernels = trained_kernels(trained, student)
    copy_shared_state(student, trained)
    return fit_source(student, kernels, steps=steps, lr=lr)
