"""Recurrent dropout (on the cell update g_t) on all three cores: off changes nothing, on acts
in training only, and the mask is applied where the equations say."""

import json

import pytest
import torch

from models.char_model import CharRNN, build_core
from models.hyper_lstm import HyperLSTM
from models.lstm import LSTM, LNLSTM, LSTMLayer, dropout_mask
from reference_lstm import hyper_lstm_layer, lstm_layer

B, T, I, H = 3, 6, 4, 5
SIZES = dict(input_size=I, hidden_size=H)
HYPER = dict(hyper_size=4, embedding_dim=2)

pytestmark = pytest.mark.usefixtures("one_thread")


def make(core, p, num_layers=1):
    torch.manual_seed(0)
    if core == "lstm":
        return LSTM(**SIZES, num_layers=num_layers, recurrent_dropout=p)
    if core == "ln_lstm":
        return LNLSTM(**SIZES, num_layers=num_layers, recurrent_dropout=p)
    return HyperLSTM(**SIZES, **HYPER, num_layers=num_layers, recurrent_dropout=p)


def randomized(module):
    with torch.no_grad():
        for p in module.parameters():
            p.add_(torch.randn_like(p) * 0.3)
    return module


@pytest.mark.parametrize("core", ["lstm", "ln_lstm", "hyper_lstm"])
def test_off_is_todays_core_exactly_and_draws_no_random_numbers(core):
    x = torch.randn(B, T, I)
    default = make(core, 0.0)
    torch.manual_seed(0)
    plain = {"lstm": LSTM, "ln_lstm": LNLSTM, "hyper_lstm": HyperLSTM}[core](**SIZES, **(HYPER if core == "hyper_lstm" else {}))
    plain.load_state_dict(default.state_dict())
    rng = torch.get_rng_state()
    out, state = default.train()(x)
    assert torch.equal(torch.get_rng_state(), rng)  # no mask drawn: other random streams are unchanged
    ref_out, ref_state = plain.train()(x)
    assert torch.equal(out, ref_out) and all(torch.equal(a, b) for a, b in zip(state, ref_state))
    assert torch.equal(out, default.eval()(x)[0])


@pytest.mark.parametrize("core", ["lstm", "ln_lstm", "hyper_lstm"])
def test_on_acts_in_training_only(core):
    x = torch.randn(B, T, I)
    dropped, kept = randomized(make(core, 0.5, num_layers=2)), make(core, 0.0, num_layers=2)
    kept.load_state_dict(dropped.state_dict())
    train_a, train_b = dropped.train()(x)[0], dropped(x)[0]
    assert not torch.allclose(train_a, train_b)  # a fresh mask every call
    assert not torch.allclose(train_a, kept.train()(x)[0])
    torch.testing.assert_close(dropped.eval()(x)[0], kept.eval()(x)[0], rtol=0, atol=0)  # eval ignores p


def test_mask_multiplies_tanh_g_in_the_equations_and_their_gradients():
    """Layer level, float64: the fused loops with the layer's own mask equal the reference
    equations with that mask, gradients included (LN-LSTM, plain LSTM, HyperLSTM)."""
    torch.manual_seed(1)
    layers = [
        LSTMLayer(**SIZES, recurrent_dropout=0.4),
        LSTMLayer(**SIZES, layer_norm=False, recurrent_dropout=0.4),
        HyperLSTM(**SIZES, **HYPER, recurrent_dropout=0.4).layers[0],
    ]
    for layer in layers:
        layer = randomized(layer.double().train())
        x = torch.randn(B, T, I, dtype=torch.float64, requires_grad=True)
        state = tuple(torch.randn(B, n, dtype=torch.float64) for n in layer.state_sizes)
        torch.manual_seed(7)
        output, final = layer(x, state)
        torch.manual_seed(7)
        mask = layer.dropout_mask(x).transpose(0, 1)  # the same draw, (B, T, H)
        assert (mask == 0).any() and set(mask.unique().tolist()) == {0.0, 1 / (1 - 0.4)}  # inverted dropout
        if isinstance(layer, LSTMLayer) and not hasattr(layer, "hyper"):
            ref_output, *ref_final = lstm_layer(layer, x, *state, mask=mask)
        else:
            ref_output, ref_final = hyper_lstm_layer(layer, x, state, mask=mask)
        torch.testing.assert_close(output, ref_output)
        probe = torch.randn_like(output)
        inputs = [x, *layer.parameters()]
        grads = torch.autograd.grad((output * probe).sum() + final[1].sum(), inputs)
        ref_grads = torch.autograd.grad((ref_output * probe).sum() + ref_final[1].sum(), inputs)
        for got, want in zip(grads, ref_grads):
            torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-10)


def test_nn_lstm_with_recurrent_dropout_trains_its_own_weights_through_the_loop():
    core = randomized(LSTM(**SIZES, num_layers=2, recurrent_dropout=0.3)).double()
    x = torch.randn(B, T, I, dtype=torch.float64)
    torch.manual_seed(3)
    output, (h, c) = core.train()(x)
    torch.manual_seed(3)
    masks = [dropout_mask(0.3, T, B, H, x).transpose(0, 1) for _ in range(2)]  # one per layer, in order
    layer_input, lstm = x, core.lstm
    for l, mask in enumerate(masks):
        layer = LSTMLayer(input_size=layer_input.shape[-1], hidden_size=H, layer_norm=False, forget_bias=0.0).double()
        with torch.no_grad():
            layer.weight_x.copy_(getattr(lstm, f"weight_ih_l{l}"))
            layer.weight_h.copy_(getattr(lstm, f"weight_hh_l{l}"))
            layer.bias.copy_(getattr(lstm, f"bias_ih_l{l}") + getattr(lstm, f"bias_hh_l{l}"))
        layer_input, ref_h, ref_c = lstm_layer(layer, layer_input, torch.zeros(B, H, dtype=torch.float64),
                                               torch.zeros(B, H, dtype=torch.float64), mask=mask)
    torch.testing.assert_close(output, layer_input)
    torch.testing.assert_close(c[1], ref_c)
    output.sum().backward()  # gradients reach nn.LSTM's own parameters
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in core.parameters())


@pytest.mark.parametrize("source", ["plain", "hyper"])
def test_lstm_stacks_drop_in_training_only_with_generated_weights(source):
    """The generated stacks run their LN-LSTM through the wrapper: the mask still acts in
    training only, and at 0 the stack is today's exactly."""
    from models.lstm_stack import LSTMStack, StaticHyperLSTM

    def stack(p):
        torch.manual_seed(0)
        sizes = dict(input_size=16, hidden_size=16, num_layers=2, recurrent_dropout=p)
        return StaticHyperLSTM(**sizes, embedding_dim=4) if source == "hyper" else LSTMStack(**sizes)

    x = torch.randn(B, T, 16)
    dropped, kept = stack(0.5), stack(0.0)
    kept.load_state_dict(dropped.state_dict())
    assert not torch.allclose(dropped.train()(x)[0], kept.train()(x)[0])
    assert not torch.allclose(dropped(x)[0], dropped(x)[0])  # a fresh mask every call
    torch.testing.assert_close(dropped.eval()(x)[0], kept.eval()(x)[0], rtol=0, atol=0)
    rng = torch.get_rng_state()
    kept.train()(x)
    assert torch.equal(torch.get_rng_state(), rng)  # at 0 no mask is drawn


def test_char_rnn_passes_it_on_and_checks_it():
    model = CharRNN(vocab_size=7, core="ln_lstm", hidden_size=H, embedding_size=I, recurrent_dropout=0.25)
    assert model.core.layers[0].recurrent_dropout == 0.25 and model.config["recurrent_dropout"] == 0.25
    for bad in (-0.1, 1.0):
        with pytest.raises(ValueError, match="recurrent_dropout must be in"):
            CharRNN(vocab_size=7, recurrent_dropout=bad)
    static = build_core("static_hyper_lstm", input_size=16, hidden_size=16, recurrent_dropout=0.1)
    assert [layer.recurrent_dropout for layer in static.target.layers] == [0.1] and static.config["recurrent_dropout"] == 0.1
    with pytest.raises(ValueError, match="built core"):
        CharRNN(vocab_size=7, core=LNLSTM(**SIZES), recurrent_dropout=0.1)


def test_the_command_line_sets_it(tmp_path):
    from hyper.training.cli import main
    from test_language_model import only_run, write_config

    args = ["fit", "--config", str(write_config(tmp_path)), "--model.network.recurrent_dropout", "0.2"]
    assert main(args) == 0
    report = json.loads((only_run(tmp_path / "runs") / "report.json").read_text())
    assert report["model_args"]["recurrent_dropout"] == 0.2
