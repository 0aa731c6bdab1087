"""Training-step and inference time of hyper WRN-40-1 against plain WRN-40-1, on CPU.

Run: ``python benchmarks/step_time.py [--rounds 10] [--batch 64] [--threads 2] [--system-malloc]``

Models are timed interleaved (hyper, plain, hyper, plain, ...) so that drift in the machine's
load hits both alike; the figures are medians, the verdicts ratios. Targets: training step
hyper / plain <= 1.05 (generating 0.56M weights from 242 embeddings costs a few MFLOPs against
the convolutions' GFLOPs), inference materialized / plain <= 1.01.

Allocator: unless ``--system-malloc`` is given, the script re-runs itself with glibc's mmap and
trim thresholds raised, so freed blocks are reused instead of returned to the OS. On machines
where page faults are expensive (sandboxes, some VMs) glibc's defaults otherwise make every
fresh multi-MB tensor cost more than the arithmetic in it; PyTorch's CPU performance guide
recommends a caching allocator (jemalloc/tcmalloc) for the same reason. Both models always run
under the same allocator.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from hyper import materialize
from models import create_model
from timing import interleaved_times  # benchmarks/timing.py, beside this script


def training_step(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> Callable[[], None]:
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        F.cross_entropy(model(x), y).backward()
        optimizer.step()

    return step


def inference(model: nn.Module, x: torch.Tensor) -> Callable[[], None]:
    model.eval()

    def run() -> None:
        with torch.inference_mode():
            model(x)

    return run


def interleaved_medians(runs: dict[str, Callable[[], None]], rounds: int, warmup: int) -> dict[str, float]:
    """Median seconds per call of each run, timed round-robin."""
    return {name: statistics.median(t) for name, t in interleaved_times(runs, rounds, warmup).items()}


def report(title: str, medians: dict[str, float], baseline: str, target: float) -> None:
    print(f"\n{title}")
    for name, seconds in medians.items():
        print(f"  {name:<24} {seconds * 1e3:9.1f} ms   x{seconds / medians[baseline]:.3f}")
    ratio = next(s for name, s in medians.items() if name != baseline) / medians[baseline]
    print(f"  ratio {ratio:.3f} (target <= {target}): {'met' if ratio <= target else 'NOT met'}")


CACHING_MALLOC = {"MALLOC_MMAP_THRESHOLD_": str(2**32), "MALLOC_TRIM_THRESHOLD_": str(2**32)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--system-malloc", action="store_true", help="keep glibc's default thresholds")
    args = parser.parse_args()
    if not args.system_malloc and any(os.environ.get(k) != v for k, v in CACHING_MALLOC.items()):
        os.execve(sys.executable, [sys.executable, *sys.argv], {**os.environ, **CACHING_MALLOC})
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    x, y = torch.randn(args.batch, 3, 32, 32), torch.randint(0, 10, (args.batch,))
    hyper, plain = create_model("hyper_wrn40_1"), create_model("wrn40_1")
    allocator = "glibc defaults" if args.system_malloc else "glibc, caching thresholds"
    print(f"batch {args.batch}, 32x32x3, {args.threads} threads, {args.rounds} rounds after "
          f"{args.warmup} warm-up, allocator: {allocator}")

    train = interleaved_medians(
        {"hyper_wrn40_1": training_step(hyper, x, y), "wrn40_1": training_step(plain, x, y)},
        args.rounds, args.warmup,
    )
    report("training step (forward, loss, backward, SGD step)", train, "wrn40_1", 1.05)

    baked = materialize(hyper)
    infer = interleaved_medians(
        {"materialized hyper": inference(baked, x), "wrn40_1": inference(plain, x)},
        args.rounds, args.warmup,
    )
    report("inference (eval, batch forward)", infer, "wrn40_1", 1.01)


if __name__ == "__main__":
    main()
