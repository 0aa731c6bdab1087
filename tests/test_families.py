"""The shipped families are ordinary modules that declare which weights a hypernetwork generates
(``default_include``), every hypernetwork variant is ``wrap(family, source)``, and the source is
one argument everywhere: ``Hyper``'s defaults live in ``Hyper`` alone, the named classes take
``source=``, and every sweep addresses a source's knob by the one path ``...source.init_args.X``."""

import fnmatch
from pathlib import Path

import pytest
import torch
import yaml

from hyper import Hyper, LowRank, count_parameters, wrap
from hyper.training.checkpoints import network_from_checkpoint
from models import BLOCK_CONVS, CharTransformer, HyperCharTransformer, HyperResNet, LSTMStack, StaticHyperLSTM, WideResNet, create_model
from models.lstm import LNLSTM, LSTM_MATRICES
from models.transformer import BLOCK_MATRICES

SWEEPS = sorted((Path(__file__).resolve().parents[1] / "configs" / "sweeps").glob("*.yaml"))
# every knob of the registered sources (hyper.SOURCES) a sweep might vary
SOURCE_KNOBS = {"embedding_dim", "hidden_dim", "tile_channels", "tying_groups", "rank", "num_templates", "coefficients", "sharing"}

TRANSFORMER = dict(vocab_size=20, num_layers=2, num_heads=2, embed_dim=32, context=16)
STACK = dict(input_size=16, hidden_size=32, num_layers=2)


def generated_names(model) -> list[str]:
    return [layer.name for layer in model.layers]


@pytest.mark.parametrize(
    "family, declared",
    [
        (lambda: WideResNet(depth=10, width=1), BLOCK_CONVS),
        (lambda: CharTransformer(**TRANSFORMER), BLOCK_MATRICES),
        (lambda: LNLSTM(**STACK), LSTM_MATRICES),
    ],
    ids=["wide_resnet", "char_transformer", "ln_lstm"],
)
def test_wrap_generates_what_the_family_declares_and_an_include_overrides_it(family, declared) -> None:
    names = generated_names(wrap(family(), LowRank(rank=2)))
    weights = [name for name, p in family().named_parameters() if p.dim() >= 2]
    assert names == [name for name in weights if any(fnmatch.fnmatchcase(name, glob) for glob in declared)]
    assert names  # the declaration selects something
    first = names[0]
    assert generated_names(wrap(family(), LowRank(rank=2), include=first)) == [first]


def test_the_paper_models_are_wrap_of_the_plain_family_with_hyper() -> None:
    for depth_width, counts in {(40, 1): (97_770, 563_930), (40, 2): (155_626, 2_243_546)}.items():
        depth, width = depth_width
        wrapped = wrap(WideResNet(depth=depth, width=width), Hyper())
        assert count_parameters(wrapped).trainable == counts[0] == count_parameters(create_model(f"hyper_wrn{depth}_{width}")).trainable
        assert count_parameters(WideResNet(depth=depth, width=width)).trainable == counts[1]


@pytest.mark.parametrize(
    "named, family",
    [
        (lambda **kw: HyperResNet(depth=10, in_channels=1, **kw), lambda: WideResNet(depth=10, in_channels=1)),
        (lambda **kw: HyperCharTransformer(**TRANSFORMER, **kw), lambda: CharTransformer(**TRANSFORMER)),
        (lambda **kw: StaticHyperLSTM(**STACK, **kw), lambda: LNLSTM(**STACK)),
    ],
    ids=["HyperResNet", "HyperCharTransformer", "StaticHyperLSTM"],
)
def test_a_named_class_is_wrap_with_one_source_argument(named, family) -> None:
    torch.manual_seed(0)
    default = named()  # Hyper's own defaults, restated nowhere
    assert count_parameters(default).trainable == count_parameters(wrap(family(), Hyper())).trainable
    assert generated_names(default) == generated_names(wrap(family(), Hyper()))

    # older configs and checkpoints name Hyper's knobs on the class: the same network as source=
    by_knobs, by_source = named(embedding_dim=8, hidden_dim=16), named(source=Hyper(embedding_dim=8, hidden_dim=16))
    assert by_source.load_state_dict(by_knobs.state_dict()).missing_keys == []
    assert count_parameters(by_knobs).trainable == count_parameters(by_source).trainable

    # any source, by the same argument
    assert type(named(source=LowRank(rank=2)).spec) is LowRank

    with pytest.raises(ValueError, match=r"^embedding_dim: a knob of the source, set it inside source= "):
        named(source=Hyper(), embedding_dim=8)


def test_a_checkpoint_that_names_hypers_knobs_on_the_class_still_loads() -> None:
    # what train.py saved before source= existed: HyperResNet's init_args hold Hyper's knobs
    old = {"class_path": "models.HyperResNet",
           "init_args": {"depth": 10, "width": 1, "num_classes": 10, "in_channels": 1, "dropout": 0.0,
                         "embedding_dim": 16, "hidden_dim": 16, "tile_channels": 16, "tying_groups": None}}
    torch.manual_seed(0)
    trained = HyperResNet(depth=10, in_channels=1, embedding_dim=16, hidden_dim=16)
    checkpoint = {"hyper_parameters": {"network": old}, "state_dict": {f"network.{k}": v for k, v in trained.state_dict().items()}}
    network = network_from_checkpoint(checkpoint, source="an old checkpoint")
    x = torch.randn(2, 1, 8, 8)
    trained.eval(), network.eval()
    torch.testing.assert_close(network(x), trained(x))


def keys(node):
    """Every dotted key a sweep file's ``set`` and ``vary`` mappings address."""
    for method in node.get("methods", []):
        for part in ("set", "vary"):
            yield from method.get(part, {})


@pytest.mark.parametrize("path", SWEEPS, ids=lambda path: path.stem)
def test_every_sweep_addresses_a_sources_knob_by_the_one_path(path: Path) -> None:
    sweep = yaml.safe_load(path.read_text())
    for key in [*keys(sweep), *sweep.get("overrides", {})]:
        # a network's knob (a model's, or a callback's network: CompressInto), not a callback's own (SVD's rank)
        if key.rsplit(".", 1)[-1] in SOURCE_KNOBS and ".network" in f".{key}":
            assert ".source.init_args." in key, f"{path.name}: {key} names a source's knob outside source.init_args"


def test_an_lstm_stack_with_hyper_is_the_static_hyper_lstm() -> None:
    torch.manual_seed(0)
    stack = LSTMStack(**STACK, source=Hyper(embedding_dim=4))
    torch.manual_seed(0)
    static = StaticHyperLSTM(**STACK, embedding_dim=4)
    assert generated_names(stack) == generated_names(static)
    x = torch.randn(3, 5, 16)
    torch.testing.assert_close(stack(x)[0], static(x)[0])
