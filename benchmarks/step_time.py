"""Training-step time of a hypernetwork against its plain network, on CPU, with the breakdown.

Run: ``python benchmarks/step_time.py [--model wrn40_1|wrn28_10|resnet18] [--batch N]
[--threads 1] [--rounds N] [--malloc default|caching]``

Per round, interleaved (the order reversed every other round, so drift in the machine's load hits
all alike), one call of each of:

- hyper step, plain step: forward, cross-entropy, backward, SGD step (momentum 0.9);
- generation: the weight source alone, forward and backward (given gradients for every weight);
- plain fwd+bwd: the plain step without its optimizer step;
- hyper target fwd+bwd: the target run through ``functional_call`` with fixed weights that
  require gradients: the wrapper's cost without the generation.

The verdicts are ratios of medians with a bootstrap 90% interval over rounds; a target is called
met or not only when the whole interval lies on one side of it, else "within noise". The
breakdown divides the hyper step's extra time (medians of the same rounds) into generation, the
wrapper's own cost, and the optimizer step the hypernetwork saves (it updates far fewer
parameters). Targets: WRN-40-1 step <= 1.02, WRN-28-10 step <= 1.03 at batch 32 and generation
<= 300 ms at 1 thread, materialized inference <= 1.01 of the plain model's.

Allocator: by default glibc's own (what a user gets); ``--malloc caching`` re-runs the script with
glibc's mmap and trim thresholds raised so freed blocks are kept for reuse, to show how much of a
difference is page faults on fresh memory. Both models always run under the same allocator.
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

from hyper import Hyper, materialize, wrap
from models import create_model, resnet18
from timing import interleaved_times, ratio_interval, verdict  # benchmarks/timing.py, beside this script

# model -> (build hyper, build plain, input shape, batch, rounds, step target)
MODELS: dict[str, tuple[Callable[[], nn.Module], Callable[[], nn.Module], tuple[int, ...], int, int, float]] = {
    "wrn40_1": (lambda: create_model("hyper_wrn40_1"), lambda: create_model("wrn40_1"), (3, 32, 32), 64, 20, 1.02),
    "wrn28_10": (lambda: create_model("hyper_wrn28_10"), lambda: create_model("wrn28_10"), (3, 32, 32), 32, 8, 1.03),
    "resnet18": (lambda: wrap(resnet18(num_classes=10), Hyper()), lambda: resnet18(num_classes=10), (3, 112, 112), 32, 12, 1.03),
}
CACHING_MALLOC = {"MALLOC_MMAP_THRESHOLD_": str(2**32), "MALLOC_TRIM_THRESHOLD_": str(2**32)}


def training_step(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, optimize: bool = True) -> Callable[[], None]:
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        F.cross_entropy(model(x), y).backward()
        if optimize:
            optimizer.step()

    return step


def generation(model: nn.Module) -> Callable[[], None]:
    """Forward and backward of the weight source alone: what the hypernetwork adds to a step."""
    grads = {name: torch.randn_like(w) for name, w in model.generated_weights().items()}

    def run() -> None:
        weights = model.generated_weights()
        torch.autograd.backward([weights[k] for k in grads], [grads[k] for k in grads])

    return run


def target_only(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> Callable[[], None]:
    """The wrapped target's forward and backward with fixed weights: the wrapper without generation."""
    with torch.no_grad():
        fixed = {name: w.clone().requires_grad_() for name, w in model.generated_weights().items()}

    def run() -> None:
        for w in fixed.values():
            w.grad = None
        F.cross_entropy(model(x, weights=fixed), y).backward()

    return run


def inference(model: nn.Module, x: torch.Tensor) -> Callable[[], None]:
    model.eval()

    def run() -> None:
        with torch.inference_mode():
            model(x)

    return run


def median_ms(times: dict[str, list[float]], name: str) -> float:
    return statistics.median(times[name]) * 1e3


def report_ratio(times: dict[str, list[float]], name: str, baseline: str, target: float) -> None:
    ratio, low, high = ratio_interval(times, name, baseline)
    print(f"  {name} / {baseline}: ratio of medians {ratio:.3f}, 90% interval {low:.3f}-{high:.3f}: "
          f"{verdict(low, high, target)}")


def report_steps(times: dict[str, list[float]], target: float, generated: int) -> None:
    print("\ntraining step (forward, loss, backward, SGD step), medians:")
    for name in times:
        print(f"  {name:<24} {median_ms(times, name):9.1f} ms")
    report_ratio(times, "hyper step", "plain step", target)
    extra = median_ms(times, "hyper step") - median_ms(times, "plain step")
    wrapper = median_ms(times, "hyper target fwd+bwd") - median_ms(times, "plain fwd+bwd")
    optimizer = median_ms(times, "plain step") - median_ms(times, "plain fwd+bwd")
    gen = median_ms(times, "generation")
    print(f"  hyper - plain = {extra:+.1f} ms: generation {gen:+.1f}, wrapper (functional_call, grads of "
          f"generated weights) {wrapper:+.1f}, plain's optimizer step it skips {-optimizer:+.1f}, "
          f"rest {extra - gen - wrapper + optimizer:+.1f}")
    print(f"  generation: {gen:.1f} ms forward + backward for {generated / 1e6:.2f}M generated weights "
          f"= {gen / (generated / 1e6):.1f} ms per million")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", choices=sorted(MODELS), default="wrn40_1")
    parser.add_argument("--batch", type=int, help="default: 64 for wrn40_1, 32 for the others")
    parser.add_argument("--rounds", type=int, help="timed rounds (default: 20, 12 for resnet18, 8 for wrn28_10)")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--malloc", choices=("default", "caching"), default="default")
    args = parser.parse_args()
    if args.malloc == "caching" and any(os.environ.get(k) != v for k, v in CACHING_MALLOC.items()):
        os.execve(sys.executable, [sys.executable, *sys.argv], {**os.environ, **CACHING_MALLOC})
    make_hyper, make_plain, shape, batch, rounds, target = MODELS[args.model]
    batch, rounds = args.batch or batch, args.rounds or rounds
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    x, y = torch.randn(batch, *shape), torch.randint(0, 10, (batch,))
    hyper, plain = make_hyper(), make_plain()
    generated = sum(w.numel() for w in hyper.generated_weights().values())
    print(f"{args.model}: batch {batch}, {'x'.join(map(str, shape))}, {args.threads} thread(s), {rounds} rounds "
          f"after {args.warmup} warm-up, glibc malloc {args.malloc}, torch {torch.__version__}")

    steps = interleaved_times({
        "hyper step": training_step(hyper, x, y),
        "plain step": training_step(plain, x, y),
        "generation": generation(hyper),
        "hyper target fwd+bwd": target_only(hyper, x, y),
        "plain fwd+bwd": training_step(plain, x, y, optimize=False),
    }, rounds, args.warmup)
    report_steps(steps, target, generated)

    baked = materialize(hyper)
    infer = interleaved_times({"materialized": inference(baked, x), "plain": inference(plain, x)}, rounds, args.warmup)
    print("\ninference (eval, one batch), medians:")
    for name in infer:
        print(f"  {name:<24} {median_ms(infer, name):9.1f} ms")
    report_ratio(infer, "materialized", "plain", 1.01)


if __name__ == "__main__":
    main()
