"""Every weight source starts every generated layer at its target variance, layer by layer.

The target is ``GeneratedLayer.init_std``²: gain² / fan_in (Kaiming: gain √2 for the WRN's ReLU
convs, 1 for the LSTM's matrices). Each layer is checked on its own, so an error in some layers
cannot hide behind an average over all of them. The sources are the registry's
(``hyper.SOURCES``): a new source must say here how its realised variance spreads.

How far a layer may stray: a source's realised variance is random, and how much it spreads
follows from how many independent draws make it. For a layer of N weights, with r = realised
variance / target, its standard deviation is

- i.i.d. Gaussian weights (plain, tied, templates: a unit-norm mix of i.i.d. templates):
  sqrt(2 / N), a chi-squared of N degrees of freedom (the plain LSTM's orthogonal matrices
  spread less still);
- DCT, k coefficients: sqrt(2 / k), since the transform is orthonormal, ‖W‖² = ‖C‖² is a
  chi-squared of k degrees of freedom whatever N;
- low rank U·V (out × fan, rank r): sqrt(2 / (r·out) + 2 (out + r + 1) / (r·out·fan)), the
  variance of tr(UᵀU·VVᵀ) for Gaussian factors (Wishart moments);
- hypernetwork (tiles of t × t × f, N_z-dim embeddings on a sphere, hidden size d, T tiles in
  the layer; O = t·f): sqrt(2 / (d·O) + (2 / t)(1/T + (T - 1) / (T·N_z))(O + d + 1) / (d·O)):
  the generator's output map is shared by every layer (first term), each tile's t in-channel
  maps are Gaussian quadratic forms in its embedding (second).

The layer's mean, in units of init_std, has standard deviation 1 / sqrt(N) (1 / sqrt(k) for
DCT: the mean is the lowest-frequency coefficient alone). Over 60 seeds, the measured spreads
of every layer here are 0.8-1.25 times these. Each layer's variance and mean are averaged over
``SEEDS`` initialisations and must lie within 5 standard deviations of that average
(sd / sqrt(len(SEEDS))): a layer further out than 5 sd would happen by chance less than once
in a million.
"""

import math
import statistics
from collections.abc import Callable

import pytest
import torch

from hyper import DCT, SOURCES, GeneratedLayer, Hyper, LowRank, Plain, SourceSpec, Templates, Tied
from models import LSTMStack, create_model

pytestmark = pytest.mark.usefixtures("one_thread")

SEEDS = range(4)
BAND = 5  # standard deviations


def iid(layer: GeneratedLayer, spec: SourceSpec) -> tuple[float, float]:
    """(sd of the variance ratio, sd of the mean / init_std) of a layer of i.i.d. Gaussian weights."""
    return math.sqrt(2 / layer.numel), 1 / math.sqrt(layer.numel)


def dct(layer: GeneratedLayer, spec: DCT) -> tuple[float, float]:
    return math.sqrt(2 / spec.coefficients), 1 / math.sqrt(spec.coefficients)


def low_rank(layer: GeneratedLayer, spec: LowRank) -> tuple[float, float]:
    r, out, fan = spec.rank, layer.shape[0], layer.fan_in
    return math.sqrt(2 / (r * out) + 2 * (out + r + 1) / (r * out * fan)), 1 / math.sqrt(layer.numel)


def hypernetwork(layer: GeneratedLayer, spec: Hyper) -> tuple[float, float]:
    t, d, n_z = spec.tile_channels, spec.hidden_dim, spec.embedding_dim
    o = t * math.prod(layer.kernel_size)
    tiles = math.ceil(layer.shape[0] / t) * math.ceil(layer.shape[1] / t)
    shared = 2 / (d * o)
    own = 2 / t * (1 / tiles + (tiles - 1) / (tiles * n_z)) * (o + d + 1) / (d * o)
    return math.sqrt(shared + own), 1 / math.sqrt(layer.numel)


Spread = Callable[[GeneratedLayer, SourceSpec], tuple[float, float]]
# Registry name -> (the specs checked, how a layer's realised variance and mean spread).
# DCT with 1,024 coefficients (of the smallest layer's 2,304): the default 64 would allow ±88%.
CHECKED: dict[str, tuple[list[SourceSpec], Spread]] = {
    "plain": ([Plain()], iid),
    "tied": ([Tied(), Tied(tying_groups=2)], iid),
    "templates": ([Templates(num_templates=4)], iid),
    "hyper": ([Hyper(), Hyper(tying_groups=1)], hypernetwork),
    "lowrank": ([LowRank(rank=8), LowRank(rank=8, tying_groups=1)], low_rank),
    "dct": ([DCT(coefficients=1024), DCT(coefficients=1024, tying_groups=1)], dct),
}
SPECS = [pytest.param(spec, spread, id=repr(spec)) for specs, spread in CHECKED.values() for spec in specs]


def test_every_registered_source_is_checked() -> None:
    assert set(CHECKED) == set(SOURCES)
    assert all(type(spec) is SOURCES[name] for name, (specs, _) in CHECKED.items() for spec in specs)


def check_every_layer(make: Callable[[], torch.nn.Module], spec: SourceSpec, spread: Spread) -> None:
    """Each layer's variance / target and mean / init_std, averaged over ``SEEDS``, within the band."""
    ratios: dict[str, list[float]] = {}
    means: dict[str, list[float]] = {}
    for seed in SEEDS:
        torch.manual_seed(seed)
        model = make()
        weights = {**dict(model.target.named_parameters()), **model.generated_weights()}  # plain: the target's
        for layer in model.layers:
            w = weights[layer.name]
            ratios.setdefault(layer.name, []).append(w.var().item() / layer.init_std**2)
            means.setdefault(layer.name, []).append(w.mean().item() / layer.init_std)
    for layer in model.layers:
        ratio_sd, mean_sd = (BAND * sd / math.sqrt(len(SEEDS)) for sd in spread(layer, spec))
        ratio, mean = statistics.fmean(ratios[layer.name]), statistics.fmean(means[layer.name])
        assert abs(ratio - 1) < ratio_sd, (layer.name, ratio, ratio_sd)
        assert abs(mean) < mean_sd, (layer.name, mean, mean_sd)


@pytest.mark.parametrize(("spec", "spread"), SPECS)
def test_every_source_starts_each_conv_at_kaiming_variance(spec: SourceSpec, spread: Spread) -> None:
    check_every_layer(lambda: create_model("wrn16_1", source=spec), spec, spread)  # 2 / fan_in


# input_size = hidden_size: the plain LN-LSTM's per-gate orthogonal init has variance
# 1 / max(hidden, input), which is 1 / fan_in only when input_size >= hidden_size.
@pytest.mark.parametrize(("spec", "spread"), SPECS)
def test_every_source_starts_each_lstm_matrix_at_unit_gain_variance(spec: SourceSpec, spread: Spread) -> None:
    check_every_layer(lambda: LSTMStack(input_size=32, hidden_size=32, num_layers=4, source=spec), spec, spread)  # 1 / fan_in
