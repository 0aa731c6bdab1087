"""Quantisation: the grid and its error bound, STE gradients, any network (a hypernetwork's own
embeddings and generator too), and the command line testing the quantised network."""

import json

import lightning as L
import pytest
import torch
import yaml
from torch import nn

from hyper import count_parameters, materialize
from hyper.compression import dequantize, quantize
from hyper.compression.quantize import Quantizer, is_quantized
from hyper.training import ImageClassifier
from hyper.training.compression import QuantizationAwareTraining
from hyper.training.cli import main
from models import HyperResNet, create_model
from test_cli import NETWORK, TinyImages, only_run, write_config


def conv_weight():
    torch.manual_seed(0)
    return torch.randn(8, 4, 3, 3) * torch.linspace(0.1, 2.0, 8)[:, None, None, None]  # channels of unequal scale


@pytest.mark.parametrize("bits, levels", [(8, 127), (4, 7)])
def test_error_is_at_most_half_a_step_per_channel(bits, levels):
    w = conv_weight()
    q = Quantizer(bits=bits)(w)
    step = w.abs().amax(dim=(1, 2, 3)) / levels  # (8,) each channel's own step
    codes = q / step[:, None, None, None]
    assert torch.allclose(codes, codes.round(), atol=1e-4)  # on each channel's grid
    assert codes.abs().max() <= levels + 1e-4
    error = (w - q).abs().amax(dim=(1, 2, 3))
    assert torch.all(error <= step / 2 * (1 + 1e-5))
    assert torch.all(error > step / 4)  # it did round: 36 values per channel land between the levels


def test_ternary_and_binary_codes():
    w = conv_weight()
    for bits, allowed in ((2, {-1, 0, 1}), (1, {-1, 1})):
        quantizer = Quantizer(bits=bits)
        codes = quantizer.codes(w)
        assert set(codes.unique().tolist()) == allowed
        scales = quantizer.scales(w.reshape(8, -1))
        assert torch.allclose(quantizer(w), codes * scales[:, None, None, None])
    assert torch.allclose(Quantizer(bits=1).scales(w.reshape(8, -1)), w.abs().mean(dim=(1, 2, 3)))


@pytest.mark.parametrize("bits", [4, 1])
def test_gradient_passes_straight_through(bits):
    w = conv_weight().requires_grad_()
    upstream = torch.randn_like(w)
    (Quantizer(bits=bits)(w) * upstream).sum().backward()
    assert torch.allclose(w.grad, upstream)


def test_a_plain_network_runs_its_quantised_weights_and_dequantizes_back():
    torch.manual_seed(0)
    model = create_model("wrn10_1").eval()
    latent = {k: v.clone() for k, v in model.state_dict().items()}
    x = torch.randn(2, 3, 8, 8)
    before = model(x)
    quantize(model, bits=4)
    conv = model.stem
    assert len(conv.weight.reshape(16, -1)[0].unique()) <= 15  # the forward pass sees 4-bit values
    assert not torch.allclose(model(x), before)
    reference = materialize(model)  # a copy; its stem runs the same quantised kernel
    assert torch.allclose(reference.stem.weight, conv.weight)
    dequantize(model)
    assert all(torch.equal(latent[k], v) for k, v in model.state_dict().items())
    assert torch.allclose(model(x), before)


def test_a_hypernetwork_quantises_its_embeddings_and_generator():
    torch.manual_seed(0)
    model = HyperResNet(depth=10, width=1, embedding_dim=4, hidden_dim=8)
    quantize(model, bits=4)
    source = model.source
    tensors = [n for n, p in source.named_parameters() if p.dim() >= 2]
    assert len(tensors) >= 3 and all(n.endswith(".original") for n in tensors)  # embeddings, generator: all quantised
    table = source.tables["3x3"].embeddings
    scale = table.abs().max() / 7  # rows of 4: one scale for the table
    assert torch.allclose(table / scale, (table / scale).round(), atol=1e-4)
    kernels = model.generated_weights()
    expected = source.tables["3x3"].generator(source.tables["3x3"].embeddings)  # the tiles come from the quantised tensors
    first = model.layers[0]
    assert torch.allclose(kernels[first.name][:16, :16], expected[0])
    model(torch.randn(2, 3, 8, 8)).sum().backward()  # gradients reach the float embeddings
    assert source.tables["3x3"].parametrizations.embeddings.original.grad.abs().sum() > 0


def test_an_lstm_stack_quantises(one_thread):
    from models import LSTMStack

    model = LSTMStack(input_size=16, hidden_size=16, num_layers=1, source="hyper")
    full = count_parameters(model).size_bytes
    quantize(model, bits=8)
    output, _ = model(torch.randn(2, 3, 16))
    assert output.shape == (2, 3, 16) and count_parameters(model).size_bytes < full / 2


@pytest.mark.parametrize("bits", [3, 16, 0, True])
def test_bad_bits_name_the_allowed_values(bits):
    for make in (lambda: Quantizer(bits=bits), lambda: quantize(nn.Linear(2, 2), bits=bits)):
        with pytest.raises(ValueError, match=r"bits must be one of 8, 4, 2 \(ternary\), 1 \(binary\)"):
            make()


def quantised_config(folder, callback, **init_args):
    path = write_config(folder)
    config = yaml.safe_load(path.read_text())
    config["trainer"]["callbacks"] = [{"class_path": f"hyper.training.compression.{callback}", "init_args": init_args}]
    path.write_text(yaml.safe_dump(config))
    return path


def accuracy_of(network):
    """The metric ``test_acc`` is: the fraction of images classified correctly."""
    from torchmetrics.functional.classification import multiclass_accuracy

    data = TinyImages()
    data.setup("test")
    images, labels = data.data.tensors
    with torch.no_grad():
        return multiclass_accuracy(network.eval()(images), labels, num_classes=4, average="micro").item()


@pytest.mark.parametrize("callback, args", [("PostTrainingQuantization", {"bits": 4}), ("QuantizationAwareTraining", {"bits": 2, "start_epoch": 1})])
def test_the_command_line_tests_the_quantised_network(tmp_path, callback, args):
    assert main(["run", "--config", str(quantised_config(tmp_path, callback, **args))]) == 0
    report = json.loads((only_run(tmp_path / "runs") / "report.json").read_text())
    network = HyperResNet(depth=10, width=1, num_classes=4, in_channels=3, embedding_dim=4, hidden_dim=8)
    float_bytes = count_parameters(network).size_bytes
    state = torch.load(report["tested_checkpoint"], weights_only=False)["state_dict"]
    # The checkpoint holds float weights under the network's own names ...
    network.load_state_dict({k.removeprefix("network."): v for k, v in state.items()})
    quantize(network, bits=args["bits"])
    # ... and the report is that of the quantised network: its accuracy and its bytes.
    assert report["test_acc"] == pytest.approx(accuracy_of(network))
    assert report["size_bytes"] == count_parameters(network).size_bytes < float_bytes / 3
    assert report["compression_bytes"] > 3 * report["compression_ratio"]


class QuantisedSteps(L.Callback):
    """(epoch, whether the network runs quantised weights) at every training step."""

    def __init__(self) -> None:
        self.steps: list[tuple[int, bool]] = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:  # noqa: ANN001
        self.steps.append((trainer.current_epoch, is_quantized(pl_module.network)))


def test_quantisation_aware_training_trains_quantised_from_start_epoch_on(tmp_path, one_thread):
    # Testing quantised alone cannot tell QAT from post-training quantisation: the training steps can.
    torch.manual_seed(0)
    steps = QuantisedSteps()
    trainer = L.Trainer(
        max_epochs=2, callbacks=[QuantizationAwareTraining(bits=4, start_epoch=1), steps], default_root_dir=tmp_path,
        logger=False, enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False, limit_val_batches=0,
    )
    trainer.fit(ImageClassifier(network=HyperResNet(**NETWORK)), datamodule=TinyImages())  # 2 steps an epoch
    assert steps.steps == [(0, False), (0, False), (1, True), (1, True)]


def test_testing_a_quantised_runs_checkpoint_alone_quantises_it_again(tmp_path):
    assert main(["run", "--config", str(quantised_config(tmp_path, "PostTrainingQuantization", bits=4))]) == 0
    report = json.loads((only_run(tmp_path / "runs") / "report.json").read_text())
    float_network = HyperResNet(depth=10, width=1, num_classes=4, in_channels=3, embedding_dim=4, hidden_dim=8)
    state = torch.load(report["tested_checkpoint"], weights_only=False)["state_dict"]
    float_network.load_state_dict({k.removeprefix("network."): v for k, v in state.items()})
    data = TinyImages()
    data.setup("test")
    images, labels = data.data.tensors
    with torch.no_grad():
        float_loss = torch.nn.functional.cross_entropy(float_network.eval()(images), labels).item()
    assert float_loss != pytest.approx(report["test_loss"])  # else this test could not tell them apart
    # ``test`` with the checkpoint alone (no callback given) scores the quantised network, as the run did
    out = tmp_path / "tested"
    assert main(["test", "--ckpt_path", report["tested_checkpoint"], "--trainer.default_root_dir", str(out)]) == 0
    retested = json.loads((only_run(out) / "report.json").read_text())
    assert (retested["test_loss"], retested["test_acc"]) == (pytest.approx(report["test_loss"]), report["test_acc"])
    # and a network rebuilt from it in Python (sampling, a teacher) is the quantised one too
    from hyper.training.checkpoints import load_checkpoint, network_from_checkpoint

    rebuilt = network_from_checkpoint(load_checkpoint(report["tested_checkpoint"]), source="the checkpoint")
    with torch.no_grad():
        rebuilt_loss = torch.nn.functional.cross_entropy(rebuilt.eval()(images), labels).item()
    assert rebuilt_loss == pytest.approx(report["test_loss"], rel=1e-5)


def test_bad_start_epoch(tmp_path, capsys):
    config = quantised_config(tmp_path, "QuantizationAwareTraining", bits=4, start_epoch=2)
    assert main(["fit", "--config", str(config)]) == 2
    assert "start_epoch must be below 2 (trainer.max_epochs 2), got 2" in capsys.readouterr().err
