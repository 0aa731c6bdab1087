"""Post-training structure changes: truncated SVD of trained layers, and removal of dead units."""

import pytest
import torch
from torch import nn

from hyper import count_parameters
from hyper.compression.channels import dead_units, group_lasso, remove_units, unit_groups, unit_norms, effective_weights
from hyper.compression.factorize import factorize, factorize_layer
from models import HyperResNet, create_model


@pytest.mark.parametrize(
    "layer, x",
    [
        (nn.Conv2d(3, 5, 3, stride=2, padding=1, bias=True), torch.randn(2, 3, 9, 9)),
        (nn.Conv2d(8, 4, 1, bias=False), torch.randn(2, 8, 4, 4)),
        (nn.Linear(6, 10), torch.randn(3, 6)),
    ],
)
def test_svd_at_full_rank_reproduces_the_layer(layer, x):
    full = min(layer.weight.shape[0], layer.weight[0].numel())
    pair = factorize_layer(layer, full)
    assert torch.allclose(pair(x), layer(x), atol=1e-5)
    assert pair[0].weight.shape[0] == full
    truncated = factorize_layer(layer, 1)
    assert not torch.allclose(truncated(x), layer(x), atol=1e-3)  # rank 1 loses something
    with pytest.raises(ValueError, match=rf"rank must be an integer in \[1, {full}\] \(the layer's full rank\), got {full + 1}"):
        factorize_layer(layer, full + 1)


def factorised_count(model: nn.Module, rank: int) -> int:
    """Parameters after factorising at ``rank``, by hand: a conv or linear weight of out × fan
    (fan = in·f·f) becomes a pair of r·(out + fan) weights when that is fewer; the rest stay."""
    total = 0
    for module in model.modules():
        for name, p in module.named_parameters(recurse=False):
            if name == "weight" and p.dim() >= 2:  # a conv's or a linear's
                out, fan = p.shape[0], p[0].numel()
                total += min(rank * (out + fan), out * fan)
            else:
                total += p.numel()
    return total


def test_factorize_a_network_shrinks_the_layers_it_can():
    torch.manual_seed(0)
    model = create_model("wrn16_1").eval()
    small = factorize(model, rank=4).eval()
    assert count_parameters(small).trainable == factorised_count(model, 4)
    stem = small.stem  # 16 × (1·... 3·9 = 27): rank 4 pair 4 · (27 + 16) = 172 < 432 weights
    assert isinstance(stem, nn.Sequential) and stem[0].out_channels == 4
    x = torch.randn(2, 3, 8, 8)
    assert small(x).shape == (2, 10)
    generated = factorize(HyperResNet(depth=10, width=1, embedding_dim=4, hidden_dim=8), rank=2)
    assert not any(hasattr(m, "generator") for m in generated.modules())  # materialized first
    with pytest.raises(ValueError, match="rank must be a positive integer small enough to shrink some layer"):
        factorize(model, rank=1000)
    with pytest.raises(ValueError, match="rank"):
        factorize(model, rank=0)


def test_a_layer_at_break_even_stays_as_it_is():
    # Linear(8 -> 8) at rank 4: the pair holds 4 · (8 + 8) = 64 weights, as many as the layer's
    # 8 · 8, so it is not smaller and stays; Linear(8 -> 64): 4 · (8 + 64) = 288 < 512 is factorised.
    model = nn.Sequential(nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 64))
    small = factorize(model, rank=4)
    assert type(small[0]) is nn.Linear and isinstance(small[2], nn.Sequential)
    assert count_parameters(small).trainable == (64 + 8) + (288 + 64)
    with pytest.raises(ValueError, match="small enough to shrink some layer"):
        factorize(nn.Sequential(nn.Linear(8, 8)), rank=4)  # only a layer at break-even: nothing shrinks


def mlp():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(5, 8), nn.ReLU(), nn.Linear(8, 6), nn.BatchNorm1d(6), nn.Tanh(), nn.Linear(6, 3)).eval()


def test_units_are_found_through_channel_wise_steps_only():
    groups = unit_groups(mlp())
    assert [(g.producer, g.norms, g.consumers) for g in groups] == [("0", (), ("2",)), ("2", ("3",), ("5",))]
    wrn = unit_groups(create_model("wrn16_1"))
    # The inner channels of each block; the residual stream (stem, conv2, shortcuts) is not a unit.
    assert [g.producer for g in wrn] == [f"stages.{s}.{b}.conv1" for s in range(3) for b in range(2)]
    assert all(g.norms == (g.producer.replace("conv1", "bn2"),) for g in wrn)


def test_removal_keeps_the_remaining_units_and_shrinks_every_affected_layer():
    model = mlp()
    groups = unit_groups(model)
    with torch.no_grad():  # units 1, 4, 6 of the first hidden layer and 0, 5 of the second: dead
        model[2].weight[:, [1, 4, 6]] = 0
        model[5].weight[:, [0, 5]] = 0
        model[3].running_mean.uniform_(-1, 1)  # statistics that must be sliced, not reset
    keep = dead_units(model, groups, threshold=0.0)
    assert keep[groups[0]].tolist() == [True, True, True, True, True, True, True, True]  # rows still non-zero
    keep = {groups[0]: torch.tensor([1, 0, 1, 1, 0, 1, 0, 1], dtype=torch.bool), groups[1]: torch.tensor([0, 1, 1, 1, 1, 0], dtype=torch.bool)}
    small = remove_units(model, keep).eval()
    x = torch.randn(4, 5)
    assert torch.allclose(small(x), model(x), atol=1e-6)  # the removed units were read by nothing
    hidden, small_hidden = model[:4](x), small[:4](x)  # the kept units compute what they did
    assert torch.allclose(small_hidden, hidden[:, keep[groups[1]]], rtol=0, atol=1e-6)
    assert (small[0].out_features, small[2].in_features, small[2].out_features) == (5, 5, 4)
    assert small[3].num_features == 4 and small[3].running_mean.shape == (4,) and small[5].in_features == 4
    assert count_parameters(small).trainable < count_parameters(model).trainable


def test_a_wrn_loses_dead_channels_and_keeps_its_outputs():
    torch.manual_seed(0)
    model = create_model("wrn16_1")
    model.train()
    with torch.no_grad():
        model(torch.randn(8, 3, 8, 8))  # batch-norm statistics away from their defaults
    model.eval()
    groups = unit_groups(model)
    with torch.no_grad():
        for g in groups:  # kill every other unit: zero its group
            model.get_submodule(g.producer).weight[::2] = 0
            model.get_submodule(g.consumers[0]).weight[:, ::2] = 0
    keep = dead_units(model, groups, threshold=0.01)
    assert all(mask.tolist() == [False, True] * (len(mask) // 2) for mask in keep.values())
    small = remove_units(model, keep).eval()
    x = torch.randn(2, 3, 8, 8)
    assert torch.allclose(small(x), model(x), atol=1e-5)
    for g in groups:
        conv1, conv2 = small.get_submodule(g.producer), small.get_submodule(g.consumers[0])
        assert conv1.out_channels == conv1.weight.shape[0] == small.get_submodule(g.norms[0]).num_features == conv2.in_channels
        assert conv2.weight.shape[1] == conv1.weight.shape[0] == model.get_submodule(g.producer).out_channels // 2
    assert type(small).__name__ == "WideResNet"  # the user's own class, smaller


def test_the_penalty_by_hand_and_through_a_hypernetwork():
    model = mlp()
    groups = unit_groups(model)
    weights = effective_weights(model)
    by_hand = sum(
        torch.sqrt(model[0].weight[j].square().sum() + model[0].bias[j] ** 2 + model[2].weight[:, j].square().sum())
        for j in range(8)
    ) + sum(
        torch.sqrt(model[2].weight[j].square().sum() + model[2].bias[j] ** 2 + model[5].weight[:, j].square().sum())
        for j in range(6)
    )
    assert torch.allclose(group_lasso(model, groups), by_hand)
    assert unit_norms(weights, groups[0]).shape == (8,)
    hyper = HyperResNet(depth=10, width=1, embedding_dim=4, hidden_dim=8)
    group_lasso(hyper, unit_groups(hyper)).backward()  # generated kernels: the gradient reaches the embeddings
    assert hyper.source.tables["3x3"].embeddings.grad.abs().sum() > 0


def test_bad_threshold():
    with pytest.raises(ValueError, match=r"threshold must be in \[0, 1\)"):
        dead_units(mlp(), unit_groups(mlp()), threshold=1.5)
