"""``hyper.wrap`` on modules the project did not write: every source × a set of targets.

Targets: the WRN, a ResNet-18-style net (7×7 stem, 1×1 downsample), an MLP and the character
transformer. Sources: the registry (``hyper.SOURCES``), so a new source is tested here for free.
"""

import math

import pytest
import torch
from torch import nn

from hyper import (
    SOURCES, GeneratedLayer, GeneratedNetwork, Hyper, LowRank, Tied, TileGenerator, count_parameters, materialize,
    source_from_name, wrap,
)
from hyper.structure import default_place
from models import CharTransformer, WideResNet
from targets import ResNet18Style, mlp

pytestmark = pytest.mark.usefixtures("one_thread")

# Small knobs, so that every source fits every target's smallest generated weight.
KNOBS = {"hyper": dict(embedding_dim=4, hidden_dim=8), "lowrank": dict(rank=2), "templates": dict(num_templates=2)}

TARGETS = {
    "wrn": (lambda: WideResNet(depth=10, width=1, num_classes=5), lambda: torch.randn(2, 3, 8, 8)),
    "resnet18": (ResNet18Style, lambda: torch.randn(2, 3, 16, 16)),
    "mlp": (mlp, lambda: torch.randn(3, 32)),
    "transformer": (
        lambda: CharTransformer(vocab_size=20, num_layers=2, num_heads=2, embed_dim=32, context=16),
        lambda: torch.randint(0, 20, (2, 8)),
    ),
}


def spec(name):
    return SOURCES[name](**KNOBS.get(name, {}))


def output(model, x):
    y = model(x)
    return y[0] if isinstance(y, tuple) else y  # the transformer returns (logits, state)


def build(target_name, source_name, **kwargs):
    torch.manual_seed(0)
    make, inputs = TARGETS[target_name]
    target = make()
    plain_count = sum(p.numel() for p in target.parameters())
    return wrap(target, spec(source_name), **kwargs), inputs(), plain_count


grid = pytest.mark.parametrize("target_name", list(TARGETS))
sources = pytest.mark.parametrize("source_name", sorted(SOURCES))


@grid
@sources
def test_shapes_match_the_plain_module(target_name, source_name):
    model, x, _ = build(target_name, source_name)
    torch.manual_seed(0)
    plain = TARGETS[target_name][0]()
    assert output(model, x).shape == output(plain, x).shape


@grid
@sources
def test_gradients_reach_every_parameter(target_name, source_name):
    model, x, _ = build(target_name, source_name)
    output(model, x).square().mean().backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name
    if source_name != "plain":
        assert any(True for _ in model.source.parameters())


@grid
@sources
def test_materialize_gives_the_users_class_with_the_same_outputs(target_name, source_name):
    model, x, _ = build(target_name, source_name)
    with torch.no_grad():  # move batch-norm statistics off their defaults: the copy must carry them
        for _ in range(2):
            output(model.train(), x)
    model.eval()
    plain = materialize(model).eval()
    assert type(plain) is type(model.target)
    assert not any(isinstance(m, (GeneratedNetwork, TileGenerator)) for m in plain.modules())
    expected, got = output(model, x), output(plain, x)
    assert (got - expected).abs().max() / expected.abs().max() <= 1e-5


@grid
@sources
def test_accounting_adds_up(target_name, source_name):
    model, _, plain_count = build(target_name, source_name)
    count = count_parameters(model)
    assert count.trainable == sum(p.numel() for p in model.parameters())
    assert sum(count.breakdown.values()) == count.trainable
    assert count.plain_equivalent == plain_count
    generated = {layer.name for layer in model.layers}
    rest = sum(p.numel() for n, p in model.target.named_parameters() if n not in generated)
    assert count.breakdown["not generated"] == rest
    if source_name == "plain":  # nothing generated: the selected weights stay direct
        assert count.breakdown["direct weights"] == sum(layer.numel for layer in model.layers)
        assert count.trainable == plain_count and count.compression_ratio == 1
    else:
        assert {k: v for k, v in count.breakdown.items() if k != "not generated"} == model.source.parameter_parts()


@pytest.mark.parametrize(
    "name, place",
    [
        ("layer2.1.conv1.weight", ("layer2", 1, "conv1.weight")),
        ("blocks.7.mlp.fc1.weight", ("blocks", 7, "mlp.fc1.weight")),
        ("stages.2.0.conv1.weight", ("stages.2", 0, "conv1.weight")),
        ("layer2.0.downsample.0.weight", ("layer2.0.downsample", 0, "weight")),
        ("fc.weight", ("fc.weight", 0, "weight")),
    ],
)
def test_stage_block_and_role_from_names(name, place):
    assert default_place(name) == place


def test_structure_as_a_regex_or_a_callable():
    def places(structure):
        model = wrap(ResNet18Style(), Hyper(embedding_dim=4), structure=structure)
        return {layer.name: (layer.stage, layer.block, layer.role) for layer in model.layers}

    # Without a role group the role is what follows the match.
    first_index = places(r"(?P<stage>layer\d+)\.(?P<block>\d+)\.")
    assert first_index["layer2.1.conv2.weight"] == ("layer2", 1, "conv2.weight")
    assert first_index["layer2.0.downsample.0.weight"] == ("layer2", 0, "downsample.0.weight")
    with_role = places(r"(?P<stage>layer\d+)\.(?P<block>\d+)\.(?P<role>conv\d)")
    assert with_role["layer2.1.conv2.weight"] == ("layer2", 1, "conv2")
    assert with_role["layer2.0.downsample.0.weight"][0] == "layer2.0.downsample.0.weight"  # no match: own stage
    one_stage = wrap(mlp(), Tied(), structure=lambda name: ("all", int(name.split(".")[0]), "linear"))
    w = one_stage.generated_weights()
    assert w["2.weight"].shape == (64, 64) and w["0.weight"].shape == (64, 32)  # shapes differ: no sharing


@pytest.mark.parametrize("source", [Hyper(embedding_dim=4, tying_groups=1), Tied(tying_groups=1), LowRank(rank=2, tying_groups=1)])
def test_fully_tied_resnet18_shares_kernels_across_the_blocks_of_a_stage(source):
    w = wrap(ResNet18Style(), source).generated_weights()
    assert torch.equal(w["layer1.0.conv1.weight"], w["layer1.1.conv1.weight"])
    assert torch.equal(w["layer1.0.conv2.weight"], w["layer1.1.conv2.weight"])
    assert torch.equal(w["layer2.0.conv2.weight"], w["layer2.1.conv2.weight"])
    assert not torch.equal(w["layer1.0.conv1.weight"], w["layer1.0.conv2.weight"])  # roles never share
    assert w["layer2.0.conv1.weight"].shape != w["layer2.1.conv1.weight"].shape  # stage entry keeps its own
    untied = wrap(ResNet18Style(), Hyper(embedding_dim=4)).generated_weights()
    assert not torch.allclose(untied["layer1.0.conv1.weight"], untied["layer1.1.conv1.weight"])


@pytest.mark.parametrize("pad, kernel_sizes", [(False, {"3x3", "1x1"}), (True, {"7x7", "3x3", "1x1", "matrix"})])
def test_one_generator_call_per_kernel_size(pad, kernel_sizes):
    model = wrap(ResNet18Style(), Hyper(embedding_dim=4), pad=pad)
    assert set(model.source.tables) == kernel_sizes
    calls = count_generator_calls(model)
    model(torch.randn(1, 3, 16, 16))
    assert len(calls) == len(kernel_sizes)


def count_generator_calls(model) -> list:
    """A list that grows by one whenever a generator is called."""
    calls = []
    for table in model.source.tables.values():
        table.generator.register_forward_hook(lambda *args: calls.append(1))
    return calls


def test_pad_crops_the_tiles_to_the_shape():
    layer = nn.Linear(20, 10)  # (10, 20): 1 × 2 tiles of 16 × 16, cropped
    model = wrap(nn.Sequential(layer), Hyper(embedding_dim=4, hidden_dim=8), pad=True)
    tiles = model.source.tables["matrix"].generator(model.source.tables["matrix"].embeddings)  # (2, 16, 16)
    weight = model.generated_weights()["0.weight"]
    assert weight.shape == (10, 20)
    assert torch.equal(weight, torch.cat([tiles[0], tiles[1]], dim=1)[:10, :20])
    assert count_parameters(model).breakdown["embeddings"] == 2 * 4  # what is stored: whole tiles
    assert count_parameters(model).plain_equivalent == 10 * 20 + 10


def test_default_selection_leaves_what_the_tile_does_not_divide_direct():
    model = wrap(ResNet18Style(), Hyper(embedding_dim=4))
    names = {layer.name for layer in model.layers}
    assert "conv1.weight" not in names and "fc.weight" not in names  # 3 in-channels, 5 outputs
    assert {"layer1.0.conv1.weight", "layer2.0.downsample.0.weight"} <= names
    assert {n for n, _ in model.target.named_parameters()} >= {"conv1.weight", "fc.weight"}
    only = wrap(ResNet18Style(), Hyper(embedding_dim=4), include=nn.Conv2d, exclude=["conv1.weight", "*downsample*"])
    block_convs = {f"layer{s}.{b}.conv{c}.weight" for s in (1, 2) for b in (0, 1) for c in (1, 2)}
    assert {layer.name for layer in only.layers} == block_convs


def shared_mlp():
    """An MLP whose first two layers hold one weight tensor under two names (``0.weight``, ``2.weight``)."""
    target = nn.Sequential(nn.Linear(32, 32), nn.ReLU(), nn.Linear(32, 32), nn.ReLU(), nn.Linear(32, 16))
    target[2].weight = target[0].weight
    return target


@pytest.mark.parametrize("include", [None, "*.weight", nn.Linear, lambda name, p: True])
def test_a_weight_shared_under_two_names_is_never_generated(include):
    model = wrap(shared_mlp(), Tied(), include=include)
    assert [layer.name for layer in model.layers] == ["4.weight"]
    assert model.target[0].weight is model.target[2].weight  # still the module's own, used twice
    assert count_parameters(model).trainable == 32 * 32 + 2 * 32 + (16 * 32 + 16)  # the shared one once


def test_include_by_type_glob_and_predicate():
    by_type = wrap(mlp(), LowRank(rank=2), include=nn.Linear)
    by_glob = wrap(mlp(), LowRank(rank=2), include=["0.*", "4.weight"])
    by_predicate = wrap(mlp(), LowRank(rank=2), include=lambda name, p: p.shape[0] == 64)
    assert [l.name for l in by_type.layers] == ["0.weight", "2.weight", "4.weight"]
    assert [l.name for l in by_glob.layers] == ["0.weight", "4.weight"]  # globs skip biases (1 axis)
    assert [l.name for l in by_predicate.layers] == ["0.weight", "2.weight"]


def test_gains_and_initial_variance_per_layer():
    torch.manual_seed(0)
    model = wrap(ResNet18Style(widths=(32, 64)), Hyper(embedding_dim=16), pad=True)
    weights = model.generated_weights()
    for layer in model.layers:
        assert layer.gain == (math.sqrt(2) if layer.name != "fc.weight" else 1.0), layer.name
        ratio = weights[layer.name].var().item() / layer.init_std**2
        assert 0.7 < ratio < 1.3, (layer.name, ratio)
    tanh = wrap(mlp(), Hyper(embedding_dim=4), gain="tanh")
    assert all(layer.gain == pytest.approx(5 / 3) for layer in tanh.layers)
    custom = wrap(mlp(), Tied(), gain=lambda name: 2.0 if name == "0.weight" else 0.5)
    assert [layer.gain for layer in custom.layers] == [2.0, 0.5, 0.5]


def test_the_users_module_is_used_not_copied():
    target = ResNet18Style()
    model = wrap(target, Hyper(embedding_dim=4))
    assert model.target is target and model.fc is target.fc  # attributes fall through to the target
    assert "layer1.0.conv1.weight" not in dict(target.named_parameters())
    with torch.no_grad():
        plain = materialize(model)
    assert "layer1.0.conv1.weight" in dict(plain.named_parameters())
    assert "layer1.0.conv1.weight" not in dict(target.named_parameters())  # materialize copies


class TwoBranches(nn.Module):
    def __init__(self):
        super().__init__()
        self.left = wrap(mlp(), Hyper(embedding_dim=4))
        self.right = wrap(mlp(), Hyper(embedding_dim=8))

    def forward(self, x):
        return self.left(x) + self.right(x)


def test_two_generated_networks_in_one_module_are_summed_and_baked():
    model = TwoBranches()
    count = count_parameters(model)
    left, right = count_parameters(model.left), count_parameters(model.right)
    for part in ("embeddings", "generator", "not generated"):
        assert count.breakdown[part] == left.breakdown[part] + right.breakdown[part]
    assert count.plain_equivalent == left.plain_equivalent + right.plain_equivalent
    x = torch.randn(2, 32)
    plain = materialize(model)
    assert type(plain) is TwoBranches and type(plain.left) is nn.Sequential
    assert torch.allclose(plain(x), model(x), atol=1e-6)


@pytest.mark.parametrize(
    "make, words",
    [
        (lambda: wrap(mlp(), Hyper(), include="layer*"), ["include matches no weight", "Sequential", "0.weight"]),
        (lambda: wrap(mlp(), Hyper(), exclude="*.conv*"), ["exclude matches no weight"]),
        (lambda: wrap(mlp(), Hyper(), include=[nn.Linear, 3]), ["include takes", "3"]),
        (lambda: wrap(mlp(), Hyper(), include=int), ["include types must be nn.Module classes"]),
        (lambda: wrap(ResNet18Style(), Hyper(), structure=r"(?P<stage>layer\d)\.(?P<b>\d)"), ["structure", "(?P<block>", "['block']"]),
        (lambda: wrap(ResNet18Style(), Hyper(), structure="(unclosed"), ["structure must be a valid regular expression"]),
        (lambda: wrap(ResNet18Style(), Hyper(), structure=lambda n: (n, "0", "w")), ["structure must return", "(stage: str, block: int, role: str)"]),
        (lambda: wrap(nn.Sequential(nn.Linear(10, 7)), Hyper()), ["tile_channels=16 divides", "none", "pad=True"]),
        (lambda: wrap(ResNet18Style(), Hyper(), include=nn.Conv2d), ["tile_channels=16 must divide", "conv1.weight", "pad=True"]),
        (lambda: wrap(mlp(), Hyper(), gain="sigmoidish"), ["gain must be", "relu"]),
        (lambda: wrap(mlp(), Hyper(), gain=-1.0), ["gain must be a positive number"]),
        (lambda: wrap(mlp(), Tied(), gain=lambda name: 0), ["gain must be a positive number", "0.weight"]),
        (lambda: wrap("mlp", Hyper()), ["target must be an nn.Module"]),
        (lambda: wrap(mlp(), "hyper"), ["source must be a SourceSpec"]),
        (lambda: wrap(mlp(), LowRank(rank=40)), ["rank must be at most 10", "4.weight"]),
    ],
)
def test_bad_arguments_name_themselves(make, words):
    with pytest.raises(ValueError) as error:
        make()
    for word in words:
        assert word in str(error.value), (word, str(error.value))


class TiedLM(nn.Module):
    """A language model whose output head holds its input embedding's weight (``lm_head.weight``
    is ``wte.weight``)."""

    def __init__(self):
        super().__init__()
        self.wte = nn.Embedding(32, 16)
        self.h = nn.Linear(16, 16)
        self.lm_head = nn.Linear(16, 32, bias=False)
        self.lm_head.weight = self.wte.weight


def empty_and_full():
    return nn.Sequential(nn.Linear(0, 16), nn.Linear(16, 16))  # 0.weight has shape (16, 0)


BAD_ARGUMENTS = [
    # a selection that generates nothing is refused, with the reason
    ("nothing in ReLU", lambda: wrap(nn.ReLU(), Hyper()), ValueError, ["nothing selected to generate in ReLU", "no conv, linear, recurrent or attention weight"]),
    ("nothing in empty Sequential", lambda: wrap(nn.Sequential(), Hyper()), ValueError, ["nothing selected to generate in Sequential"]),
    ("no conv or linear", lambda: wrap(nn.Embedding(32, 16), Hyper()), ValueError, ["nothing selected", "include=", "weight"]),
    ("exclude everything", lambda: wrap(mlp(), Hyper(), exclude="*"), ValueError, ["nothing selected", "exclude='*' leaves out every", "0.weight"]),
    ("only an empty weight", lambda: wrap(nn.Sequential(nn.Linear(0, 16)), Hyper(), pad=True), ValueError, ["nothing selected", "no entries", "0.weight (16, 0)"]),
    # wrapping twice
    ("wrap a wrapped", lambda: wrap(wrap(mlp(), Hyper(embedding_dim=4)), Hyper()), ValueError, ["target is already wrapped", "materialize"]),
    ("wrap a module holding a wrapped", lambda: wrap(nn.Sequential(wrap(mlp(), Tied()), nn.Linear(10, 16)), Tied()), ValueError, ["holds a wrapped module at '0'"]),
    # empty weights, named
    ("include an empty weight by type", lambda: wrap(empty_and_full(), Hyper(), include=nn.Linear, pad=True), ValueError, ["include selects 0.weight of shape (16, 0)", "no entries"]),
    ("include an empty weight by glob", lambda: wrap(empty_and_full(), Tied(), include="*.weight"), ValueError, ["0.weight", "no entries"]),
    # tied (shared) weights, named
    ("include a tied weight", lambda: wrap(TiedLM(), Hyper(), include="lm_head.weight"), ValueError, ["lm_head.weight", "shared with wte.weight", "never generated"]),
    ("include a tied weight in a list", lambda: wrap(TiedLM(), Hyper(), include=["h.weight", "lm_head.weight"]), ValueError, ["shared with wte.weight"]),
    ("exclude a tied weight", lambda: wrap(TiedLM(), Hyper(), exclude="lm_head.weight"), ValueError, ["shared with wte.weight", "nothing to exclude"]),
    # other arguments that were accepted or gave a raw error
    ("pad not a bool", lambda: wrap(mlp(), Hyper(), pad="yes"), ValueError, ["pad must be True or False", "'yes'"]),
    ("include an int", lambda: wrap(mlp(), Hyper(), include=5), ValueError, ["include takes module types", "got 5"]),
    ("include a module instance", lambda: wrap(mlp(), Hyper(), include=nn.Linear(2, 2)), ValueError, ["include takes module types, not modules", "Linear"]),
    ("include predicate of one argument", lambda: wrap(mlp(), Hyper(), include=lambda name: True), ValueError, ["include predicates are called as (name, parameter)"]),
    ("gain callable of no argument", lambda: wrap(mlp(), Tied(), gain=lambda: 1.0), ValueError, ["gain callables are called as gain(name)"]),
    ("gain inf", lambda: wrap(mlp(), Tied(), gain=math.inf), ValueError, ["gain must be a positive number", "inf"]),
    ("lazy module", lambda: wrap(nn.Sequential(nn.LazyLinear(16)), Hyper()), ValueError, ["0.weight", "lazy", "run one batch"]),
    ("GeneratedLayer with no entries", lambda: GeneratedLayer("w", (16, 0), "w", 0, "w"), ValueError, ["needs entries", "(16, 0)"]),
    ("count a string", lambda: count_parameters("hello"), TypeError, ["model must be an nn.Module", "'hello'"]),
    ("count a class", lambda: count_parameters(nn.Linear), TypeError, ["model must be an nn.Module", "the class Linear"]),
    ("count None nonzero", lambda: count_parameters(None, nonzero=True), TypeError, ["model must be an nn.Module", "None"]),
    ("materialize None", lambda: materialize(None), TypeError, ["model must be an nn.Module", "got None"]),
    ("unknown source knob", lambda: source_from_name("hyper", embeding_dim=8), TypeError, ["no knob 'embeding_dim'", "embedding_dim"]),
]


@pytest.mark.parametrize(("make", "error", "words"), [case[1:] for case in BAD_ARGUMENTS], ids=[case[0] for case in BAD_ARGUMENTS])
def test_bad_arguments_are_refused_not_ignored(make, error, words):
    with pytest.raises(error) as raised:
        make()
    for word in words:
        assert word in str(raised.value), (word, str(raised.value))


def test_default_selection_skips_a_weight_with_no_entries():
    model = wrap(empty_and_full(), Hyper(embedding_dim=4), pad=True)
    assert [layer.name for layer in model.layers] == ["1.weight"]
    assert count_parameters(model).plain_equivalent == 16 + (16 * 16 + 16)
