"""The static-hyper LSTM stack: tying ends, counts, state carrying, materialize."""

import pytest
import torch

from hyper import Hyper, LowRank, Templates, Tied, count_parameters, materialize
from models import LNLSTM, LSTMStack, StaticHyperLSTM

I, H, L = 16, 32, 3


pytestmark = pytest.mark.usefixtures("one_thread")


def test_plain_stack_is_the_ln_lstm():
    stack = LSTMStack(input_size=I, hidden_size=H, num_layers=L)
    plain = LNLSTM(input_size=I, hidden_size=H, num_layers=L)
    assert count_parameters(stack).trainable == sum(p.numel() for p in plain.parameters())


def test_fully_tied_shares_every_layer_from_the_second():
    stack = StaticHyperLSTM(input_size=I, hidden_size=H, num_layers=L, tying_groups=1)
    w = stack.generated_weights()
    for l in (1, 2):
        assert torch.equal(w[f"layers.{l}.weight_h"], w["layers.0.weight_h"])
    assert torch.equal(w["layers.2.weight_x"], w["layers.1.weight_x"])
    assert w["layers.0.weight_x"].shape == (4 * H, I)  # its own shape, its own weight
    untied = StaticHyperLSTM(input_size=I, hidden_size=H, num_layers=L).generated_weights()
    assert not torch.allclose(untied["layers.1.weight_h"], untied["layers.2.weight_h"])


def test_hyper_count():
    nz, d = 8, 16
    stack = StaticHyperLSTM(input_size=I, hidden_size=H, num_layers=L, embedding_dim=nz, hidden_dim=d)
    tiles = (4 * H // 16) * (I // 16) + (4 * H // 16) * (H // 16) * (2 * L - 1)
    parts = count_parameters(stack).breakdown
    assert parts["embeddings"] == nz * tiles
    assert parts["generator"] == d * (nz + 1) * 16 + 16 * (d + 1)  # 1×1 "kernel": f = 1


def test_state_carrying_and_materialize():
    torch.manual_seed(0)
    stack = LSTMStack(input_size=I, hidden_size=H, num_layers=2, source=Hyper(embedding_dim=4))
    x = torch.randn(2, 10, I)
    whole, state = stack(x)
    first, s1 = stack(x[:, :6])
    second, s2 = stack(x[:, 6:], s1)
    assert torch.allclose(torch.cat([first, second], 1), whole, atol=1e-6)
    assert all(torch.allclose(a, b, atol=1e-6) for a, b in zip(s2, state))
    plain = materialize(stack)
    assert isinstance(plain, LNLSTM)
    assert torch.allclose(plain(x)[0], whole, atol=1e-6)


@pytest.mark.parametrize("spec", [Hyper(embedding_dim=4), Tied(), LowRank(rank=2), Templates(num_templates=2)])
def test_gradients_reach_every_parameter(spec):
    torch.manual_seed(0)
    stack = LSTMStack(input_size=I, hidden_size=H, num_layers=2, source=spec)
    stack(torch.randn(2, 5, I))[0].square().sum().backward()
    for name, p in stack.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_initial_scale_matches_the_plain_lstm():
    torch.manual_seed(0)
    w = StaticHyperLSTM(input_size=I, hidden_size=64, num_layers=2).generated_weights()
    assert abs(w["layers.1.weight_h"].var().item() * 64 - 1) < 0.2  # gain 1: Var = 1 / fan_in


def test_tile_must_divide():
    with pytest.raises(ValueError, match="tile_channels"):
        StaticHyperLSTM(input_size=10, hidden_size=H)


def test_a_generated_core_inside_a_char_model_is_counted_as_generated():
    from models import CharRNN

    core = StaticHyperLSTM(input_size=I, hidden_size=H, num_layers=2, embedding_dim=4)
    model = CharRNN(vocab_size=11, core=core)
    inner, outer = count_parameters(core), count_parameters(model)
    head_and_embedding = 11 * I + (H * 11 + 11)
    assert outer.trainable == inner.trainable + head_and_embedding
    assert outer.plain_equivalent == inner.plain_equivalent + head_and_embedding
    assert outer.breakdown["not generated"] == inner.breakdown["not generated"] + head_and_embedding
    assert model.config["core"] == "StaticHyperLSTM" and model.config["hidden_size"] == H
