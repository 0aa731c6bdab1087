"""The WRN family over every factory preset, and the exact parameter counts of the paper's models."""

import functools

import pytest
import torch

from hyper import GeneratedNetwork, count_parameters
from models import MODELS, HyperResNet, create_model, list_models, wide_resnet

# Cheap presets: every family member is checked without building WRN-28-10 dozens of times.
SMALL = [name for name in list_models() if name.split("_", 1)[-1] in {"wrn10_1", "wrn16_1", "wrn16_2"}]


@pytest.mark.parametrize("name", SMALL)
def test_output_shape(name):
    model = create_model(name, num_classes=7, in_channels=1)
    y = model(torch.randn(2, 1, 12, 12))
    assert y.shape == (2, 7)


@functools.cache
def plain_size(arch):
    return sum(p.numel() for p in create_model(arch).parameters())


@pytest.mark.parametrize("name", list_models())
def test_every_preset_builds_and_counts(name):
    model = create_model(name)
    count = count_parameters(model)
    assert isinstance(model, GeneratedNetwork) == name.startswith(("hyper_", "tied_"))
    assert count.trainable == sum(p.numel() for p in model.parameters()) == sum(count.breakdown.values())
    # plain-equivalent: the size of the plain network of the same architecture
    assert count.plain_equivalent == plain_size(name.removeprefix("hyper_").removeprefix("tied_"))


def test_plain_equivalent_is_the_plain_model():
    for arch in ("wrn16_1", "wrn16_2"):
        plain = count_parameters(create_model(arch)).trainable
        assert count_parameters(create_model(f"hyper_{arch}")).plain_equivalent == plain
        assert count_parameters(create_model(f"tied_{arch}")).plain_equivalent == plain


# Hand counts (issue #2): bias-free stem and shortcuts, affine BN (two per block + final),
# linear classifier with bias; N_z = d = 64, tile 16. Ratios as the README's table prints them.
@pytest.mark.parametrize(
    "name, trainable, plain, ratio, breakdown",
    [
        ("hyper_wrn40_1", 97_770, 563_930, "5.77", {"embeddings": 242 * 64, "generator": 75_920, "not generated": 6_362}),
        ("hyper_wrn40_2", 155_626, 2_243_546, "14.42", {"embeddings": 966 * 64, "generator": 75_920, "not generated": 17_882}),
        ("wrn40_1", 563_930, 563_930, "1.00", None),
        ("wrn40_2", 2_243_546, 2_243_546, "1.00", None),
    ],
)
def test_paper_model_counts(name, trainable, plain, ratio, breakdown):
    count = count_parameters(create_model(name))
    assert (count.trainable, count.plain_equivalent, f"{count.compression_ratio:.2f}") == (trainable, plain, ratio)
    assert count.compression_ratio == pytest.approx(plain / trainable, rel=1e-12)
    if breakdown:
        assert count.breakdown == breakdown


def test_a_fractional_width_narrows_the_plain_network():
    model = create_model("wrn10_1", width=0.5)  # stages of 8, 16, 32 channels
    assert [stage[0].conv1.out_channels for stage in model.stages] == [8, 16, 32]
    assert model(torch.randn(2, 3, 8, 8)).shape == (2, 10)
    with pytest.raises(ValueError, match="tile_channels=16 must divide"):  # 8 channels are not whole tiles
        create_model("hyper_wrn10_1", width=0.5)


def test_the_generator_outweighs_a_small_target():
    # README: the generator alone (75,920) outweighs a plain WRN-10-1, so hyper WRN-10-1 is larger.
    count = count_parameters(create_model("hyper_wrn10_1"))
    assert count.breakdown["generator"] == 75_920 and count.compression_ratio < 1


def test_generator_count_formula():
    # N_z·D + d(N_z+1)·N_in + f·N_out·f·(d+1), for other knob values too.
    nz, d = 8, 32
    model = HyperResNet(depth=10, width=1, embedding_dim=nz, hidden_dim=d)
    parts = count_parameters(model).breakdown
    tiles = sum((l.shape[0] // 16) * (l.shape[1] // 16) for l in model.layers)
    assert parts["embeddings"] == nz * tiles
    assert parts["generator"] == d * (nz + 1) * 16 + 3 * 16 * 3 * (d + 1)


def test_gradients_reach_embeddings_and_generator():
    model = HyperResNet(depth=10, width=1, num_classes=3, in_channels=1)
    model(torch.randn(2, 1, 8, 8)).sum().backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_hyper_model_owns_no_copy_of_generated_weights():
    model = create_model("hyper_wrn10_1")
    names = {n for n, _ in model.target.named_parameters()}
    assert not names & {layer.name for layer in model.layers}


def test_source_by_name():
    assert create_model("wrn10_1", source="hyper").spec.name == "hyper"


@pytest.mark.parametrize(
    "kwargs, words",
    [
        (dict(depth=12), ["depth", "6n + 4"]),
        (dict(depth=40, width=0), ["width"]),
        (dict(num_classes=0), ["num_classes"]),
        (dict(embedding_dim=0), ["embedding_dim", "positive"]),
        (dict(hidden_dim=-3), ["hidden_dim"]),
        (dict(tile_channels=32), ["tile_channels", "divide"]),
        (dict(tying_groups=0), ["tying_groups", "positive"]),
    ],
)
def test_bad_arguments_name_themselves(kwargs, words):
    with pytest.raises(ValueError) as error:
        HyperResNet(**kwargs)
    for word in words:
        assert word in str(error.value)


def test_unknown_names():
    with pytest.raises(ValueError, match=r"source must be one of \['dct', 'hyper', 'lowrank', 'plain', 'templates', 'tied'"):
        wide_resnet(source="lowrnk")
    with pytest.raises(ValueError, match="model must be one of"):
        create_model("resnet50")
    assert set(MODELS) == set(list_models())
