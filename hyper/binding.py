"""Live weights: the generated tensors sit on the target's modules as their ordinary ``.weight``.

A wrapped target is called along many paths besides the wrapper's own forward: Hugging Face's
``generate`` calls the inner model token by token, activation checkpointing calls a block again
during backward, users call submodules, hooks read ``module.weight``. So the weights are not
passed in for one call (``functional_call``) but *bound*: set as plain attributes of the modules
that own them, and left there until the next generation.

When they are generated:

- the wrapper's forward (and a direct call of the target's root) in grad mode: every call, as a
  training step is one call; the inner calls and a checkpoint's recomputation in backward then
  reuse these tensors, so the gradient reaches the source once, through one graph;
- a direct call in no-grad mode (``generate``, an inference loop on the inner model): only when
  the source has changed since the bound weights were made (a parameter's version, storage or
  set of parameters), so generating 100 tokens costs one generation;
- a *reentrant* checkpoint (``torch.utils.checkpoint(use_reentrant=True)``, Hugging Face's
  default) runs its block's backward as a separate autograd call, which would consume the
  step's generator graph and leave none for the next block: its recomputation binds weights
  generated afresh for that backward call (same values; one more generation per checkpointed
  block, the price of recomputation).

Under ``torch.compile`` and ``torch.export`` the wrapper runs the target through
``functional_call`` instead (what both trace soundly), and nothing is bound.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import contextmanager
from functools import partial
from typing import Any, Iterator

import torch
from torch import Tensor, nn


def tracing() -> bool:
    """Whether torch.compile or torch.export is tracing the current call."""
    return torch.compiler.is_compiling() or torch.compiler.is_exporting()


def _backward_task() -> int:
    """The running autograd backward's id, or -1 outside backward."""
    return torch._C._current_graph_task_id()


class Binding:
    """The generated weights bound to ``target``'s modules, and when to make them again.

    Args:
        target: the module whose weights are generated (its generated parameters removed).
        names: the generated parameters' names in ``target``.
        generate: makes all weights from the source, ``{name: tensor}``.
        source_state: a key that changes whenever the source's output can (see ``Binding.key``).
    """

    def __init__(
        self,
        target: nn.Module,
        names: Sequence[str],
        generate: Callable[[], dict[str, Tensor]],
        source_state: Callable[[], tuple],
    ) -> None:
        self.target, self.generate, self.source_state = target, generate, source_state
        self.owners = [(target.get_submodule(n.rpartition(".")[0]), n.rpartition(".")[2], n) for n in names]
        self.key: tuple | None = None  # the source's state the bound weights were made from
        self.with_grad = False  # whether the bound weights carry the step's autograd graph
        self.depth = 0  # nesting of the wrapper's and the target's own calls
        self.reentrant = False  # a reentrant checkpoint ran inside this step's call
        self.unused = False  # the bound weights were made for a recomputation, no backward took them yet
        self.handles: list = []

    # -- binding -------------------------------------------------------------------------------
    def bind(self, weights: dict[str, Tensor], *, key: tuple | None) -> None:
        for module, attr, name in self.owners:
            _set(module, attr, weights[name])
        self.key, self.with_grad = key, torch.is_grad_enabled() and any(w.requires_grad for w in weights.values())

    def unbind(self) -> None:
        """Drop the bound tensors (their memory can then be reused by the next generation)."""
        for module, attr, _ in self.owners:
            if attr in module.__dict__:
                _set(module, attr, None)
                del module.__dict__[attr]
        self.key, self.with_grad, self.unused = None, False, False

    def regenerate(self) -> None:
        if _backward_task() == -1:  # a new step: forget the last one's checkpointing
            self.reentrant = False
        self.unbind()
        key = self.source_state()
        self.bind(self.generate(), key=key)

    def _regenerate_for_recompute(self) -> None:
        """Weights for one reentrant checkpoint's backward call: that call frees the graph it
        runs through, so neither the step's graph nor an earlier recomputation's may be it."""
        self.regenerate()
        self.unused = True
        for tensor in {id(t): t for t in self.bound().values() if t.requires_grad}.values():
            tensor.register_hook(self._taken)

    def _taken(self, grad: Tensor) -> None:
        self.unused = False

    def bound(self) -> dict[str, Tensor]:
        return {name: module.__dict__[attr] for module, attr, name in self.owners}

    def ensure_fresh(self) -> None:
        """Before a call from outside the wrapper: new weights in grad mode or when stale."""
        if torch.is_grad_enabled() or self.key is None or self.key != self.source_state():
            self.regenerate()

    def current(self) -> dict[str, Tensor]:
        """The weights as they are now (made afresh if the source changed), detached."""
        with torch.no_grad():
            if self.key is None or self.key != self.source_state():
                self.regenerate()
            return {name: t.detach() for name, t in self.bound().items()}

    @contextmanager
    def outer_call(self) -> Iterator[None]:
        """The wrapper's forward: its weights are bound, the target's hooks must not redo them."""
        self.depth += 1
        try:
            yield
        finally:
            self.depth -= 1

    # -- hooks on the target -------------------------------------------------------------------
    def install(self) -> None:
        root = self.target
        self.handles = [
            root.register_forward_pre_hook(self._before_root),
            root.register_forward_hook(self._after_root, always_call=True),
        ]
        for module in {id(m): m for m, _, _ in self.owners}.values():
            self.handles.append(module.register_forward_pre_hook(self._before_owner))
            # partial: the hook API marks the callable, which a bound method cannot carry
            self.handles.append(module.register_state_dict_post_hook(partial(Binding._add_to_state_dict, self)))

    def remove(self) -> None:
        for handle in self.handles:
            handle.remove()
        self.handles = []

    def _before_root(self, module: nn.Module, args: Any) -> None:
        if not tracing() and self.depth == 0 and _backward_task() == -1:
            self.ensure_fresh()  # called directly: generate(), the user's own loop
        self.depth += 1

    def _after_root(self, module: nn.Module, args: Any, output: Any) -> None:
        self.depth -= 1

    def _before_owner(self, module: nn.Module, args: Any) -> None:
        if tracing():
            return
        if _backward_task() != -1:  # a checkpoint's recomputation
            if self.reentrant and torch.is_grad_enabled() and not self.unused:
                self._regenerate_for_recompute()
            return
        if self.depth:
            if self.with_grad and not torch.is_grad_enabled():
                self.reentrant = True  # a reentrant checkpoint's no-grad first pass
            return
        self.ensure_fresh()  # an inner module called on its own

    saving_wrapper = False  # set while the wrapper's own state_dict is written

    def _add_to_state_dict(self, module: nn.Module, state: dict, prefix: str, metadata: Any) -> None:
        """The target's own state_dict (``save_pretrained``, ``torch.save(target.state_dict())``)
        holds its generated weights as they are now, so it loads into the plain class; the
        wrapper's state_dict holds the source instead."""
        if Binding.saving_wrapper:
            return
        weights = self.current()
        for owner, attr, name in self.owners:
            if owner is module:
                state[prefix + attr] = weights[name].clone()  # own memory: no views of a shared buffer


def _set(module: nn.Module, attr: str, value: Tensor | None) -> None:
    if isinstance(module, nn.RNNBase):
        setattr(module, attr, value)  # also updates the RNN's cached list of flat weights
    else:
        module.__dict__[attr] = value
