"""count_parameters over a model that holds several generated networks: every part is summed."""

from collections import Counter

from torch import nn

from hyper import count_parameters
from models import HyperResNet, StaticHyperLSTM, create_model


def test_several_generated_networks_in_one_model_add_up() -> None:
    generated = {
        "hyper": HyperResNet(depth=10, width=1, embedding_dim=4, hidden_dim=8),
        "hyper_again": HyperResNet(depth=10, width=1, embedding_dim=8, hidden_dim=8),  # the same parts, other sizes
        "lstm": StaticHyperLSTM(input_size=16, hidden_size=16, num_layers=2, embedding_dim=4, hidden_dim=8),
        "tied": create_model("tied_wrn10_1"),
        "plain": create_model("wrn10_1", source="plain"),  # wrapped: its block convs count as direct weights
    }
    head = nn.Linear(10, 3)
    model = nn.ModuleDict({**generated, "head": head})
    alone = [count_parameters(network) for network in generated.values()]

    count = count_parameters(model)
    assert count.trainable == sum(c.trainable for c in alone) + 33 == sum(p.numel() for p in model.parameters())
    assert count.plain_equivalent == sum(c.plain_equivalent for c in alone) + 33
    expected = sum((Counter(c.breakdown) for c in alone), Counter({"not generated": 33}))
    assert count.breakdown == dict(expected)
    assert {"embeddings", "generator", "direct weights", "not generated"} <= set(count.breakdown)
