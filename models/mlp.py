"""A small multilayer perceptron on flattened images: the target of the continual-learning runs.

Bias-free by default: a hypernetwork generates matrices only (``hyper.wrap`` selects weights of
two or more axes), and a bias left as a direct parameter would be shared by every task and drift
with each new one, which the continual regulariser (``hyper/training/continual.py``) cannot see.
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn


class MLP(nn.Module):
    """Images (B, C, H, W) flattened, then Linear-ReLU layers and a linear classifier.

    Args:
        in_features: C·H·W of the images (64 for the 8×8 digits).
        hidden: the hidden layers' widths.
        num_classes: outputs (logits).
        bias: give every linear layer a bias.
    """

    def __init__(
        self, *, in_features: int = 64, hidden: Sequence[int] = (64, 64), num_classes: int = 10, bias: bool = False
    ) -> None:
        super().__init__()
        widths = [in_features, *hidden]
        layers: list[nn.Module] = [nn.Flatten()]
        for n_in, n_out in zip(widths, widths[1:]):
            layers += [nn.Linear(n_in, n_out, bias=bias), nn.ReLU()]
        layers.append(nn.Linear(widths[-1], num_classes, bias=bias))
        self.layers = nn.Sequential(*layers)
        self.config = {"in_features": in_features, "hidden": list(hidden), "num_classes": num_classes, "bias": bias}

    def forward(self, images: Tensor) -> Tensor:  # (B, C, H, W) -> (B, num_classes)
        return self.layers(images)
