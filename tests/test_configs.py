"""Every preset in configs/ parses and builds its model, data and trainer, without loading data."""

from __future__ import annotations

from pathlib import Path

import lightning as L
import pytest
import torch
import yaml

from hyper import count_parameters
from hyper.training.cli import HyperCLI

CONFIG_DIR = Path(__file__).resolve().parents[1] / "configs"
PRESETS = sorted(CONFIG_DIR.glob("*.yaml"))  # train.py configs; sweep files live in subfolders

# The paper's Table 2 parameter counts (PAPER_NOTES.md): a preset builds the paper's model.
PAPER_PARAMETERS = {
    "cifar10_wrn40_1": 563_000,
    "cifar10_wrn40_2": 2_236_000,
    "cifar10_hyper_wrn40_1": 97_000,
    "cifar10_hyper_wrn40_2": 148_000,
}


@pytest.fixture(autouse=True)
def keep_torch_threads():  # noqa: ANN201 - a preset may set `threads`: not for the other tests
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def build(path: Path, *overrides: str) -> HyperCLI:
    # run=False: parse and instantiate only; nothing is fitted, no data is set up or read.
    return HyperCLI(args=["--config", str(path), *overrides], run=False)


def tiny_corpus(path: Path, folder: Path) -> list[str]:
    """``--data.path`` to a tiny corpus for a character preset (its corpus is the user's to give,
    and its vocabulary size is read off the data when the model is built); none for others."""
    data = yaml.safe_load(path.read_text())["data"]
    if not data["class_path"].endswith("CharDataModule"):
        return []
    ptb = data.get("init_args", {}).get("format") == "ptb"
    corpus = folder / "corpus.txt"
    corpus.write_text(("t h e _ c a t\n" if ptb else "the cat ") * 100)
    return ["--data.path", str(corpus)]


def test_the_presets_are_there() -> None:
    names = {path.stem for path in PRESETS}
    assert {"default", "cifar10_fast", *PAPER_PARAMETERS} <= names


@pytest.mark.parametrize("path", PRESETS, ids=lambda path: path.stem)
def test_preset_builds_model_data_and_trainer(path: Path, tmp_path: Path) -> None:
    cli = build(path, *tiny_corpus(path, tmp_path))
    assert isinstance(cli.model, L.LightningModule)
    assert isinstance(cli.datamodule, L.LightningDataModule)
    assert isinstance(cli.trainer, L.Trainer)
    assert cli.config["seed_everything"] is not True, "a preset fixes its seed"
    if path.stem in PAPER_PARAMETERS:
        trainable = count_parameters(cli.model.network).trainable
        assert trainable == pytest.approx(PAPER_PARAMETERS[path.stem], rel=0.06)


def test_default_is_a_small_hyper_network_on_the_digits() -> None:
    cli = build(CONFIG_DIR / "default.yaml")
    counts = count_parameters(cli.model.network)
    assert type(cli.datamodule).__name__ == "DigitsDataModule"
    assert cli.model.network.spec.name == "hyper"
    # The README's figures: 12,266 trainable parameters for a 174,778-parameter plain network.
    assert (counts.trainable, counts.plain_equivalent, f"{counts.compression_ratio:.2f}") == (12_266, 174_778, "14.25")
    assert counts.compression_ratio == pytest.approx(174_778 / 12_266, rel=1e-12)
    assert cli.model.kernel_l2 > 0


def test_paper_recipes() -> None:
    hyper = build(CONFIG_DIR / "cifar10_hyper_wrn40_2.yaml")
    assert hyper.model.kernel_l2 == 0.0005
    assert hyper.config["model"]["init_args"]["optimizer"]["class_path"] == "torch.optim.Adam"
    plain = build(CONFIG_DIR / "cifar10_wrn40_2.yaml").config["model"]["init_args"]
    assert plain["optimizer"]["class_path"] == "torch.optim.SGD"
    sgd = plain["optimizer"]["init_args"]
    assert sgd["nesterov"] and sgd["momentum"] == 0.9 and sgd["weight_decay"] == 5e-4
    for cli in (hyper, build(CONFIG_DIR / "cifar10_wrn40_1.yaml")):
        data = cli.datamodule
        assert (data.batch_size, data.val_size, cli.trainer.max_epochs) == (128, 5000, 200)


# Image sweeps (the character-LM sweeps have their own tests: tests/test_lm_sweeps.py)
SWEEPS = sorted(path for path in (CONFIG_DIR / "sweeps").glob("*.yaml") if "metric: test_acc" in path.read_text())


@pytest.mark.parametrize("path", SWEEPS, ids=lambda path: path.stem)
def test_every_sweep_method_builds(path: Path) -> None:
    from hyper.sweeps import load_sweep

    points = load_sweep(path).points()
    first_of_each_method = {point.method: point for point in reversed(points)}.values()
    sources = set()
    for point in first_of_each_method:  # one build per method: WRN-40-2 builds are not free
        cli = HyperCLI(args=point.config, run=False)
        network = cli.model.network
        sources.add(getattr(getattr(network, "spec", None), "name", "plain"))
        if point.method == "pruned":
            assert any(type(c).__name__ == "MagnitudePruning" for c in cli.trainer.callbacks)
    if not path.stem.endswith("_post_training"):  # a curve's sweep; those compare routes into one hypernetwork
        assert {"hyper", "plain", "tied", "lowrank", "templates"} <= sources


def test_digits_sweep_covers_the_issue() -> None:
    from hyper.sweeps import load_sweep

    points = load_sweep(CONFIG_DIR / "sweeps" / "digits.yaml").points()
    sizes = [p.knobs["embedding_dim"] for p in points if p.method == "hyper"]
    assert len(sizes) >= 5
    for method in ("lowrank", "templates", "pruned"):
        assert 2 <= sum(p.method == method for p in points) <= 3


def test_compression_sweep_covers_every_method() -> None:
    from hyper.sweeps import load_sweep

    sweep = load_sweep(CONFIG_DIR / "sweeps" / "digits_compression.yaml")
    points = sweep.points()
    assert sweep.seeds == [0, 1, 2]
    methods = {p.method for p in points}
    assert {"plain", "hyper", "dct", "small", "small distilled", "hyper distilled", "into hyper", "svd",
            "channels", "pruned", "lottery", "ptq", "qat", "hyper ptq", "hyper qat"} <= methods
    callbacks = {c["class_path"].rsplit(".", 1)[-1] for p in points for c in p.config["trainer"].get("callbacks", [])}
    assert {"CompressInto", "LowRankFactorization", "ChannelDropping", "LotteryTicket",
            "PostTrainingQuantization", "QuantizationAwareTraining", "MagnitudePruning"} <= callbacks
    rounds = sorted(p.knobs["rounds"] for p in points if p.method == "lottery" and p.seed == 0)
    assert rounds == [1, 2, 3, 4]  # each round a point on the curve
