"""Generator sharing: one generator per network, per kernel size (the default) or per layer."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from hyper import Hyper, count_parameters, wrap


class Mixed(nn.Module):
    """3×3 convs, a 1×1 conv and a matrix: three kernel sizes."""

    def __init__(self) -> None:
        super().__init__()
        self.a, self.b = nn.Conv2d(16, 32, 3, padding=1), nn.Conv2d(32, 32, 3, padding=1)
        self.c = nn.Conv2d(32, 16, 1)
        self.fc = nn.Linear(16, 32)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.c(self.b(self.a(x).relu()).relu()).mean((2, 3)))


def mixed(sharing: str, **knobs: object) -> nn.Module:
    torch.manual_seed(0)
    return wrap(Mixed(), Hyper(embedding_dim=8, hidden_dim=8, sharing=sharing, **knobs))


def generator_parameters(n_z: int, d: int, t: int, area: int) -> int:
    return d * (n_z + 1) * t + area * t * (d + 1)  # the paper's count, hyper/generator.py


def test_each_sharing_counts_its_generators() -> None:
    counts = {s: count_parameters(mixed(s)).breakdown["generator"] for s in ("network", "kernel", "layer")}
    assert counts["network"] == generator_parameters(8, 8, 16, 9)
    assert counts["kernel"] == sum(generator_parameters(8, 8, 16, area) for area in (9, 1, 1))
    assert counts["layer"] == sum(generator_parameters(8, 8, 16, area) for area in (9, 9, 1, 1))
    model = mixed("network")
    assert len({id(p) for p in model.parameters()}) == len(list(model.parameters()))
    assert len(model.state_dict()) == len(dict(model.named_parameters()))  # the one generator saved once


def test_one_network_generator_gives_smaller_kernels_the_centre_of_its_tiles() -> None:
    model = mixed("network")
    source = model.source
    weights = source()
    table = source.tables["1x1"]
    tiles = source.generator(table.embeddings)  # (T, o, i, 3, 3): the shared generator's own tiles
    one_by_one = tiles[..., 1, 1]  # the centre tap
    expected = one_by_one.view(1, 2, 16, 16).permute(0, 2, 1, 3).reshape(16, 32)  # 1 × 2 tiles of (o, i)
    torch.testing.assert_close(weights["c.weight"][:, :, 0, 0], expected)
    table = source.tables["matrix"]
    expected = source.generator(table.embeddings)[..., 1, 1].view(2, 1, 16, 16).permute(0, 2, 1, 3).reshape(32, 16)
    torch.testing.assert_close(weights["fc.weight"], expected)


@pytest.mark.parametrize("sharing", ["network", "kernel", "layer"])
def test_every_sharing_trains_its_generators_from_every_layer(sharing: str) -> None:
    model = mixed(sharing)
    model(torch.randn(2, 16, 6, 6)).square().sum().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters())
    if sharing == "network":  # the one generator's gradient gathers every table's
        model.zero_grad()
        model.source.tables["matrix"]()[0].sum().backward()
        assert model.source.generator.w_out.grad.abs().sum() > 0


def test_per_sample_conditions_work_with_one_network_generator() -> None:
    model = mixed("network", condition_dim=3)
    with torch.no_grad():
        for table in model.source.tables.values():
            table.film.weight.normal_(std=0.3)
    x, e = torch.randn(3, 16, 6, 6), torch.randn(3, 3)
    alone = torch.cat([model(x[i : i + 1], condition=e[i]) for i in range(3)])
    together = model(x, condition=e)
    assert ((together - alone).abs().max() / alone.abs().max()) <= 1e-5


def test_bad_sharing() -> None:
    with pytest.raises(ValueError, match="sharing must be one of kernel, network, layer"):
        Hyper(sharing="global")
    net = nn.Sequential(nn.Conv1d(16, 16, 3), nn.Flatten(), nn.Unflatten(1, (16, 1, 1)), nn.Conv2d(16, 16, 3))
    with pytest.raises(ValueError, match="one dimensionality"):
        wrap(net, Hyper(sharing="network"))
