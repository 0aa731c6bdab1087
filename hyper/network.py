"""A target network whose generated weights come from a weight source.

The target stays an ordinary module: its generated parameters are removed, and the weights the
source yields, keyed by the target's own parameter names, are bound in their place as the
modules' ordinary attributes (``hyper/binding.py``): every call path sees them, the wrapper's
forward, the target's own methods (``generate``), checkpoint recomputation and hooks.
Materializing is loading those weights back into a copy as parameters.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import torch
from torch import Tensor, nn
from torch.func import functional_call

from hyper.binding import Binding, tracing
from hyper.layers import GeneratedLayer
from hyper.sources import SourceSpec


class GeneratedNetwork(nn.Module):
    """Run ``target`` with the weights named by ``layers`` taken from ``spec``'s source.

    Attributes the wrapper does not have itself (``config``, ``vocab_size``, ``init_state``,
    ``generate``...) are the target's, so a wrapped model can stand in for the module it wraps;
    the generated weights are bound on the target's modules, so its own methods run with them.
    ``state_dict()`` holds the source (what trains); the target's own ``state_dict()`` (and so
    ``save_pretrained``) holds the generated weights, as the plain class loads them.
    ``hyper.materialize`` gives the plain module back.

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
        self.binding = Binding(target, self.source.provides, self.source, self._source_state)
        self.binding.install()
        with torch.no_grad():
            self.binding.regenerate()  # ``target.fc.weight`` exists from the start

    def generated_weights(self) -> dict[str, Tensor]:
        """The generated weights keyed by target parameter name (tied layers share tensors)."""
        return self.source()

    def forward(self, *args: Any, weights: dict[str, Tensor] | None = None, **kwargs: Any) -> Any:
        """Run the target with weights generated now; pass ``weights`` to use weights generated
        once for this step instead (e.g. shared with a penalty on them)."""
        if tracing():  # compile/export trace functional_call soundly; nothing is bound
            return functional_call(self.target, self.source() if weights is None else weights, args, kwargs)
        if weights is None:
            self.binding.regenerate()
        else:
            self.binding.bind(weights, key=None)  # not the source's: a direct call makes its own
        with self.binding.outer_call():
            return self.target(*args, **kwargs)

    def _source_state(self) -> tuple:
        """Changes whenever the source's output can: a parameter or buffer updated in place, moved,
        replaced, or parametrized (quantised), or the model switched between train and eval."""
        tensors = [*self.source.named_parameters(), *self.source.named_buffers()]
        return (self.training, *((name, t._version, t.data_ptr(), t.dtype) for name, t in tensors))

    def state_dict(self, *args: Any, **kwargs: Any) -> dict[str, Any]:
        previous, Binding.saving_wrapper = Binding.saving_wrapper, True
        try:
            return super().state_dict(*args, **kwargs)
        finally:
            Binding.saving_wrapper = previous

    def save_pretrained(self, directory: str | Path, **kwargs: Any) -> None:
        """The target's ``save_pretrained`` (Hugging Face), with its generated weights as they are
        now, so ``TargetClass.from_pretrained(directory)`` gives the same outputs with no
        hypernetwork; beside it ``hypernetwork.pt``, this wrapper's ``state_dict`` (the source),
        to go on training: ``wrap(TargetClass.from_pretrained(directory), source, ...)`` then
        ``load_state_dict(torch.load(directory / "hypernetwork.pt"))``."""
        save = getattr(self.target, "save_pretrained", None)
        if save is None:
            raise AttributeError(f"{type(self.target).__name__} has no save_pretrained; save materialize(model) instead")
        save(directory, **kwargs)
        torch.save(self.state_dict(), Path(directory) / "hypernetwork.pt")

    @contextmanager
    def unbound(self) -> Iterator[nn.Module]:
        """The bare target for the duration (no bound weights, no hooks), e.g. to copy it."""
        self.binding.unbind()
        self.binding.remove()
        try:
            yield self.target
        finally:
            self.binding.install()
            with torch.no_grad():
                self.binding.regenerate()

    def __getstate__(self) -> dict[str, Any]:
        self.binding.unbind()  # non-leaf tensors neither copy nor pickle; regenerated on use
        return super().__getstate__()

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
