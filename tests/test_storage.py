"""Bytes by hand: each storage format of a small module, and the byte compression ratio."""

import math

import pytest
import torch
from torch import nn
from torch.nn.utils import prune

from hyper import count_parameters
from hyper.compression import quantize
from hyper.storage import TensorFormat, index_bytes, size_bytes, tensor_bytes
from models import HyperResNet, WideResNet


def linear():
    """512 weights in 16 output channels of 32; no bias."""
    torch.manual_seed(0)
    return nn.Linear(32, 16, bias=False)


@pytest.mark.parametrize(
    "bits, expected",
    [
        (8, 512 + 16 * 4),  # one byte a code, one fp32 scale per output channel
        (4, 512 // 2 + 16 * 4),  # two codes a byte
        (1, 512 // 8 + 16 * 4),  # eight codes a byte
    ],
)
def test_quantised_bytes_by_hand(bits, expected):
    module = quantize(linear(), bits=bits)
    assert size_bytes(module) == expected


def test_fp32_and_bf16_bytes():
    assert size_bytes(linear()) == 512 * 4
    assert size_bytes(linear().to(torch.bfloat16)) == 512 * 2


def test_sparse_at_90_percent_is_values_plus_bitmask():
    module = linear()
    prune.l1_unstructured(module, "weight", amount=0.9)  # 461 of 512 zeros, 51 kept
    # values 51 × 4 B + bitmask 512 bits (64 B) = 268 B; flat 2-byte indices would be 51 × 6 = 306 B
    assert size_bytes(module) == 51 * 4 + 64
    prune.remove(module, "weight")  # permanent zeros in an ordinary weight: the same bytes
    assert size_bytes(module) == 268


def test_half_pruned_does_not_halve_the_bytes():
    module = linear()
    prune.l1_unstructured(module, "weight", amount=0.5)
    assert size_bytes(module) == 256 * 4 + 64  # 1088 of 2048 bytes


def test_indices_win_when_very_sparse():
    module = nn.Linear(64, 64, bias=False)  # 4096 entries: 2-byte indices
    with torch.no_grad():
        module.weight.zero_()
        module.weight.view(-1)[:10] = 1.0
    assert size_bytes(module) == 10 * 4 + 10 * 2  # 60 B; a bitmask alone would be 512 B
    assert [index_bytes(n) for n in (256, 257, 65536, 65537)] == [1, 2, 2, 4]


def test_formula_by_hand():
    assert tensor_bytes(10, 10, TensorFormat(bits=4)) == 5
    assert tensor_bytes(9, 9, TensorFormat(bits=4, scales=3)) == 5 + 12  # rounded up to whole bytes


def test_small_channels_share_one_scale():
    # An embedding table of 10 rows of 4 (rows too short for a scale each) and a bias (never quantised).
    module = nn.Module()
    module.table = nn.Parameter(torch.randn(10, 4))
    module.bias = nn.Parameter(torch.randn(7))
    quantize(module, bits=4)
    assert size_bytes(module) == 40 // 2 + 4 + 7 * 4


def test_tied_tensors_count_once():
    shared = nn.Linear(8, 8, bias=False)
    assert size_bytes(nn.Sequential(shared, shared)) == 64 * 4


def without_zeros(model: nn.Module) -> nn.Module:
    with torch.no_grad():
        for p in model.parameters():
            p.add_(1.0)  # no exact zeros (fresh biases are), before or after quantising: every tensor dense
    return model


def quantised_bytes(model: nn.Module, bits: int) -> int:
    """Bytes of ``model`` quantised at ``bits`` with every tensor dense, by hand: a tensor of two or
    more axes is its codes packed at ``bits`` (whole bytes) plus a 4-byte scale per first-axis slice,
    or one scale for the tensor when a slice holds fewer than 16 entries; the rest stay fp32."""
    total = 0
    for p in model.parameters():
        if p.dim() >= 2:
            scales = p.shape[0] if p[0].numel() >= 16 else 1
            total += math.ceil(p.numel() * bits / 8) + 4 * scales
        else:
            total += 4 * p.numel()
    return total


def test_count_parameters_reports_bytes_and_their_ratio():
    model = without_zeros(WideResNet(depth=10, width=1))
    dense = count_parameters(model)
    assert dense.size_bytes == 4 * dense.plain_equivalent and dense.compression_bytes == pytest.approx(1.0)
    assert dense.compression_ratio == 1.0
    expected = quantised_bytes(model, 8)
    quantize(model, bits=8)
    quantised = count_parameters(model)
    assert quantised.compression_ratio == 1.0  # the parameter ratio is unchanged
    assert quantised.size_bytes == expected
    assert quantised.compression_bytes == pytest.approx(4 * dense.plain_equivalent / expected)
    assert "byte compression" in quantised.table()


def test_a_quantised_hypernetwork_counts_its_own_embeddings_and_generator():
    model = without_zeros(HyperResNet(depth=10, width=1, embedding_dim=4, hidden_dim=8))
    full = count_parameters(model)
    expected = quantised_bytes(model, 4)
    quantize(model, bits=4)
    quantised = count_parameters(model)
    assert quantised.trainable == full.trainable and quantised.breakdown == full.breakdown
    assert quantised.size_bytes == expected
    plain = sum(p.numel() for p in WideResNet(depth=10, width=1).parameters())  # what the hypernetwork stands for
    assert quantised.compression_bytes == pytest.approx(4 * plain / expected)
