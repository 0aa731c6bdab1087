"""Per-sample weights: a training step with one generated weight set per sample, on CPU.

Run: ``python benchmarks/per_sample.py [--model convnet|mlp] [--batch 64] [--threads 1]
[--rounds N] [--warmup N]``

The model is wrapped with ``Hyper(condition_dim=16)`` and trained on a batch of 64 with a
``(64, 16)`` condition, so every sample runs with its own weights. Per round, interleaved (order
reversed every other round), one training step (forward, cross-entropy, backward, SGD) of each:

- per-sample: ``model(x, condition=e)``, the batched path (``hyper/per_sample.py``: one batched
  generator call, the target under ``torch.func.vmap``);
- loop: the same weights sample by sample, ``model(x[i:i+1], condition=e[i])`` in a Python loop
  (what a user without the batched path writes; the same gradients);
- shared: the same model with one ``(16,)`` condition for the batch (one weight set).

Targets (issue 20): loop / per-sample >= 10, per-sample / shared <= 3. Ratios of medians with a
bootstrap 90% interval over rounds (``timing.py``).

Models: ``convnet``: 3×3 convs 16-32-32 on 16×16 inputs, 16 in-channels, global pool, linear
head; ``mlp``: 256-512-512-10. All their convs and matrices are generated (16-channel tiles).
"""

from __future__ import annotations

import argparse
import statistics
import sys
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from hyper import Hyper, count_parameters, wrap
from timing import interleaved_times, ratio_interval, verdict  # benchmarks/timing.py, beside this script

CONDITION = 16


def convnet() -> tuple[nn.Module, tuple[int, ...]]:
    net = nn.Sequential(
        nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(),
        nn.Conv2d(32, 32, 3, padding=1, stride=2), nn.ReLU(),
        nn.Conv2d(32, 32, 3, padding=1), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(32, 16),
    )
    return net, (16, 16, 16)


def mlp() -> tuple[nn.Module, tuple[int, ...]]:
    net = nn.Sequential(nn.Linear(256, 512), nn.ReLU(), nn.Linear(512, 512), nn.ReLU(), nn.Linear(512, 16))
    return net, (256,)


MODELS: dict[str, Callable[[], tuple[nn.Module, tuple[int, ...]]]] = {"convnet": convnet, "mlp": mlp}


def step(model: nn.Module, forward: Callable[[], torch.Tensor], y: torch.Tensor) -> Callable[[], None]:
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)

    def run() -> None:
        optimizer.zero_grad(set_to_none=True)
        F.cross_entropy(forward(), y).backward()
        optimizer.step()

    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=sorted(MODELS), default="convnet")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--warmup", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    net, shape = MODELS[args.model]()
    model = wrap(net, Hyper(embedding_dim=16, hidden_dim=16, condition_dim=CONDITION))
    x, y = torch.randn(args.batch, *shape), torch.randint(0, 16, (args.batch,))
    e = torch.randn(args.batch, CONDITION)

    def loop() -> torch.Tensor:
        return torch.cat([model(x[i : i + 1], condition=e[i]) for i in range(args.batch)])

    runs = {
        "per-sample": step(model, lambda: model(x, condition=e), y),
        "loop": step(model, loop, y),
        "shared": step(model, lambda: model(x, condition=e[0]), y),
    }
    count = count_parameters(model)
    print(f"{args.model}: {count.trainable:,} trainable for {count.plain_equivalent:,} plain-equivalent per weight set; "
          f"batch {args.batch}, condition {CONDITION}, {args.threads} thread(s), {args.rounds} rounds")
    times = interleaved_times(runs, args.rounds, args.warmup)
    for name in runs:
        print(f"  {name:<11} median {1000 * statistics.median(times[name]):8.1f} ms per step")
    ratio, low, high = ratio_interval(times, "loop", "per-sample")
    print(f"  loop / per-sample: ratio of medians {ratio:.2f}, 90% interval {low:.2f}-{high:.2f}: "
          f"target >= 10 {'met' if low >= 10 else 'NOT met' if high < 10 else 'within noise'}")
    ratio, low, high = ratio_interval(times, "per-sample", "shared")
    print(f"  per-sample / shared: ratio of medians {ratio:.2f}, 90% interval {low:.2f}-{high:.2f}: {verdict(low, high, 3.0)}")


if __name__ == "__main__":
    sys.exit(main())
