"""Sampling: reproducible under a seed, different across seeds, temperature, no <unk>, prompts
with unseen characters, and the ``sample`` command on a checkpoint written here (laid out as
Lightning writes one; tests/test_language_model.py samples from a real one)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from hyper.data.text import UNK, UNK_ID
from hyper.training.cli import main
from hyper.training.sampling import sample_ids, sample_text
from models import CharRNN

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny tensors: one thread is faster
VOCAB = [UNK, *"\n abcdefghij"]
NETWORK = dict(vocab_size=len(VOCAB), core="lstm", hidden_size=8, embedding_size=4)


def network(seed: int = 0) -> CharRNN:
    torch.manual_seed(seed)
    return CharRNN(**NETWORK)


def draw(net: CharRNN, seed: int, **kwargs: object) -> str:
    options = dict(prompt="abc", length=60, temperature=1.0) | kwargs
    return sample_text(net, VOCAB, generator=torch.Generator().manual_seed(seed), **options)


def test_a_seed_gives_the_same_text_and_another_seed_another() -> None:
    net = network()
    first = draw(net, seed=1)
    assert len(first) == 60 and set(first) <= set(VOCAB[1:])
    assert draw(net, seed=1) == first
    assert draw(net, seed=2) != first


def test_a_low_temperature_is_greedy() -> None:
    net = network()
    with torch.no_grad():  # greedy decoding by hand: always the most likely next character
        logits, state = net(torch.tensor([[VOCAB.index(c) for c in "abc"]]))
        greedy = []
        for _ in range(20):
            next_logits = logits[0, -1].clone()
            next_logits[UNK_ID] = float("-inf")
            token = int(next_logits.argmax())
            greedy.append(VOCAB[token])
            logits, state = net(torch.tensor([[token]]), state)
    assert draw(net, seed=5, length=20, temperature=1e-4) == "".join(greedy)
    assert draw(net, seed=5, length=20, temperature=10.0) != "".join(greedy)


def test_unk_is_never_drawn_and_unseen_prompt_characters_read_as_unk() -> None:
    net = network()
    with torch.no_grad():
        net.head.bias[UNK_ID] = 50.0  # the network all but insists on <unk>
    ids = sample_ids(net, torch.tensor([1, 2]), length=50, generator=torch.Generator().manual_seed(0))
    assert len(ids) == 50 and UNK_ID not in ids.tolist()
    assert len(draw(net, seed=0, prompt="xyz\u00e9")) == 60  # none of them in VOCAB


@pytest.mark.parametrize(
    ("options", "says"),
    [
        (dict(temperature=0.0), "temperature must be a positive finite number"),
        (dict(temperature=-1.0), "temperature must be a positive finite number"),
        (dict(length=-1), "length must be a non-negative integer"),
        (dict(prompt=""), "at least one character"),
    ],
)
def test_bad_sampling_options_are_refused(options: dict, says: str) -> None:
    with pytest.raises(ValueError, match=says):
        draw(network(), seed=0, **options)


def test_sampling_draws_as_in_eval_mode_and_keeps_the_networks_mode() -> None:
    torch.manual_seed(0)
    net = CharRNN(**NETWORK, dropout=0.5)
    in_training_mode = draw(net, seed=0)
    assert net.training  # put back in training mode after sampling in eval mode
    assert in_training_mode == draw(net.eval(), seed=0)  # no dropout while sampling


# the command ------------------------------------------------------------------------------


@pytest.fixture
def checkpoint(tmp_path: Path) -> Path:
    """A checkpoint as CharLanguageModel + CharDataModule under train.py write it."""
    net = network(seed=3)
    contents = {
        "hyper_parameters": {
            "_class_path": "hyper.training.CharLanguageModel",
            "network": {"class_path": "models.CharRNN", "init_args": NETWORK},
        },
        "state_dict": {f"network.{name}": value for name, value in net.state_dict().items()},
        "datamodule_hyper_parameters": {"_class_path": "hyper.data.CharDataModule", "path": "gone.txt", "format": "text"},
        "CharDataModule": {"vocab": VOCAB, "format": "text"},
    }
    path = tmp_path / "tiny.ckpt"
    torch.save(contents, path)
    return path


def sample(capfd: pytest.CaptureFixture, *args: str) -> tuple[int, str, str]:
    status = main(["sample", *args])
    out, err = capfd.readouterr()
    return status, out, err


def test_sample_prints_the_prompt_and_its_continuation(checkpoint: Path, capfd: pytest.CaptureFixture) -> None:
    args = ["--ckpt_path", str(checkpoint), "--prompt", "ab", "--length", "30"]
    status, out, _ = sample(capfd, *args, "--seed", "7")
    assert status == 0 and out.startswith("ab") and len(out) == 2 + 30 + 1  # and print's newline
    # the command samples from the checkpoint's weights: the library call on the same network agrees
    assert out[2:-1] == draw(network(seed=3), seed=7, prompt="ab", length=30, temperature=0.8)
    assert sample(capfd, *args, "--seed", "7")[1] == out
    assert sample(capfd, *args, "--seed", "8")[1] != out


def test_sample_notes_unseen_prompt_characters(checkpoint: Path, capfd: pytest.CaptureFixture) -> None:
    status, out, err = sample(capfd, "--ckpt_path", str(checkpoint), "--prompt", "aZ", "--length", "5")
    assert status == 0 and out.startswith("aZ") and "'Z'" in err and "<unk>" in err


@pytest.mark.parametrize(
    ("args", "says"),
    [
        ([], "sample needs --ckpt_path"),
        (["--ckpt_path", "missing.ckpt"], "--ckpt_path missing.ckpt: no such checkpoint file"),
        (["--temperature", "0"], "temperature must be a positive finite number"),
        (["--length", "many"], "invalid int value"),
        (["--prompt", ""], "at least one character"),
        (["--top_k", "3"], "sample does not take --top_k"),
    ],
)
def test_bad_input_is_one_line(checkpoint: Path, capfd: pytest.CaptureFixture, args: list[str], says: str) -> None:
    given = args if not args or args[0] == "--ckpt_path" else ["--ckpt_path", str(checkpoint), *args]
    status, out, err = sample(capfd, *given)
    lines = err.strip().splitlines()
    assert status == 2 and not out and len(lines) == 1 and lines[0].startswith("error: ") and says in lines[0], lines


def test_a_checkpoint_of_another_kind_is_refused(tmp_path: Path, capfd: pytest.CaptureFixture) -> None:
    path = tmp_path / "images.ckpt"
    torch.save({"hyper_parameters": {}, "state_dict": {}}, path)
    status, _, err = sample(capfd, "--ckpt_path", str(path))
    assert status == 2 and "sample needs a character model" in err
