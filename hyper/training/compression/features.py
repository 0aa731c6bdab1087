"""Feature-map distillation: a student's block outputs pulled towards a trained network's.

For chosen modules k = 1..K of both networks (by default the blocks of the student's generated
layers), on every training batch x:

    L_feat = λ · (1/K) Σ_k mean((s_k(x) − t_k(x))²) / mean(t_k(x)²)

s_k the student's output of module k, t_k the trained network's (frozen, in eval mode). Each
term is normalised by the teacher's mean square, so blocks of any scale count alike.

The student's training step stays its module's own (``ImageClassifier.training_step``: labels,
or soft targets with ``distill``). The term is added through gradients instead: as the student
computes s_k, a hook on that tensor adds ∂L_feat/∂s_k = λ · 2(s_k − t_k) / (K · N_k · mean(t_k²))
to the gradient arriving there in backward, exactly what adding L_feat to the loss would give,
in the same one backward pass. The teacher's features are computed as the batch starts (when
it also gives soft targets, that one call serves both).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor, nn
from torch.utils.hooks import RemovableHandle

from hyper.network import GeneratedNetwork


def block_names(network: nn.Module) -> list[str]:
    """The modules whose outputs are matched by default: for a generated network, the block of
    each generated layer (the target's path up to the layer name's last integer index,
    ``stages.1.0.conv1.weight`` -> ``stages.1.0``), in order; a layer with no index, its module."""
    if not isinstance(network, GeneratedNetwork):
        raise ValueError(
            f"feature_modules must be given for a student that is not a generated network, got {type(network).__name__}"
        )
    return list(dict.fromkeys(_block_of(layer.name) for layer in network.layers))


def _block_of(name: str) -> str:
    parts = name.split(".")
    indices = [i for i, part in enumerate(parts) if part.isdigit()]
    return ".".join(parts[: indices[-1] + 1] if indices else parts[:-1])


def inner(network: nn.Module) -> nn.Module:
    """The module whose names the feature modules use: a generated network's target."""
    return network.target if isinstance(network, GeneratedNetwork) else network


def _first_tensor(output: Any) -> Tensor | None:
    """A module's output as a tensor: itself, or the first item of a tuple (Hugging Face blocks)."""
    if isinstance(output, (tuple, list)) and output:
        output = output[0]
    return output if isinstance(output, Tensor) else None


class FeatureMatching:
    """Hooks that add λ · L_feat (module doc) to the student's gradients on every training batch.

    Args:
        student: the network being trained (its ``training`` mode and grad decide when it counts).
        teacher: the trained network, frozen; called on each batch's inputs by ``teacher_features``.
        names: modules of both networks (names in a generated network's target) to match.
        weight: λ.
    """

    def __init__(self, *, student: nn.Module, teacher: nn.Module, names: Sequence[str], weight: float) -> None:
        self.names = list(names)
        self.weight = weight
        self.targets: dict[str, Tensor] = {}  # the teacher's features of the current batch
        self.losses: list[Tensor] = []  # each matched module's normalised error, this batch
        students, teachers = check_modules(student, self.names, "student"), check_modules(teacher, self.names, "teacher")
        self.teacher = teacher
        self.handles: list[RemovableHandle] = []
        for name in self.names:
            self.handles.append(teachers[name].register_forward_hook(self._keep_target(name)))
            self.handles.append(students[name].register_forward_hook(self._match(name)))

    @torch.no_grad()
    def teacher_features(self, inputs: Tensor, run: Callable[[Tensor], Any] | None = None) -> None:
        """Run the teacher on ``inputs`` (B, ...) and keep its features for the student's next step.
        ``run``: what calls the teacher network (a distilling module's ``Teacher.ahead``, so the
        step reuses these logits); None: the network itself."""
        self.targets, self.losses = {}, []
        (run or self.teacher)(inputs)

    def loss(self) -> float | None:
        """L_feat (without λ) of the batch the student trained on last; None before any."""
        return None if not self.losses else float(torch.stack(self.losses).mean())

    def remove(self) -> None:
        for handle in self.handles:
            handle.remove()
        self.handles, self.targets = [], {}

    def _keep_target(self, name: str):
        def hook(module: nn.Module, inputs: Any, output: Any) -> None:
            feature = _first_tensor(output)
            if feature is not None:
                self.targets[name] = feature.detach()
        return hook

    def _match(self, name: str):
        def hook(module: nn.Module, inputs: Any, output: Any) -> None:
            feature, target = _first_tensor(output), self.targets.get(name)
            if feature is None or target is None or not feature.requires_grad or not module.training:
                return
            if feature.shape != target.shape:
                raise ValueError(
                    f"feature_modules: {name!r} gives {tuple(feature.shape)} in the student and "
                    f"{tuple(target.shape)} in the trained network; match modules of the same shape"
                )
            scale = target.square().mean().clamp_min(1e-12)
            residual = feature.detach() - target
            self.losses.append(residual.square().mean() / scale)
            factor = 2 * self.weight / (len(self.names) * feature.numel() * scale)
            feature.register_hook(lambda grad: grad + factor * residual)
        return hook


def check_modules(network: nn.Module, names: Sequence[str], which: str) -> dict[str, nn.Module]:
    """``network``'s modules called ``names`` (in a generated network's target); ValueError if one is missing."""
    modules = dict(inner(network).named_modules())
    missing = [name for name in names if name not in modules]
    if missing:
        raise ValueError(f"feature_modules: the {which} network has no module {missing[0]!r}")
    return {name: modules[name] for name in names}
