"""Training-step and inference time of hyper WRN-40-1 against plain WRN-40-1, on CPU.

Run: ``python benchmarks/step_time.py [--rounds 20] [--batch 64] [--threads 2] [--system-malloc]``

Models are timed interleaved (hyper, plain, plain, hyper, ...) so that drift in the machine's
load hits both alike; the verdict is the ratio of medians, printed with the interquartile
range of per-round paired ratios as the noise level (on shared machines it exceeds the effect),
and the generation's own cost is timed alone, a figure that noise barely moves. Targets: training step
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
from timing import interleaved_times, paired_ratio  # benchmarks/timing.py, beside this script


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


def report(title: str, times: dict[str, list[float]], baseline: str, target: float) -> None:
    print(f"\n{title}")
    for name, seconds in times.items():
        print(f"  {name:<24} median {statistics.median(seconds) * 1e3:9.1f} ms")
    name = next(n for n in times if n != baseline)
    ratio = statistics.median(times[name]) / statistics.median(times[baseline])
    _, low, high = paired_ratio(times, name, baseline)
    verdict = "met" if ratio <= target else "NOT met"
    print(f"  ratio of medians {ratio:.3f} (target <= {target}): {verdict}; "
          f"noise: per-round paired ratios IQR {low:.3f}-{high:.3f}")


def generation(model: nn.Module) -> Callable[[], None]:
    """Forward and backward of the weight source alone: what the hypernetwork adds to a step."""
    grads = {name: torch.randn_like(w) for name, w in model.generated_weights().items()}

    def run() -> None:
        weights = model.generated_weights()
        torch.autograd.backward([weights[k] for k in grads], [grads[k] for k in grads])

    return run


CACHING_MALLOC = {"MALLOC_MMAP_THRESHOLD_": str(2**32), "MALLOC_TRIM_THRESHOLD_": str(2**32)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=20)
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

    train = interleaved_times(
        {"hyper_wrn40_1": training_step(hyper, x, y), "wrn40_1": training_step(plain, x, y)},
        args.rounds, args.warmup,
    )
    report("training step (forward, loss, backward, SGD step)", train, "wrn40_1", 1.05)
    alone = statistics.median(interleaved_times({"generation": generation(hyper)}, args.rounds, args.warmup)["generation"])
    share = alone / statistics.median(train["wrn40_1"])
    print(f"  generation alone (242 tiles, forward + backward): {alone * 1e3:.1f} ms = {share:.1%} of a plain step")

    baked = materialize(hyper)
    infer = interleaved_times(
        {"materialized hyper": inference(baked, x), "wrn40_1": inference(plain, x)},
        args.rounds, args.warmup,
    )
    report("inference (eval, batch forward)", infer, "wrn40_1", 1.01)


if __name__ == "__main__":
    main()
