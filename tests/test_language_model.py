"""CharLanguageModel: the bpc metric by hand, the vocabulary check, TBPTT state carrying and
resetting (seen by a spy), gradient clipping, the command line end to end on a tiny corpus
written here, and the character-LM presets of configs/."""

from __future__ import annotations

import json
import math
from pathlib import Path

import lightning as L
import pytest
import torch
import torch.nn.functional as F
import yaml
from torch import Tensor, nn

from hyper import count_parameters
from hyper.data import CharDataModule
from hyper.training import BitsPerCharacter, CharLanguageModel
from hyper.training.cli import HyperCLI, main
from hyper.training.checkpoints import load_checkpoint, network_from_checkpoint
from models import CharRNN, StaticHyperLSTM

CONFIG_DIR = Path(__file__).resolve().parents[1] / "configs"
LM_PRESETS = sorted(
    path for path in CONFIG_DIR.glob("*.yaml") if "CharLanguageModel" in path.read_text()
)
SHAKESPEARE = ("shakespeare_lstm", "shakespeare_ln_lstm", "shakespeare_hyper_lstm")
pytestmark = pytest.mark.usefixtures("one_thread")  # tiny tensors: one thread is faster
TEXT = "the cat sat on the mat; a rat ate the hat. " * 6  # 258 characters, 16 distinct


@pytest.fixture(autouse=True)
def keep_torch_threads():  # noqa: ANN201 - a preset may set `threads`: not for the other tests
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def tiny_data(tmp_path: Path, **kwargs: object) -> CharDataModule:
    path = tmp_path / "corpus.txt"
    path.write_text(TEXT)
    options = dict(batch_size=2, seq_len=8, split=(0.6, 0.2, 0.2)) | kwargs
    return CharDataModule(path=str(path), **options)


def tiny_network(vocab_size: int, core: str = "ln_lstm") -> CharRNN:
    return CharRNN(vocab_size=vocab_size, core=core, hidden_size=8, embedding_size=4, hyper_size=4, hyper_embedding_dim=2)


def quiet_trainer(**kwargs: object) -> L.Trainer:
    options = dict(
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
    )
    return L.Trainer(**(options | kwargs))


# the metric --------------------------------------------------------------------------------


@pytest.mark.parametrize("vocab_size", [2, 17, 66])
def test_bpc_of_uniform_logits_is_log2_of_the_vocabulary(vocab_size: int) -> None:
    metric = BitsPerCharacter()
    metric.update(torch.zeros(3, 5, vocab_size), torch.randint(vocab_size, (3, 5)))
    assert metric.compute().item() == pytest.approx(math.log2(vocab_size), rel=1e-6)


def test_bpc_weights_every_token_equally_over_unequal_batches() -> None:
    generator = torch.Generator().manual_seed(0)
    batches = [
        (torch.randn(2, 7, 5, generator=generator) * 3, torch.randint(5, (2, 7), generator=generator)),
        (torch.randn(2, 1, 5, generator=generator) * 3, torch.randint(5, (2, 1), generator=generator)),
    ]
    metric = BitsPerCharacter()
    for logits, targets in batches:
        metric.update(logits, targets)
    # by hand: -log2 p(target) of each of the 16 tokens, averaged
    bits = [
        -logits.log_softmax(-1).gather(-1, targets[..., None]).flatten() / math.log(2)
        for logits, targets in batches
    ]
    expected = torch.cat(bits).mean().item()
    per_batch_mean = sum(b.mean().item() for b in bits) / 2
    assert metric.compute().item() == pytest.approx(expected, rel=1e-6)
    assert abs(expected - per_batch_mean) > 1e-3  # the data tells the two apart


# the module --------------------------------------------------------------------------------


def test_a_vocabulary_mismatch_says_the_right_size(tmp_path: Path) -> None:
    data = tiny_data(tmp_path)
    model = CharLanguageModel(network=tiny_network(data.vocab_size + 3))
    with pytest.raises(ValueError, match=f"set network.vocab_size to {data.vocab_size}$"):
        model.check_data(data)
    CharLanguageModel(network=tiny_network(data.vocab_size)).check_data(data)


def test_the_network_must_have_a_vocabulary() -> None:
    with pytest.raises(ValueError, match="vocab_size"):
        CharLanguageModel(network=nn.Linear(2, 2))


class Spy(nn.Module):
    """The network, with every call's incoming and outgoing state written to ``events``."""

    def __init__(self, network: CharRNN, events: list) -> None:
        super().__init__()
        self.network, self.vocab_size, self.events = network, network.vocab_size, events

    def forward(self, tokens: Tensor, state: tuple[Tensor, ...] | None = None) -> tuple[Tensor, tuple[Tensor, ...]]:
        logits, new = self.network(tokens, state)
        self.events.append(("call", state, tuple(s.detach().clone() for s in new)))
        return logits, new


class Batches(L.Callback):
    """Which loop and batch each network call belongs to."""

    def __init__(self, events: list) -> None:
        self.events = events

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:  # noqa: ANN001
        self.events.append(("train", batch_idx))

    def on_validation_batch_start(self, trainer, pl_module, batch, batch_idx, dataloader_idx=0) -> None:  # noqa: ANN001
        self.events.append(("val", batch_idx))

    def on_test_batch_start(self, trainer, pl_module, batch, batch_idx, dataloader_idx=0) -> None:  # noqa: ANN001
        self.events.append(("test", batch_idx))


def test_state_is_carried_across_batches_and_reset_when_a_loop_starts(tmp_path: Path) -> None:
    data = tiny_data(tmp_path)
    events: list = []
    model = CharLanguageModel(network=Spy(tiny_network(data.vocab_size), events))
    # validation every 3 of the 9 training batches: in the middle of an epoch, too
    trainer = quiet_trainer(max_epochs=2, val_check_interval=3, callbacks=[Batches(events)])
    trainer.fit(model, datamodule=data)
    trainer.test(model, datamodule=data)

    last_output: dict[str, tuple[Tensor, ...]] = {}
    seen = {"train": 0, "val": 0, "test": 0}
    for (loop, batch_idx), (_, given, returned) in zip(events[::2], events[1::2]):
        if batch_idx == 0:
            assert given is None, f"{loop} batch 0 must start from the zero state"
        else:
            assert given is not None, f"{loop} batch {batch_idx} lost its state"
            assert not any(s.requires_grad for s in given), "the carried state must be detached"
            for carried, previous in zip(given, last_output[loop], strict=True):
                assert torch.equal(carried, previous), f"{loop} batch {batch_idx} got another batch's state"
        last_output[loop] = returned
        seen[loop] += 1
    assert seen["train"] == 2 * trainer.num_training_batches > 2  # every loop was watched
    assert seen["val"] > 2 * trainer.num_val_batches[0] > 2 and seen["test"] > 1


class ClipWatch(CharLanguageModel):
    """Records the gradient norm the optimiser is about to use, after the Trainer clipped it."""

    norms: list[float]

    def configure_gradient_clipping(self, optimizer, gradient_clip_val=None, gradient_clip_algorithm=None) -> None:  # noqa: ANN001
        super().configure_gradient_clipping(optimizer, gradient_clip_val, gradient_clip_algorithm)
        grads = [p.grad for p in self.parameters() if p.grad is not None]
        self.norms.append(torch.linalg.vector_norm(torch.stack([g.norm() for g in grads])).item())


def test_the_trainer_clips_the_gradients(tmp_path: Path) -> None:
    data = tiny_data(tmp_path)
    model = ClipWatch(network=tiny_network(data.vocab_size), optimizer=lambda p: torch.optim.SGD(p, lr=0.1))
    model.norms = []
    quiet_trainer(max_steps=3, gradient_clip_val=1e-3, limit_val_batches=0).fit(model, datamodule=data)
    assert len(model.norms) == 3 and max(model.norms) <= 1e-3 * (1 + 1e-4)


def test_compression_of_a_static_hyper_core_is_counted_through_the_char_model() -> None:
    core = StaticHyperLSTM(input_size=16, hidden_size=16, num_layers=4, embedding_dim=4, tile_channels=16)
    network = CharRNN(vocab_size=10, core=core)
    counts, core_counts = count_parameters(network), count_parameters(core)
    outside = counts.trainable - core_counts.trainable  # embedding and head
    assert counts.plain_equivalent == outside + core_counts.plain_equivalent
    assert counts.compression_ratio > 1


# the command line ---------------------------------------------------------------------------


def write_config(folder: Path) -> Path:
    corpus = folder / "corpus.txt"
    corpus.write_text(TEXT)
    config = {
        "trainer": {
            "max_steps": 6,
            "val_check_interval": 3,
            "check_val_every_n_epoch": None,
            "gradient_clip_val": 1.0,
            "default_root_dir": str(folder / "runs"),
            "enable_progress_bar": False,
            "enable_model_summary": False,
        },
        "report": {"unit": "tokens", "count": "elements"},
        "model": {
            "class_path": "hyper.training.CharLanguageModel",
            "init_args": {
                "network": {
                    "class_path": "models.CharRNN",
                    "init_args": {"core": "hyper_lstm", "hidden_size": 8, "embedding_size": 4, "hyper_size": 4, "hyper_embedding_dim": 2},
                },
            },
        },
        "data": {
            "class_path": "hyper.data.CharDataModule",
            "init_args": {"path": str(corpus), "batch_size": 2, "seq_len": 8, "split": [0.6, 0.2, 0.2]},
        },
    }
    path = folder / "tiny_lm.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def only_run(root: Path) -> Path:
    (run,) = [p for p in root.glob("*/version_*") if p.is_dir()]
    return run


def bpc_by_hand(checkpoint: str, data: CharDataModule) -> float:
    """The test split's bits per character under ``checkpoint``'s network: windows in order, the
    state carried from each to the next, nats / ln 2 over every token."""
    network = network_from_checkpoint(load_checkpoint(checkpoint), source=checkpoint).eval()
    data.setup("test")
    nats, tokens, state = 0.0, 0, None
    with torch.no_grad():
        for inputs, targets in data.test_dataloader():
            logits, state = network(inputs, state)  # (B, T, V)
            nats += F.cross_entropy(logits.flatten(0, 1), targets.flatten(), reduction="sum").item()
            tokens += targets.numel()
    return nats / tokens / math.log(2)


def test_fit_test_from_the_checkpoint_and_sample(tmp_path: Path, capfd: pytest.CaptureFixture) -> None:
    # vocab_size is stated nowhere: the command line reads it off the data
    assert main(["run", "--config", str(write_config(tmp_path))]) == 0
    report = json.loads((only_run(tmp_path / "runs") / "report.json").read_text())
    vocab_size = len(set(TEXT[: int(0.6 * len(TEXT))])) + 1
    assert report["trainable_params"] == count_parameters(tiny_network(vocab_size, "hyper_lstm")).trainable
    assert report["steps"] == 6 and report["tokens_per_s"] > 0
    assert report["best_val_bpc"] <= report["val_bpc"] + 1e-6
    best = report["best_checkpoint"]
    assert report["tested_checkpoint"] == best and Path(best).name == "best.ckpt"  # monitored: val_bpc, min
    assert (Path(best).parent / "last.ckpt").is_file()
    assert report["test_bpc"] == pytest.approx(bpc_by_hand(best, tiny_data(tmp_path)), rel=1e-5)

    # neither model nor data restated: both come from the checkpoint
    where = ["--trainer.default_root_dir", str(tmp_path / "test")]
    assert main(["test", "--ckpt_path", best, *where]) == 0
    tested = json.loads((only_run(tmp_path / "test") / "report.json").read_text())
    assert tested["test_bpc"] == pytest.approx(report["test_bpc"], rel=1e-5)

    capfd.readouterr()
    assert main(["sample", "--ckpt_path", best, "--prompt", "the ", "--length", "40", "--seed", "3"]) == 0
    text = capfd.readouterr().out.rstrip("\n")
    assert text.startswith("the ") and len(text) == 44 and set(text) <= set(TEXT)


def test_a_missing_corpus_is_one_line(tmp_path: Path, capfd: pytest.CaptureFixture) -> None:
    config = write_config(tmp_path)
    assert main(["fit", "--config", str(config), "--data.path", str(tmp_path / "missing.txt")]) == 2
    error = capfd.readouterr().err.strip().splitlines()
    assert len(error) == 1 and "missing.txt is not a file" in error[0], error
    assert not (tmp_path / "runs").exists()


# the presets ------------------------------------------------------------------------------


def build_preset(path: Path, folder: Path, alphabet: int | None = None) -> HyperCLI:
    """The preset, its corpus replaced by a tiny one (``alphabet`` distinct characters)."""
    config = yaml.safe_load(path.read_text())
    data_args = config["data"]["init_args"]
    chars = "".join(chr(33 + i) for i in range(alphabet or 20))
    corpus = folder / "corpus.txt"
    if data_args.get("format") == "ptb":  # space-separated characters, one sentence per line
        corpus.write_text((" ".join(chars) + "\n") * 50)
    else:
        corpus.write_text(chars * 50)
    args = ["--config", str(path), "--data.path", str(corpus), "--data.split", "[0.9, 0.05, 0.05]"]
    return HyperCLI(args=args, run=False)


def test_every_lm_preset_is_there() -> None:
    assert {path.stem for path in LM_PRESETS} >= {"char_default", "ptb_hyper_lstm", *SHAKESPEARE}


@pytest.mark.parametrize("path", LM_PRESETS, ids=lambda path: path.stem)
def test_lm_preset_builds_and_is_configured_for_language_modelling(path: Path, tmp_path: Path) -> None:
    cli = build_preset(path, tmp_path)
    assert isinstance(cli.model, CharLanguageModel)
    assert cli.model.network.vocab_size == cli.datamodule.vocab_size >= 21  # read off the data
    config = cli.config
    assert config["trainer"]["gradient_clip_val"] > 0
    assert (config["checkpoint"]["monitor"], config["checkpoint"]["mode"]) == ("val_bpc", "min")
    assert (config["report"]["unit"], config["report"]["count"]) == ("tokens", "elements")
    assert config["threads"] == 1 or path.stem.startswith("ptb")
    if path.stem == "ptb_hyper_lstm":  # the paper's sizes
        network = config["model"]["init_args"]["network"]["init_args"]
        assert type(cli.model.network.core).__name__ == "HyperLSTM" and cli.datamodule.format == "ptb"
        assert (network["hidden_size"], network["hyper_size"], network["hyper_embedding_dim"]) == (1000, 128, 4)


def test_shakespeare_presets_match_parameters_and_steps(tmp_path: Path) -> None:
    # tinyshakespeare has 65 distinct characters: vocab_size 66 with <unk>
    clis = {name: build_preset(CONFIG_DIR / f"{name}.yaml", tmp_path, alphabet=65) for name in SHAKESPEARE}
    counts = {name: count_parameters(cli.model.network).trainable for name, cli in clis.items()}
    hyper = counts["shakespeare_hyper_lstm"]
    assert hyper == 657_474
    assert all(abs(n - hyper) / hyper < 0.005 for n in counts.values()), counts

    def recipe(cli: HyperCLI) -> tuple:
        config = cli.config
        model = config["model"]["init_args"]
        network = model["network"]["init_args"]
        return (
            str(config["trainer"]), str(model["optimizer"]), model["schedule"],
            str(config["data"]), network["embedding_size"], network["num_layers"], network["dropout"],
        )

    assert len({recipe(cli) for cli in clis.values()}) == 1, "only the network may differ"
    assert [cli.model.network.core.__class__.__name__ for cli in clis.values()] == ["LSTM", "LNLSTM", "HyperLSTM"]
