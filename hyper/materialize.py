"""Bake generated weights into a plain copy of the target: no hypernetwork left.

The result is the target's own class with ordinary parameters, so it runs with no generation
overhead and exports (state_dict, TorchScript, ONNX) like any module.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from hyper.network import GeneratedNetwork


@torch.no_grad()
def materialize(model: nn.Module) -> nn.Module:
    """Return a plain module with ``model``'s current generated weights as parameters.

    A plain module passes through as a copy. Tied layers get separate copies of their shared
    weight, so the result is an ordinary untied network.
    """
    if not isinstance(model, GeneratedNetwork):
        return copy.deepcopy(model)
    weights = model.generated_weights()
    plain = copy.deepcopy(model.target)
    for name, weight in weights.items():
        module_name, _, param_name = name.rpartition(".")
        module = plain.get_submodule(module_name)
        module.register_parameter(param_name, nn.Parameter(weight.detach().clone()))
    return plain
