"""Truncated SVD of a trained network's layers: each conv or linear weight, flattened to
out × (in·f·f), becomes the product of two thin layers of rank r.

    W ≈ U_r S_r V_rᵀ:  conv(in → r, the layer's kernel, stride, padding) then conv(r → out, 1×1),
                       linear(in → r) then linear(r → out); the bias stays on the second.

Both factors carry sqrt(S_r), so they have equal scale for the fine-tune that follows. At full
rank the pair reproduces the layer (to float rounding); layers whose rank-r pair would not be
smaller than the layer stay as they are.
"""

from __future__ import annotations

import torch
from torch import nn

from hyper.materialize import materialize

FACTORIZABLE = (nn.Conv2d, nn.Linear)


def full_rank(layer: nn.Conv2d | nn.Linear) -> int:
    """min(out, in·f·f): the rank of the flattened weight at most."""
    out_features = layer.weight.shape[0]
    return min(out_features, layer.weight[0].numel())


def factorized_size(layer: nn.Conv2d | nn.Linear, rank: int) -> int:
    """Weights of the rank-r pair: r (in·f·f + out)."""
    return rank * (layer.weight[0].numel() + layer.weight.shape[0])


@torch.no_grad()
def factorize_layer(layer: nn.Conv2d | nn.Linear, rank: int) -> nn.Sequential:
    """The rank-r pair of layers that approximates ``layer`` (exact at its full rank)."""
    full = full_rank(layer)
    if isinstance(rank, bool) or not isinstance(rank, int) or not 1 <= rank <= full:
        raise ValueError(f"rank must be an integer in [1, {full}] (the layer's full rank), got {rank!r}")
    if isinstance(layer, nn.Conv2d) and layer.groups != 1:
        raise ValueError(f"only ungrouped convs factorise, this one has groups={layer.groups}")
    weight = layer.weight.reshape(layer.weight.shape[0], -1).double()  # (out, in·f·f)
    u, s, vh = torch.linalg.svd(weight, full_matrices=False)
    root = s[:rank].sqrt()
    first = (root[:, None] * vh[:rank]).to(layer.weight.dtype)  # (r, in·f·f)
    second = (u[:, :rank] * root).to(layer.weight.dtype)  # (out, r)
    down, up = _pair(layer, rank)
    down.weight.copy_(first.reshape(down.weight.shape))
    up.weight.copy_(second.reshape(up.weight.shape))
    if layer.bias is not None:
        up.bias.copy_(layer.bias)
    return nn.Sequential(down, up)


def _pair(layer: nn.Conv2d | nn.Linear, rank: int) -> tuple[nn.Module, nn.Module]:
    like = {"device": layer.weight.device, "dtype": layer.weight.dtype}
    bias = layer.bias is not None
    if isinstance(layer, nn.Linear):
        return nn.Linear(layer.in_features, rank, bias=False, **like), nn.Linear(rank, layer.out_features, bias=bias, **like)
    down = nn.Conv2d(
        layer.in_channels, rank, layer.kernel_size, stride=layer.stride, padding=layer.padding,
        dilation=layer.dilation, padding_mode=layer.padding_mode, bias=False, **like,
    )
    return down, nn.Conv2d(rank, layer.out_channels, 1, bias=bias, **like)


def factorize(model: nn.Module, *, rank: int) -> nn.Module:
    """A copy of ``model`` (materialized, if generated) with every conv and linear layer whose
    rank-``rank`` pair is smaller replaced by that pair. Raises ValueError if none would be."""
    plain = materialize(model)  # a copy; generated weights baked in
    chosen = [
        (name, layer)
        for name, layer in plain.named_modules()
        if type(layer) in FACTORIZABLE and getattr(layer, "groups", 1) == 1
        and rank <= full_rank(layer) and factorized_size(layer, rank) < layer.weight.numel()
    ]
    if isinstance(rank, bool) or not isinstance(rank, int) or rank < 1 or not chosen:
        ranks = [full_rank(m) for m in plain.modules() if type(m) in FACTORIZABLE]
        largest = max(ranks, default=0)
        raise ValueError(
            f"rank must be a positive integer small enough to shrink some layer "
            f"(full ranks here: {min(ranks, default=0)} to {largest}), got {rank!r}"
        )
    for name, layer in chosen:
        parent, _, leaf = name.rpartition(".")
        setattr(plain.get_submodule(parent), leaf, factorize_layer(layer, rank))
    return plain

