"""What ``wrap`` generates when told nothing: the weight matrices a user would expect, in the layer
types torch ships (conv, linear, LSTM/GRU/RNN, multi-head attention), and a word when the result
is no smaller than the plain model."""

import warnings

import pytest
import torch
from torch import nn

from hyper import Hyper, count_parameters, materialize, wrap


class Recurrent(nn.Module):
    """An LSTM, a bidirectional two-layer GRU, an RNN with projections... and attention over them."""

    def __init__(self) -> None:
        super().__init__()
        self.lstm = nn.LSTM(32, 32, proj_size=16)
        self.gru = nn.GRU(16, 32, num_layers=2, bidirectional=True)
        self.attention = nn.MultiheadAttention(64, 4)
        self.head = nn.Linear(64, 10)  # 10 outputs: the tile does not divide it

    def forward(self, x):
        h, _ = self.lstm(x)
        h, _ = self.gru(h)
        return self.head(self.attention(h, h, h)[0])


def test_recurrent_and_attention_matrices_are_generated_by_default():
    torch.manual_seed(0)
    model = wrap(Recurrent(), Hyper(embedding_dim=8, hidden_dim=8))
    expected = {"lstm.weight_ih_l0", "lstm.weight_hh_l0", "lstm.weight_hr_l0", "attention.in_proj_weight",
                "attention.out_proj.weight"}
    expected |= {f"gru.weight_{kind}_l{layer}{direction}" for kind in ("ih", "hh") for layer in (0, 1)
                 for direction in ("", "_reverse")}
    assert set(model.source.provides) == expected  # not biases, not the 10-way head
    count = count_parameters(model)
    assert count.compression_ratio > 1
    x = torch.randn(5, 2, 32)
    model(x).square().mean().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.source.parameters())
    plain = materialize(model)
    assert type(plain) is Recurrent and sum(p.numel() for p in plain.parameters()) == count.plain_equivalent
    for mode in ("train", "eval"):  # eval takes attention's fused fast path
        getattr(model, mode)(), getattr(plain, mode)()
        with torch.no_grad():
            assert torch.allclose(plain(x), model(x), atol=1e-5)


def test_a_source_that_makes_the_model_larger_says_so():
    with pytest.warns(UserWarning, match=r"more than the plain model's 272 \(compression 0\.00x\)"):
        wrap(nn.Sequential(nn.Linear(16, 16)), Hyper())
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a compressing source is quiet
        wrap(nn.Sequential(nn.Linear(256, 256), nn.Linear(256, 256)), Hyper(embedding_dim=8, hidden_dim=8))
