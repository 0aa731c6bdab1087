"""Bake generated weights into a plain copy of the target: no hypernetwork left.

The result is the target's own class with ordinary parameters, so it runs with no generation
overhead and exports (state_dict, TorchScript, ONNX, torch.export) like any module.
"""

from __future__ import annotations

import copy
import reprlib
from typing import Any

import torch
from torch import Tensor, nn

from hyper.network import GeneratedNetwork


@torch.no_grad()
def materialize(model: nn.Module, *, condition: Tensor | None = None, task: Any = None) -> nn.Module:
    """Return a plain copy of ``model`` with its current generated weights as parameters.

    ``model`` itself is left as it is. A generated network gives back its target's class; a
    module holding generated networks (a language model around a generated core) gives back its
    own class with each of them baked. Tied layers get separate copies of their shared weight,
    so the result is an ordinary untied network. A conditional source's weights are those of
    one ``condition`` (shape (c,)) or ``task`` (an int): the plain model that condition runs.
    """
    if not isinstance(model, nn.Module):
        given = f"the class {model.__name__}" if isinstance(model, type) else reprlib.repr(model)
        raise TypeError(f"model must be an nn.Module (a wrapped network, or one holding some), got {given}")
    if isinstance(model, GeneratedNetwork):
        return _bake(model, condition, task)
    plain = copy.deepcopy(model)
    for parent in list(plain.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, GeneratedNetwork):
                setattr(parent, name, _bake(child, condition, task))
    return plain


def _bake(network: GeneratedNetwork, condition: Tensor | None, task: Any) -> nn.Module:
    if (task is not None and isinstance(task, Tensor) and task.dim() > 0) or (isinstance(condition, Tensor) and condition.dim() > 1):
        raise ValueError("condition: materialize bakes one weight set; pass a (c,) condition or one task id")
    weights = network.generated_weights(condition=condition, task=task)
    with network.unbound() as target:  # the copy gets neither the bound tensors nor the hooks
        plain = materialize(target)  # a copy, itself baked if it holds generated networks
    for name, weight in weights.items():
        module_name, _, param_name = name.rpartition(".")
        # setattr, not register_parameter: an RNN also refreshes its cached list of flat weights
        setattr(plain.get_submodule(module_name), param_name, nn.Parameter(weight.detach().clone(memory_format=torch.contiguous_format)))
    return plain
