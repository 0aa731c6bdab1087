"""Every weight source starts every generated layer at its target variance, layer by layer.

The target is ``GeneratedLayer.init_std``²: gain² / fan_in (Kaiming: gain √2 for the WRN's ReLU
convs, 1 for the LSTM's matrices). Each layer is checked on its own, so an error in some layers
cannot hide behind an average over all of them.
"""

import pytest
import torch

from hyper import Hyper, LowRank, Plain, Templates, Tied
from models import LSTMStack, create_model

pytestmark = pytest.mark.usefixtures("one_thread")

# How far a layer's sample variance may stray from its target (as a ratio - 1). Direct weights
# are i.i.d. draws: over the smallest layer here (2,304 weights) the ratio's std is 0.03. A
# hypernetwork's layers share one random generator, and a rank-r product U·V has only r random
# directions, so their realised variance spreads more (over 30 seeds: 0.88-1.23 and 0.62-1.30).
SOURCES = [
    pytest.param(spec, tolerance, id=repr(spec))
    for spec, tolerance in [
        (Plain(), 0.15),
        (Tied(), 0.15),
        (Tied(tying_groups=2), 0.15),
        (Templates(num_templates=4), 0.15),
        (Hyper(), 0.3),
        (Hyper(tying_groups=1), 0.3),
        (LowRank(rank=8), 0.45),
        (LowRank(rank=8, tying_groups=1), 0.45),
    ]
]


def check_every_layer(model, tolerance: float) -> None:  # noqa: ANN001 - any GeneratedNetwork
    weights = {**dict(model.target.named_parameters()), **model.generated_weights()}  # plain: the target's
    for layer in model.layers:
        w, target = weights[layer.name], layer.init_std**2
        assert abs(w.var().item() / target - 1) < tolerance, (layer.name, w.var().item() / target)
        assert abs(w.mean().item()) < 0.1 * layer.init_std, (layer.name, w.mean().item())


@pytest.mark.parametrize(("spec", "tolerance"), SOURCES)
def test_every_source_starts_each_conv_at_kaiming_variance(spec, tolerance: float) -> None:  # noqa: ANN001
    torch.manual_seed(0)
    check_every_layer(create_model("wrn16_1", source=spec), tolerance)  # 2 / fan_in


# input_size = hidden_size: the plain LN-LSTM's per-gate orthogonal init has variance
# 1 / max(hidden, input), which is 1 / fan_in only when input_size >= hidden_size.
@pytest.mark.parametrize(("spec", "tolerance"), SOURCES)
def test_every_source_starts_each_lstm_matrix_at_unit_gain_variance(spec, tolerance: float) -> None:  # noqa: ANN001
    torch.manual_seed(0)
    check_every_layer(LSTMStack(input_size=32, hidden_size=32, num_layers=4, source=spec), tolerance)  # 1 / fan_in
