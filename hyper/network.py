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
from hyper.condition import is_conditional, resolve_condition
from hyper.layers import GeneratedLayer
from hyper.per_sample import check_per_sample, run_per_sample
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
        if getattr(self.source, "freezes_target", False):  # an adapter source: only it trains
            target.requires_grad_(False)
        adopt = getattr(self.source, "adopt", None)  # a source built on the target's own weights
        if adopt is not None:
            adopt({name: target.get_parameter(name) for name in self.source.provides})
        for name in self.source.provides:
            _remove_parameter(target, name)
        self.target = target
        self._condition: Tensor | None = None  # what direct calls use (``conditioned``)
        self.binding = Binding(target, self.source.provides, self._generate_for_direct_calls, self._source_state)
        self.binding.install()
        self._bind_now()  # ``target.fc.weight`` exists from the start

    def _bind_now(self) -> None:
        """Generate and bind, unless the weights wait for a condition (a conditional source)."""
        if not is_conditional(self.source) or self._condition is not None:
            with torch.no_grad():
                self.binding.regenerate()

    def generated_weights(self, *, condition: Tensor | None = None, task: Any = None) -> dict[str, Tensor]:
        """The generated weights keyed by target parameter name (tied layers share tensors);
        a conditional source's for ``condition`` or ``task`` (``hyper/condition.py``)."""
        return self.source(**_given(resolve_condition(self.source, condition, task)))

    def forward(
        self,
        *args: Any,
        weights: dict[str, Tensor] | None = None,
        condition: Tensor | None = None,
        task: Any = None,
        chunk: int | None = None,
        **kwargs: Any,
    ) -> Any:
        """Run the target with weights generated now; pass ``weights`` to use weights generated
        once for this step instead (e.g. shared with a penalty on them).

        A conditional source takes ``condition`` (``(c,)``: one weight set; ``(B, c)``: one per
        sample, at most ``chunk`` sets at a time) or ``task`` (an int or ``(B,)`` ints)."""
        e = None if weights is not None else resolve_condition(self.source, condition, task)
        if e is not None and e.dim() == 2:
            check_per_sample(self.target)
            with self.binding.outer_call():
                return run_per_sample(self.target, self.source, e, args, kwargs, chunk=chunk)
        if tracing():  # compile/export trace functional_call soundly; nothing is bound
            return functional_call(self.target, self.source(**_given(e)) if weights is None else weights, args, kwargs)
        if weights is None and e is None:
            self.binding.regenerate()
        else:  # not the source's current state: a later direct call makes its own
            self.binding.bind(self.source(condition=e) if weights is None else weights, key=None)
        with self.binding.outer_call():
            return self.target(*args, **kwargs)

    @contextmanager
    def conditioned(self, condition: Tensor | None = None, *, task: Any = None) -> Iterator[nn.Module]:
        """Within it, every call of the model or of its target (``generate()``, an inference loop,
        the target's own modules) runs with the weights of this one condition or task."""
        e = resolve_condition(self.source, condition, task)
        if e is None or e.dim() != 1:
            raise ValueError("condition: conditioned() takes one condition, of shape (c,), or one task id")
        # Kept as given and resolved at each generation: a task's row must be looked up afresh
        # for every backward, as a training step would.
        previous, self._condition = self._condition, (condition, task)
        self.binding.unbind()
        try:
            yield self
        finally:
            self._condition = previous
            self.binding.unbind()

    def _generate_for_direct_calls(self) -> dict[str, Tensor]:
        if not is_conditional(self.source):
            return self.source()
        if self._condition is None:
            raise ValueError(
                "condition: this model's weights depend on a condition; call model(x, condition=e) "
                "or model(x, task=t), or run other calls inside `with model.conditioned(...)`"
            )
        return self.generated_weights(condition=self._condition[0], task=self._condition[1])

    def _source_state(self) -> tuple:
        """Changes whenever the source's output can: a parameter or buffer updated in place, moved,
        replaced, or parametrized (quantised), or the model switched between train and eval."""
        tensors = [*self.source.named_parameters(), *self.source.named_buffers()]
        state = (self.training, *((name, t._version, t.data_ptr(), t.dtype) for name, t in tensors))
        if self._condition is None:
            return state
        condition, task = self._condition  # the condition direct calls use, or the task id
        given = condition if condition is not None else task
        return (*state, (given._version, given.data_ptr()) if isinstance(given, Tensor) else given)

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
            self._bind_now()

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


def _given(condition: Tensor | None) -> dict[str, Tensor]:
    """The source's keyword arguments: an unconditional source takes none."""
    return {} if condition is None else {"condition": condition}


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
