"""A target network whose generated weights come from a weight source.

The target stays an ordinary module: its generated parameters are removed, and each forward
pass runs it through ``torch.func.functional_call`` with the weights the source yields, keyed by
the target's own parameter names. Materializing is loading those weights back into a copy.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from torch import Tensor, nn
from torch.func import functional_call

from hyper.layers import GeneratedLayer
from hyper.sources import SourceSpec


class GeneratedNetwork(nn.Module):
    """Run ``target`` with the weights named by ``layers`` taken from ``spec``'s source.

    Attributes the wrapper does not have itself (``config``, ``vocab_size``, ``init_state``...)
    are the target's, so a wrapped model can stand in for the module it wraps. Only ``forward``
    runs with the generated weights; ``hyper.materialize`` gives the plain module back.

    Args:
        target: the network whose weights are generated (an ordinary nn.Module).
        layers: the target's generated layers (``hyper.wrap`` selects them from names).
        spec: the weight source's configuration (``Hyper()``, ``Plain()``, ``Tied()``, ...).
    """

    def __init__(self, target: nn.Module, layers: Sequence[GeneratedLayer], spec: SourceSpec) -> None:
        super().__init__()
        if not isinstance(spec, SourceSpec):
            raise ValueError(f"source must be a SourceSpec such as Hyper() or Plain(), got {spec!r}")
        _check_layers_match(target, layers)
        self.spec = spec
        self.layers = tuple(layers)
        self.source = spec.build(self.layers)
        for name in self.source.provides:
            _remove_parameter(target, name)
        self.target = target

    def generated_weights(self) -> dict[str, Tensor]:
        """The generated weights keyed by target parameter name (tied layers share tensors)."""
        return self.source()

    def forward(self, *args: Any, weights: dict[str, Tensor] | None = None, **kwargs: Any) -> Any:
        """Run the target; pass ``weights`` to reuse weights generated once for this step."""
        weights = self.source() if weights is None else weights
        if not weights:
            return self.target(*args, **kwargs)
        return functional_call(self.target, weights, args, kwargs)

    def __getattr__(self, name: str) -> Any:
        try:
            return super().__getattr__(name)  # parameters, buffers, submodules
        except AttributeError:
            target = self.__dict__.get("_modules", {}).get("target")
            if target is None or name.startswith("__"):
                raise
            return getattr(target, name)


def _check_layers_match(target: nn.Module, layers: Sequence[GeneratedLayer]) -> None:
    params = dict(target.named_parameters())
    for layer in layers:
        if layer.name not in params:
            raise ValueError(f"generated layer {layer.name!r} is not a parameter of the target")
        if tuple(params[layer.name].shape) != tuple(layer.shape):
            raise ValueError(
                f"generated layer {layer.name!r} declares shape {layer.shape}, "
                f"the target's parameter has {tuple(params[layer.name].shape)}"
            )


def _remove_parameter(target: nn.Module, name: str) -> None:
    module_name, _, param_name = name.rpartition(".")
    del target.get_submodule(module_name)._parameters[param_name]
