"""Low-rank and template sources: hand-counted parameters, materialize, bad knobs."""

import pytest
import torch

from hyper import LowRank, Templates, Tied, count_parameters, materialize
from models import wide_resnet

# WRN-16-1: 2 blocks per stage. Generated kernels (out, in): stage 0: 4 × (16, 16);
# stage 1: (32, 16) then 3 × (32, 32); stage 2: (64, 32) then 3 × (64, 64).
WRN16_1 = [(16, 16)] * 4 + [(32, 16)] + [(32, 32)] * 3 + [(64, 32)] + [(64, 64)] * 3
NOT_GENERATED_16_1 = (
    3 * 16 * 9  # stem
    + 16 * 32 + 32 * 64  # 1x1 shortcuts
    + 2 * (4 * 16 + 16 + 3 * 32 + 32 + 3 * 64)  # BN, two per block (block 0: bn1 at the input width)
    + 2 * 64  # final BN
    + 64 * 10 + 10  # classifier
)


def test_not_generated_hand_count():
    count = count_parameters(wide_resnet(depth=16, width=1, source="plain"))
    assert count.breakdown["not generated"] == NOT_GENERATED_16_1
    assert count.trainable == NOT_GENERATED_16_1 + sum(o * i * 9 for o, i in WRN16_1)


@pytest.mark.parametrize("rank", [1, 3])
def test_lowrank_count(rank):
    count = count_parameters(wide_resnet(depth=16, width=1, source=LowRank(rank=rank)))
    assert count.breakdown["low-rank factors"] == sum(rank * (o + i * 9) for o, i in WRN16_1)
    assert count.trainable == NOT_GENERATED_16_1 + count.breakdown["low-rank factors"]


def test_lowrank_tied_count():
    # Fully tied: one factorisation per (stage, role, shape): stage 0 two, stages 1-2 three each.
    unique = [(16, 16)] * 2 + [(32, 16), (32, 32), (32, 32)] + [(64, 32), (64, 64), (64, 64)]
    count = count_parameters(wide_resnet(depth=16, width=1, source=LowRank(rank=2, tying_groups=1)))
    assert count.breakdown["low-rank factors"] == sum(2 * (o + i * 9) for o, i in unique)


def test_lowrank_kernels_have_the_rank():
    model = wide_resnet(depth=10, width=2, source=LowRank(rank=3))
    for layer in model.layers:
        w = model.generated_weights()[layer.name].reshape(layer.shape[0], -1)
        assert torch.linalg.matrix_rank(w) == 3


@pytest.mark.parametrize("k", [2, 5])
def test_templates_count(k):
    # Banks per (stage, shape): (16,16), (32,16), (32,32), (64,32), (64,64); k coefficients per layer.
    banks = [(16, 16), (32, 16), (32, 32), (64, 32), (64, 64)]
    count = count_parameters(wide_resnet(depth=16, width=1, source=Templates(num_templates=k)))
    assert count.breakdown["templates"] == sum(k * o * i * 9 for o, i in banks)
    assert count.breakdown["coefficients"] == k * len(WRN16_1)


def test_tied_count():
    unique = [(16, 16)] * 2 + [(32, 16), (32, 32), (32, 32)] + [(64, 32), (64, 64), (64, 64)]
    count = count_parameters(wide_resnet(depth=16, width=1, source=Tied()))
    assert count.breakdown["direct weights"] == sum(o * i * 9 for o, i in unique)


@pytest.mark.parametrize("spec", [LowRank(rank=8), Templates(num_templates=4)])
def test_materialize(spec):  # initial variance, layer by layer: tests/test_init.py
    torch.manual_seed(0)
    model = wide_resnet(depth=16, width=2, source=spec).eval()
    x = torch.randn(2, 3, 8, 8)
    assert torch.allclose(materialize(model).eval()(x), model(x), rtol=1e-5, atol=1e-6)


def test_gradients_reach_every_part():
    for spec in (LowRank(rank=2), Templates(num_templates=3)):
        model = wide_resnet(depth=10, width=1, source=spec)
        model(torch.randn(2, 3, 8, 8)).sum().backward()
        assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.source.parameters())


@pytest.mark.parametrize(
    "make, words",
    [
        (lambda: LowRank(rank=0), ["rank", "positive"]),
        (lambda: wide_resnet(depth=10, source=LowRank(rank=200)), ["rank", "at most 16"]),
        (lambda: Templates(num_templates=-1), ["num_templates"]),
        (lambda: LowRank(tying_groups=0), ["tying_groups", "positive"]),
    ],
)
def test_bad_knobs(make, words):
    with pytest.raises(ValueError) as error:
        make()
    assert all(word in str(error.value) for word in words)


def test_pruned_count_is_on_nonzero_weights():
    from torch.nn.utils import prune

    model = wide_resnet(depth=10, width=1, source="plain")
    full = count_parameters(model)
    conv = model.target.stages[2][0].conv2  # 64 × 64 × 3 × 3 = 36,864 weights
    prune.l1_unstructured(conv, "weight", amount=0.75)  # weight_orig + weight_mask, 27,648 masked
    pruned = count_parameters(model, nonzero=True)
    zeros_elsewhere = sum(int((p == 0).sum()) for n, p in model.named_parameters() if "weight_orig" not in n)
    assert pruned.trainable == full.trainable - 27_648 - zeros_elsewhere
    assert pruned.plain_equivalent == full.plain_equivalent
    prune.remove(conv, "weight")  # made permanent: zeros stored in an ordinary parameter
    assert count_parameters(model, nonzero=True).trainable == pruned.trainable
