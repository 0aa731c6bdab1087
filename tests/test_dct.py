"""The DCT weight source: the transform, the frequency order, counts by hand, bad knobs."""

import pytest
import torch

from hyper import DCT, count_parameters, materialize, source_from_name
from hyper.sources.dct import dct_basis, inverse_dct, lowest_frequencies
from models import LSTMStack, wide_resnet
from test_baseline_sources import NOT_GENERATED_16_1, WRN16_1
from test_init import check_every_layer, dct


def test_basis_is_orthonormal_and_the_transform_inverts():
    for n in (1, 3, 16):
        assert torch.allclose(dct_basis(n) @ dct_basis(n).T, torch.eye(n), atol=1e-6)
    w = torch.randn(4, 2, 3, 3)
    bases = [dct_basis(n) for n in w.shape]
    coefficients = w
    for axis, basis in enumerate(bases):  # forward DCT: contract each axis with D's columns
        coefficients = torch.movedim(torch.tensordot(coefficients, basis, dims=([axis], [1])), -1, axis)
    assert torch.allclose(inverse_dct(coefficients, bases), w, atol=1e-5)
    assert torch.allclose(coefficients.norm(), w.norm())  # energy kept


def test_lowest_frequencies_by_index_sum():
    # (2, 3): sums 0,1,2 / 1,2,3 -> flat order 0, 1, 3, 2, 4, 5 (ties in index order)
    assert lowest_frequencies((2, 3), 4).tolist() == [0, 1, 3, 2]
    assert lowest_frequencies((2, 3), 6).tolist() == [0, 1, 3, 2, 4, 5]


def test_all_coefficients_reproduce_any_kernel():
    model = wide_resnet(depth=10, width=1, source=DCT(coefficients=16 * 16 * 9))
    layer = model.layers[1]  # a 16 x 16 x 3 x 3 kernel: 2304 coefficients is all of them
    target = torch.randn(layer.shape)
    bases = [dct_basis(n) for n in layer.shape]
    grid = target
    for axis, basis in enumerate(bases):
        grid = torch.movedim(torch.tensordot(grid, basis, dims=([axis], [1])), -1, axis)
    order = lowest_frequencies(layer.shape, grid.numel())
    with torch.no_grad():
        model.source.coefficients[1].copy_(grid.reshape(-1)[order])
    assert torch.allclose(model.generated_weights()[layer.name], target, atol=1e-4)


@pytest.mark.parametrize("k", [1, 40])
def test_count_by_hand(k):
    count = count_parameters(wide_resnet(depth=16, width=1, source=DCT(coefficients=k)))
    assert count.breakdown["DCT coefficients"] == k * len(WRN16_1)
    assert count.trainable == NOT_GENERATED_16_1 + k * len(WRN16_1)
    tied = count_parameters(wide_resnet(depth=16, width=1, source=DCT(coefficients=k, tying_groups=1)))
    assert tied.breakdown["DCT coefficients"] == k * 8  # one per (stage, role, shape): 2 + 3 + 3


def test_initial_variance_per_layer_materialize_and_gradients(one_thread):
    # Layer by layer, within 5 sd of a chi-squared of k degrees of freedom (test_init.py): at
    # k = 1,024 that is ±11% averaged over 4 seeds (at the default 64 it would be ±44%).
    spec = source_from_name("dct", coefficients=1024)
    check_every_layer(lambda: wide_resnet(depth=16, width=2, source=spec), spec, dct)  # 2 / fan_in
    torch.manual_seed(0)
    model = wide_resnet(depth=16, width=2, source=spec).eval()
    x = torch.randn(2, 3, 8, 8)
    assert torch.allclose(materialize(model).eval()(x), model(x), rtol=1e-5, atol=1e-6)
    model(x).sum().backward()
    assert all(p.grad.abs().sum() > 0 for p in model.source.coefficients)


def test_an_lstm_stack_takes_dct_matrices():
    model = LSTMStack(input_size=8, hidden_size=16, num_layers=2, source=DCT(coefficients=10))
    output, _ = model(torch.randn(2, 5, 8))
    assert output.shape == (2, 5, 16)
    assert count_parameters(model).breakdown["DCT coefficients"] == 4 * 10


@pytest.mark.parametrize(
    "make, words",
    [
        (lambda: DCT(coefficients=0), ["coefficients must be a positive integer"]),
        (lambda: wide_resnet(depth=10, source=DCT(coefficients=3000)), ["coefficients must be at most 2304"]),
        (lambda: DCT(tying_groups=0), ["tying_groups"]),
    ],
)
def test_bad_knobs(make, words):
    with pytest.raises(ValueError) as error:
        make()
    assert all(word in str(error.value) for word in words)
