"""The recurrent cores' common interface, the LN-LSTM's equations, and the character model."""

import subprocess
import sys
from pathlib import Path

import pytest
import torch

from models.char_model import CORES, CharRNN, build_core
from models.lstm import LSTM, LNLSTM, detach_state

B, T, I, H = 3, 8, 5, 12
SIZES = dict(input_size=I, hidden_size=H)
HYPER = dict(hyper_size=6, hyper_embedding_dim=4)


pytestmark = pytest.mark.usefixtures("one_thread")


def make_core(name, num_layers=1):
    torch.manual_seed(0)
    return build_core(name, **SIZES, num_layers=num_layers, **HYPER)


def layer_norm(v, weight, bias, eps=1e-5):
    mean = v.mean(-1, keepdim=True)
    var = ((v - mean) ** 2).mean(-1, keepdim=True)
    return (v - mean) / torch.sqrt(var + eps) * weight + bias


def reference_ln_lstm(layer, x, h, c):
    """The LN-LSTM written out gate by gate, one step at a time."""
    update, outputs = layer.update, []
    for x_t in x.unbind(1):
        gates = []
        for k in range(4):  # i, f, g, o
            rows = slice(k * H, (k + 1) * H)
            pre = x_t @ layer.weight_x[rows].T + h @ layer.weight_h[rows].T + layer.bias[rows]
            gates.append(layer_norm(pre, update.gate_weight[k], update.gate_bias[k]))
        i, f, g, o = gates
        c = torch.sigmoid(f + 1.0) * c + torch.sigmoid(i) * torch.tanh(g)
        h = torch.sigmoid(o) * torch.tanh(layer_norm(c, update.cell_norm.weight, update.cell_norm.bias))
        outputs.append(h)
    return torch.stack(outputs, 1), h, c


def randomize_(module):
    """Move every parameter off its (often symmetric) initial value so comparisons are sharp."""
    with torch.no_grad():
        for p in module.parameters():
            p.add_(torch.randn_like(p) * 0.3)
    return module


@pytest.mark.parametrize("num_layers", [1, 2])
@pytest.mark.parametrize("name", CORES)
def test_shapes(name, num_layers):
    core = make_core(name, num_layers)
    output, state = core(torch.randn(B, T, I))
    assert output.shape == (B, T, H)
    hyper_state = [(num_layers, B, HYPER["hyper_size"])] * 2 if name == "hyper_lstm" else []
    expected = [(num_layers, B, H)] * 2 + hyper_state
    assert [tuple(s.shape) for s in state] == expected
    assert [tuple(s.shape) for s in core.init_state(B)] == expected


@pytest.mark.parametrize("num_layers", [1, 2])
@pytest.mark.parametrize("name", CORES)
def test_state_carries_across_segments(name, num_layers):
    core = randomize_(make_core(name, num_layers))
    x = torch.randn(B, T, I)
    whole, whole_state = core(x)
    first, state = core(x[:, : T // 2])
    second, state = core(x[:, T // 2 :], detach_state(state))
    torch.testing.assert_close(torch.cat([first, second], 1), whole)
    for a, b in zip(state, whole_state):
        torch.testing.assert_close(a, b)
    # The carried state matters: restarting from zeros gives a different second half.
    restarted, _ = core(x[:, T // 2 :])
    assert not torch.allclose(restarted, second, atol=1e-4)


@pytest.mark.parametrize("name", CORES)
def test_zero_state_is_the_default(name):
    core = randomize_(make_core(name, 2))
    x = torch.randn(B, T, I)
    torch.testing.assert_close(core(x)[0], core(x, core.init_state(B))[0])


def test_ln_lstm_matches_gate_by_gate_reference_and_its_gradients():
    core = randomize_(LNLSTM(**SIZES))
    x = torch.randn(B, T, I)
    h0, c0 = torch.randn(1, B, H, requires_grad=True), torch.randn(1, B, H, requires_grad=True)
    output, (h, c) = core(x, (h0, c0))
    ref_out, ref_h, ref_c = reference_ln_lstm(core.layers[0], x, h0[0], c0[0])
    torch.testing.assert_close(output, ref_out)
    torch.testing.assert_close(h[0], ref_h)
    torch.testing.assert_close(c[0], ref_c)
    inputs, probe = [h0, c0, *core.parameters()], torch.randn_like(output)
    grads = torch.autograd.grad((output * probe).sum() + c.sum(), inputs)
    ref_grads = torch.autograd.grad((ref_out * probe).sum() + ref_c.sum(), inputs)
    for got, want in zip(grads, ref_grads):
        torch.testing.assert_close(got, want)


@pytest.mark.parametrize("core", [LSTM(**SIZES), LNLSTM(**SIZES)])
def test_init_orthogonal_per_gate_and_forget_bias(core):
    weight_h = core.lstm.weight_hh_l0 if isinstance(core, LSTM) else core.layers[0].weight_h
    for block in weight_h.detach().chunk(4):
        torch.testing.assert_close(block @ block.T, torch.eye(H), atol=1e-5, rtol=0)
    if isinstance(core, LSTM):  # the wrapper's forget bias is its learnable bias, gate order i, f, g, o
        bias = core.lstm.bias_ih_l0.detach()
        assert torch.equal(bias[H : 2 * H], torch.ones(H))
        assert bias[:H].abs().sum() == 0 and bias[2 * H :].abs().sum() == 0


def test_lstm_layer_without_layer_norm_matches_nn_lstm():
    # Our time loop with LN off is torch's LSTM: checks gate order and the fused matmuls.
    from models.lstm import LSTMLayer

    torch.manual_seed(1)
    ours = randomize_(LSTMLayer(**SIZES, layer_norm=False, forget_bias=0.0))
    theirs = LSTM(**SIZES)
    with torch.no_grad():
        theirs.lstm.weight_ih_l0.copy_(ours.weight_x)
        theirs.lstm.weight_hh_l0.copy_(ours.weight_h)
        theirs.lstm.bias_ih_l0.copy_(ours.bias)
        theirs.lstm.bias_hh_l0.zero_()
    x, h0, c0 = torch.randn(B, T, I), torch.randn(B, H), torch.randn(B, H)
    out, (h, c) = ours(x, (h0, c0))
    ref, (ref_h, ref_c) = theirs(x, (h0[None], c0[None]))
    torch.testing.assert_close(out, ref)
    torch.testing.assert_close(h, ref_h[0])
    torch.testing.assert_close(c, ref_c[0])


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda: LNLSTM(input_size=I, hidden_size=0), "hidden_size"),
        (lambda: LNLSTM(**SIZES, num_layers=0), "num_layers"),
        (lambda: LSTM(input_size=-1, hidden_size=H), "input_size"),
        (lambda: build_core("gru", **SIZES), "lstm, ln_lstm, hyper_lstm, static_hyper_lstm"),
        (lambda: CharRNN(vocab_size=10, core="gru"), "lstm, ln_lstm, hyper_lstm, static_hyper_lstm"),
        (lambda: CharRNN(vocab_size=10, dropout=1.0), "dropout"),
    ],
)
def test_bad_arguments_raise_value_error(make, match):
    with pytest.raises(ValueError, match=match):
        make()


@pytest.mark.parametrize("name", CORES)
def test_bad_state_or_input_raise_value_error(name):
    core = make_core(name, 2)
    with pytest.raises(ValueError, match="state"):
        core(torch.randn(B, T, I), core.init_state(B + 1))
    with pytest.raises(ValueError, match="x must be"):
        core(torch.randn(B, T, I + 1))


@pytest.mark.parametrize("name", CORES)
def test_char_rnn_logits_and_state(name):
    torch.manual_seed(0)
    model = CharRNN(vocab_size=11, core=name, hidden_size=H, num_layers=2, embedding_size=7, **HYPER)
    tokens = torch.randint(0, 11, (B, T))
    logits, state = model(tokens)
    assert logits.shape == (B, T, 11)
    first, state_half = model(tokens[:, :3])
    second, _ = model(tokens[:, 3:], state_half)
    torch.testing.assert_close(torch.cat([first, second], 1), logits)
    assert [s.shape for s in model.init_state(B)] == [s.shape for s in state]


def test_char_rnn_accepts_a_built_core():
    core = LNLSTM(input_size=9, hidden_size=10, num_layers=2)
    model = CharRNN(vocab_size=5, core=core)
    assert model.core is core and model.embedding.embedding_dim == 9 and model.head.in_features == 10
    logits, _ = model(torch.randint(0, 5, (2, 4)))
    assert logits.shape == (2, 4, 5)


def test_char_rnn_rejects_float_tokens():
    with pytest.raises(ValueError, match="int64"):
        CharRNN(vocab_size=5, core="lstm", hidden_size=4)(torch.zeros(2, 3))


def test_importing_the_recurrent_models_does_not_import_lightning():
    code = (
        "import sys, models.char_model; "
        "assert not {'lightning', 'pytorch_lightning'} & {m.split('.')[0] for m in sys.modules}"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).parents[1])
