"""Per-sample weights: run a target once per sample, each sample with its own weight set, with
no Python loop over samples.

A ``(B, c)`` condition gives B weight sets, each generated weight ``(B, *shape)`` from one
batched generator call. The target then runs under ``torch.func.vmap`` over (weight set, sample):
each sample sees an ordinary batch of one with ordinary weights, and vmap turns the layers into
their batched forms (a linear layer into a batched matmul, a convolution into one grouped
convolution over the batch), so any target written for shared weights runs per sample, exactly
as it would alone. Recurrent modules run written out (``hyper/rnn_steps.py``: their fused op
does not batch), and random ops such as dropout draw independently per sample. ``chunk`` bounds how many weight sets exist at once (the loop is over
chunks, not samples).
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Any, Iterator

import torch
from torch import Tensor, nn
from torch.func import functional_call
from torch.utils._pytree import tree_flatten, tree_map, tree_unflatten

from hyper.rnn_steps import stepwise_rnns


def check_per_sample(target: nn.Module) -> None:
    """Raise ValueError if ``target`` cannot run one sample at a time (batch statistics)."""
    for name, module in target.named_modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm) and module.training:
            raise ValueError(
                f"condition: a (B, c) condition runs each sample alone, and {name or 'the model'} is a batch norm "
                "in training mode, which needs the batch: call model.eval(), use a norm without batch "
                "statistics, or pass one (c,) condition for the batch"
            )


def run_per_sample(
    target: nn.Module,
    source: nn.Module,
    condition: Tensor,
    args: tuple,
    kwargs: dict[str, Any],
    *,
    chunk: int | None,
) -> Any:
    """``target(*args, **kwargs)`` with sample i run on ``generate(condition)`` 's i-th weight set.

    Every tensor argument whose first axis has length B is split by sample; other arguments are
    given whole to every sample. Outputs are stacked along a leading axis of length B.

    Args:
        target: the module to run (its generated weights bound or not: the weight sets replace them).
        source: its conditional weight source (``HyperWeights``: ``per_sample``, ``linear_per_sample``).
        condition: ``(B, c)``.
        args, kwargs: the target's inputs for the whole batch.
        chunk: weight sets generated and run at once; None: all B.
    """
    batch = condition.shape[0]
    if chunk is not None and (isinstance(chunk, bool) or not isinstance(chunk, int) or chunk < 1):
        raise ValueError(f"chunk must be a positive integer (weight sets at once), got {chunk!r}")
    leaves, spec = tree_flatten((args, kwargs))
    split = [isinstance(t, Tensor) and t.dim() > 0 and t.shape[0] == batch for t in leaves]
    if not any(split):
        raise ValueError(f"condition: a ({batch}, c) condition needs inputs whose first axis is the batch of {batch}")

    # Traced (torch.compile), every weight set is made: a forward swapped for the call and
    # restored does not trace; eager, the linear layers never make theirs.
    linears = {} if torch.compiler.is_compiling() else _factorized_linears(target, source)
    films: dict[str, Tensor] = {}  # inside the vmapped call: this sample's FiLM per kernel size
    structure: list = []  # the output's pytree structure, seen inside the vmapped call

    def one_sample(weights: dict[str, Tensor], sample_films: dict[str, Tensor], *sample: Any) -> Any:
        films.update(sample_films)
        inputs = [t.unsqueeze(0) if s else t for t, s in zip(sample, split)]
        call_args, call_kwargs = tree_unflatten(inputs, spec)
        output = functional_call(target, weights, call_args, call_kwargs, strict=False)
        # vmap returns tensors only: the output's structure is kept aside, its other leaves (a
        # Hugging Face model's cache) dropped: per-sample calls train and score, they do not decode
        out_leaves, out_spec = tree_flatten(output)
        structure.append(out_spec)
        return [t.squeeze(0) if t.dim() > 0 and t.shape[0] == 1 else t for t in out_leaves if isinstance(t, Tensor)], [
            isinstance(t, Tensor) for t in out_leaves
        ]

    in_dims = (0, 0, *(0 if s else None for s in split))
    step = batch if chunk is None else chunk
    vmapped = torch.func.vmap(one_sample, in_dims=in_dims, out_dims=(0, None), randomness="different")

    def run(*inputs: Any) -> Any:
        tensors, is_tensor = vmapped(*inputs)
        tensors = iter(tensors)
        return tree_unflatten([next(tensors) if t else None for t in is_tensor], structure[-1])

    outputs = []
    for start in range(0, batch, step):
        part = slice(start, start + step)
        try:
            weights, part_films = source.per_sample(condition[part], frozenset(linears))
            with stepwise_rnns(target), _linears_factorized(linears, source, films):
                outputs.append(run(weights, part_films, *[t[part] if s else t for t, s in zip(leaves, split)]))
        except (torch.OutOfMemoryError, MemoryError, RuntimeError) as error:
            if isinstance(error, RuntimeError) and "allocate" not in str(error):
                raise
            sets = min(step, batch - start)
            raise MemoryError(
                f"chunk: {sets} weight sets at once do not fit in memory; pass a smaller chunk= (e.g. {max(1, sets // 4)})"
            ) from error
    films.clear()  # no batched tensors kept past the call
    if len(outputs) == 1:
        return outputs[0]
    return tree_map(lambda *parts: torch.cat(parts) if isinstance(parts[0], Tensor) else parts[0], *outputs)


def _factorized_linears(target: nn.Module, source: nn.Module) -> dict[str, nn.Linear]:
    """The generated ``nn.Linear`` weights, by name: they run factorized, never made per sample."""
    provided = set(source.provides)
    return {
        f"{name}.weight" if name else "weight": module
        for name, module in target.named_modules()
        if type(module) is nn.Linear and (f"{name}.weight" if name else "weight") in provided
    }


@contextmanager
def _linears_factorized(linears: dict[str, nn.Linear], source: nn.Module, films: dict[str, Tensor]) -> Iterator[None]:
    """Within it, each of ``linears`` computes x·Wᵀ + b from the current sample's FiLM."""
    for name, module in linears.items():
        key = source.where[name][0]

        def forward(input: Tensor, name: str = name, module: nn.Linear = module, key: str = key) -> Tensor:
            y = source.linear_per_sample(name, input, films[key])
            return y if module.bias is None else y + module.bias

        module.forward = forward
    try:
        yield
    finally:
        for module in linears.values():
            del module.forward
