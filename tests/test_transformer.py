"""The character transformer: its token state, wrapped by the hypernetwork, and trained end to end
through CharLanguageModel and the command line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml

from hyper import Hyper, count_parameters, materialize, wrap
from hyper.data import CharDataModule
from hyper.training.cli import main
from models import CharTransformer
from test_language_model import bpc_by_hand

pytestmark = pytest.mark.usefixtures("one_thread")
CONFIG_DIR = Path(__file__).resolve().parents[1] / "configs"
TEXT = "the cat sat on the mat; a rat ate the hat. " * 8


def tiny(**kwargs) -> CharTransformer:
    torch.manual_seed(0)
    return CharTransformer(**{"vocab_size": 20, "num_layers": 2, "num_heads": 2, "embed_dim": 32, "context": 16, **kwargs})


def test_carried_tokens_make_split_calls_equal_one_call():
    model = tiny().eval()
    tokens = torch.randint(0, 20, (3, 12))
    whole, _ = model(tokens)
    first, state = model(tokens[:, :5])
    second, state = model(tokens[:, 5:], state)
    assert torch.allclose(torch.cat([first, second], 1), whole, atol=1e-5)
    assert torch.equal(state[0], tokens)


def test_the_context_keeps_the_latest_tokens():
    model = tiny().eval()
    tokens = torch.randint(0, 20, (2, 30))
    _, state = model(tokens[:, :10])
    logits, state = model(tokens[:, 10:20], state)
    assert torch.equal(state[0], tokens[:, 4:20])  # 16 positions: 6 carried + 10 new
    alone, _ = model(tokens[:, 4:20])
    assert torch.allclose(logits, alone[:, 6:], atol=1e-5)
    with pytest.raises(ValueError, match="at most context=16 tokens"):
        model(tokens[:, :17])


def test_wrapped_blocks_tie_and_materialize():
    model = wrap(tiny(num_layers=4), Hyper(embedding_dim=4, tying_groups=2), include="blocks.*")
    w = model.generated_weights()
    assert torch.equal(w["blocks.0.mlp.fc1.weight"], w["blocks.1.mlp.fc1.weight"])
    assert not torch.equal(w["blocks.1.mlp.fc1.weight"], w["blocks.2.mlp.fc1.weight"])
    assert {layer.role for layer in model.layers} == {"attn.qkv.weight", "attn.proj.weight", "mlp.fc1.weight", "mlp.fc2.weight"}
    tokens = torch.randint(0, 20, (2, 8))
    plain = materialize(model.eval())
    assert type(plain) is CharTransformer
    assert torch.allclose(plain(tokens)[0], model(tokens)[0], atol=1e-5)


@pytest.mark.parametrize(
    "kwargs, words",
    [(dict(num_heads=3), ["num_heads must divide embed_dim=32"]), (dict(context=0), ["context"]), (dict(dropout=1.0), ["dropout"])],
)
def test_bad_arguments(kwargs, words):
    with pytest.raises(ValueError) as error:
        tiny(**kwargs)
    assert all(word in str(error.value) for word in words)


def test_the_hyper_preset_trains_reports_its_compression_and_samples(tmp_path, capfd):
    config = yaml.safe_load((CONFIG_DIR / "char_hyper_transformer.yaml").read_text())
    network = config["model"]["init_args"]["network"]["init_args"]
    network.update(num_layers=2, embed_dim=32, num_heads=2, context=16)
    corpus = tmp_path / "corpus.txt"
    corpus.write_text(TEXT)
    config["trainer"].update(max_steps=4, val_check_interval=2, default_root_dir=str(tmp_path / "runs"),
                             enable_progress_bar=False, enable_model_summary=False)
    config["data"]["init_args"].update(path=str(corpus), batch_size=2, seq_len=8, split=[0.6, 0.2, 0.2])
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(config))
    assert main(["run", "--config", str(path)]) == 0
    (report_path,) = (tmp_path / "runs").glob("*/version_*/report.json")
    assert report_path.parent.parent.name == "hyperchartransformer_char"
    report = json.loads(report_path.read_text())
    vocab_size = len(set(TEXT[: int(0.6 * len(TEXT))])) + 1
    expected = count_parameters(wrap(tiny(vocab_size=vocab_size), Hyper(embedding_dim=16), include="blocks.*"))
    assert (report["model"], report["source"]) == ("HyperCharTransformer", "hyper")
    assert report["trainable_params"] == expected.trainable
    assert report["compression_ratio"] == pytest.approx(expected.compression_ratio)
    assert report["steps"] == 4
    data = CharDataModule(**config["data"]["init_args"])
    assert report["test_bpc"] == pytest.approx(bpc_by_hand(report["tested_checkpoint"], data), rel=1e-5)
    capfd.readouterr()
    assert main(["sample", "--ckpt_path", report["best_checkpoint"], "--prompt", "the ", "--length", "30"]) == 0
    text = capfd.readouterr().out.rstrip("\n")
    assert text.startswith("the ") and len(text) == 34 and set(text) <= set(TEXT)
