"""Structured removal of hidden units (DropNeuron-style): find the units a network can lose,
penalise each unit's weights as a group, and cut the dead ones out, leaving a smaller dense
network of the user's own class.

A **unit** is an output channel (or feature) of a conv or linear **producer** whose output
reaches only conv or linear **consumers**, through channel-wise steps alone (batch norm,
activations, dropout): the inner channels of a residual block, the hidden units of an MLP.
Channels that meet a residual sum, a concatenation or a reshape are not units: removing them
would change what other layers see. The graph is read with ``torch.fx``.

A unit's **group** is its producer row (and bias) and its consumers' columns; the penalty is
λ Σ_units ‖group‖₂ (group lasso: Scardapane et al. 2017; DropNeuron, Pan et al. 2016, penalises
a neuron's in- and out-weights alike). Removing a unit deletes its producer row, its slice of
every batch norm on the way, and its consumers' columns: the units kept compute exactly what
they computed before, and so does the whole network when the removed units' consumer columns
were zero.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, fx, nn

from hyper.materialize import materialize
from hyper.network import GeneratedNetwork

LINEAR = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)
NORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)
PASS_MODULES = (nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.ELU, nn.GELU, nn.SiLU, nn.Tanh, nn.Sigmoid, nn.Dropout, nn.Identity)
PASS_FUNCTIONS = {F.relu, torch.relu, F.relu6, F.leaky_relu, F.elu, F.gelu, F.silu, torch.tanh, torch.sigmoid, F.dropout}
PASS_METHODS = {"relu", "tanh", "sigmoid"}


@dataclass(frozen=True)
class UnitGroup:
    """The units of one producer: the layers that removing one of them touches.

    Args:
        producer: the conv or linear module whose output channels are the units.
        norms: batch norms between producer and consumers (sliced alike).
        consumers: the conv or linear modules that read the units.
    """

    producer: str
    norms: tuple[str, ...]
    consumers: tuple[str, ...]


def unit_groups(model: nn.Module) -> list[UnitGroup]:
    """Every producer whose channels can be removed (see the module doc), in graph order."""
    module = model.target if isinstance(model, GeneratedNetwork) else model
    graph = fx.symbolic_trace(module).graph
    modules = dict(module.named_modules())
    groups = []
    for node in graph.nodes:
        if node.op == "call_module" and _is_linear(modules[node.target]):
            group = _follow(node, modules)
            if group is not None:
                groups.append(group)
    return groups


def _is_linear(module: nn.Module) -> bool:
    return isinstance(module, LINEAR) and getattr(module, "groups", 1) == 1


def _follow(producer: fx.Node, modules: dict[str, nn.Module]) -> UnitGroup | None:
    """The norms and consumers ``producer`` feeds through channel-wise steps; None if any path
    leads anywhere else (a sum, a reshape, the output)."""
    norms, consumers, frontier = [], [], list(producer.users)
    while frontier:
        node = frontier.pop()
        target = modules.get(node.target) if node.op == "call_module" else None
        if target is not None and _is_linear(target):
            consumers.append(node.target)
        elif isinstance(target, NORMS + PASS_MODULES) or _passes(node):
            if isinstance(target, NORMS):
                norms.append(node.target)
            frontier.extend(node.users)
        else:
            return None
    if not consumers:
        return None
    return UnitGroup(producer.target, tuple(dict.fromkeys(norms)), tuple(dict.fromkeys(consumers)))


def _passes(node: fx.Node) -> bool:
    """A channel-wise function or method applied to the unit's values (its first argument)."""
    if node.op == "call_function":
        return node.target in PASS_FUNCTIONS
    if node.op == "call_method":
        return node.target in PASS_METHODS
    return False


def effective_weights(model: nn.Module) -> dict[str, Tensor]:
    """Every weight as the forward pass uses it (generated ones included), by module name."""
    module = model.target if isinstance(model, GeneratedNetwork) else model
    generated = model.generated_weights() if isinstance(model, GeneratedNetwork) else {}
    weights = {name: p for name, p in module.named_parameters()}
    weights.update(generated)
    return weights


def unit_norms(weights: dict[str, Tensor], group: UnitGroup) -> Tensor:
    """(units,) the L2 norm of each unit's group: producer row and bias, consumer columns."""
    square = weights[f"{group.producer}.weight"].flatten(1).square().sum(dim=1)
    bias = weights.get(f"{group.producer}.bias")
    if bias is not None:
        square = square + bias.square()
    for consumer in group.consumers:
        columns = weights[f"{consumer}.weight"].transpose(0, 1)  # (units, out, *kernel)
        square = square + columns.flatten(1).square().sum(dim=1)
    return square.sqrt()


def group_lasso(model: nn.Module, groups: list[UnitGroup]) -> Tensor:
    """Σ over units of ‖group‖₂: the penalty that drives whole units to zero."""
    weights = effective_weights(model)
    return sum(unit_norms(weights, group).sum() for group in groups)


@torch.no_grad()
def dead_units(model: nn.Module, groups: list[UnitGroup], *, threshold: float) -> dict[UnitGroup, Tensor]:
    """Per group, a (units,) mask of the units to keep: norm above ``threshold`` × the group's
    largest (at least one unit is always kept)."""
    check_threshold(threshold)
    weights = effective_weights(model)
    keep = {}
    for group in groups:
        norms = unit_norms(weights, group)
        mask = norms > threshold * norms.max()
        mask[norms.argmax()] = True
        keep[group] = mask
    return keep


def check_threshold(threshold: float) -> None:
    if not 0.0 <= threshold < 1.0:
        raise ValueError(f"threshold must be in [0, 1) (a fraction of the largest unit's norm), got {threshold!r}")


@torch.no_grad()
def remove_units(model: nn.Module, keep: dict[UnitGroup, Tensor]) -> nn.Module:
    """A smaller copy of ``model`` (materialized, if generated) with only the kept units."""
    plain = materialize(model)
    for group, mask in keep.items():
        index = mask.nonzero().squeeze(1).to(next(plain.parameters()).device)
        _slice(plain.get_submodule(group.producer), index, dim=0)
        for norm in group.norms:
            _slice(plain.get_submodule(norm), index, dim=0)
        for consumer in group.consumers:
            _slice(plain.get_submodule(consumer), index, dim=1)
    return plain


def _slice(module: nn.Module, index: Tensor, *, dim: int) -> None:
    """Keep ``index`` along ``dim`` of the module's tensors (out: weight rows, bias, norm
    statistics; in: weight columns) and its size attributes."""
    for name, tensor in list(module.named_parameters(recurse=False)) + list(module.named_buffers(recurse=False)):
        if tensor.dim() == 0 or (dim == 1 and name != "weight"):
            continue
        kept = tensor.index_select(dim, index).clone()
        if isinstance(tensor, nn.Parameter):
            setattr(module, name, nn.Parameter(kept, requires_grad=tensor.requires_grad))
        else:
            setattr(module, name, kept)
    size = len(index)
    attributes = {0: ("out_channels", "out_features", "num_features"), 1: ("in_channels", "in_features")}[dim]
    for attribute in attributes:
        if hasattr(module, attribute):
            setattr(module, attribute, size)
