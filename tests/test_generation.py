"""Generation: tying ends, initial variance, materialize, one batched pass."""

import pytest
import torch

from hyper import GeneratedLayer, Hyper, Tied, TileGenerator, count_parameters, materialize, tie
from models import HyperResNet, wide_resnet
from test_wrap import count_generator_calls


def _kernels_by_stage_role(model):
    weights = model.generated_weights()
    by = {}
    for layer in model.layers:
        by.setdefault((layer.stage, layer.role, layer.shape), []).append(weights[layer.name])
    return by


@pytest.mark.parametrize("spec", [Hyper(tying_groups=1), Tied(tying_groups=1)])
def test_fully_tied_gives_identical_kernels_across_a_stage(spec):
    model = wide_resnet(depth=28, width=1, source=spec)  # 4 blocks per stage
    for kernels in _kernels_by_stage_role(model).values():
        for k in kernels[1:]:
            assert torch.equal(k, kernels[0])


def test_untied_gives_distinct_kernels():
    model = HyperResNet(depth=28, width=1)
    weights = list(model.generated_weights().values())
    for i in range(len(weights)):
        for j in range(i + 1, len(weights)):
            if weights[i].shape == weights[j].shape:
                assert not torch.allclose(weights[i], weights[j])


def test_middle_tying_shares_within_contiguous_runs_only():
    model = HyperResNet(depth=28, width=1, tying_groups=2)  # blocks {0,1} and {2,3} of each stage
    w = model.generated_weights()
    for s in range(3):
        assert torch.equal(w[f"stages.{s}.2.conv2.weight"], w[f"stages.{s}.3.conv2.weight"])
        assert torch.equal(w[f"stages.{s}.0.conv2.weight"], w[f"stages.{s}.1.conv2.weight"])
        assert not torch.allclose(w[f"stages.{s}.1.conv2.weight"], w[f"stages.{s}.2.conv2.weight"])
    # conv1 and conv2 of a block never share, and the stage-entry conv1 keeps its own shape.
    assert not torch.allclose(w["stages.0.2.conv1.weight"], w["stages.0.2.conv2.weight"])


def test_tying_shrinks_the_count_monotonically():
    counts = [count_parameters(HyperResNet(depth=28, tying_groups=g)).trainable for g in (1, 2, 4)]
    assert counts[0] < counts[1] < counts[2]
    assert counts[2] == count_parameters(HyperResNet(depth=28)).trainable  # g = blocks is untied


def test_tie_groups_partition_the_layers():
    layers = [GeneratedLayer(f"l{b}", (16, 16), "s", b, "w") for b in range(6)]
    groups = tie(layers, 3)
    assert [[l.block for l in g] for g in groups] == [[0, 1], [2, 3], [4, 5]]
    assert len(tie(layers, None)) == 6
    # A number that does not divide the blocks splits them as evenly as possible, in order.
    assert [[l.block for l in g] for g in tie(layers, 4)] == [[0, 1], [2], [3, 4], [5]]
    assert len(tie(layers, 6)) == len(tie(layers, 9)) == 6  # at least one group per block: untied


def test_tie_counts_positions_not_indices():
    # Blocks 3, 7, 8, 9 of a stage (others not generated) are four blocks: two groups of two.
    layers = [GeneratedLayer(f"l{b}", (16, 16), "s", b, "w") for b in (3, 7, 8, 9)]
    assert [[l.block for l in g] for g in tie(layers, 2)] == [[3, 7], [8, 9]]


@pytest.mark.parametrize("width", [1, 2])
def test_initial_variance_matches_kaiming(width):
    torch.manual_seed(0)
    model = HyperResNet(depth=16, width=width)
    for layer in model.layers:
        w = model.generated_weights()[layer.name]
        target = layer.init_std**2  # 2 / fan_in for these ReLU convs
        assert abs(w.var().item() / target - 1) < 0.2, (layer.name, w.var().item(), target)
        assert abs(w.mean().item()) < 0.1 * target**0.5


@pytest.mark.parametrize("spec", [Hyper(), Hyper(tying_groups=1), Tied()])
def test_materialize_matches_in_eval_mode(spec):
    torch.manual_seed(0)
    model = wide_resnet(depth=10, width=2, num_classes=5, source=spec)
    # Move the BN statistics away from their defaults so the copy has to carry them.
    model.train()
    with torch.no_grad():
        for _ in range(3):
            model(torch.randn(8, 3, 16, 16))
    model.eval()
    plain = materialize(model).eval()
    x = torch.randn(4, 3, 16, 16)
    expected, got = model(x), plain(x)
    assert (got - expected).abs().max() / expected.abs().max() <= 1e-5
    assert count_parameters(plain).trainable == count_parameters(model).plain_equivalent
    assert not any(isinstance(m, TileGenerator) for m in plain.modules())


def test_one_generator_call_per_forward():
    model = HyperResNet(depth=16, width=1)
    calls = count_generator_calls(model)
    model(torch.randn(1, 3, 8, 8))
    assert len(calls) == 1


def test_precomputed_weights_are_used():
    model = HyperResNet(depth=10, width=1).eval()
    x = torch.randn(2, 3, 8, 8)
    weights = {k: torch.zeros_like(v) for k, v in model.generated_weights().items()}
    assert not torch.allclose(model(x), model(x, weights=weights))


def test_tile_layout_assembles_kernels_from_tiles():
    # A 32-in 48-out kernel is 3 × 2 tiles; each tile is the generator's output for its embedding.
    layer = GeneratedLayer("w", (48, 32, 3, 3), "s", 0, "conv")
    source = Hyper(embedding_dim=4, hidden_dim=8).build([layer])
    tiles = source.tables["3x3"].generator(source.tables["3x3"].embeddings)  # (6, 16, 16, 3, 3)
    kernel = source()["w"]
    for t in range(6):
        m, k = divmod(t, 2)
        assert torch.equal(kernel[16 * m : 16 * (m + 1), 16 * k : 16 * (k + 1)], tiles[t])
