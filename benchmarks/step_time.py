"""Training-step time of a hypernetwork against its plain network, on CPU, with the breakdown.

Run: ``python benchmarks/step_time.py [--model wrn40_1|wrn28_10|resnet18|char_transformer]
[--batch N] [--threads 1] [--rounds N] [--malloc default|caching]``

``char_transformer`` is the LLM-shaped path: the character transformer (6 blocks of width 384,
context 256, as nanoGPT's character model; 65 characters) with its blocks' matrices generated
(``HyperCharTransformer``'s selection, N_z 16), on 128-token windows, next-token cross-entropy.

Per round, interleaved (the order reversed every other round, so drift in the machine's load hits
all alike), one call of each of:

- hyper step, plain step: forward, cross-entropy, backward, SGD step (momentum 0.9), each timed
  whole and phase by phase inside the same call (generation forward, the target's forward and
  loss, backward, optimizer step), so the phases of a step add up to that step;
- generation: the weight source alone, forward and backward (given gradients for every weight).

The verdicts are ratios of medians with a bootstrap 90% interval over rounds; a target is called
met or not only when the whole interval lies on one side of it, else "within noise". The
breakdown sets the hyper step's phases beside the plain step's: what generation adds forward,
what running the target through ``functional_call`` adds, what the backward adds (the
generation's backward and the gradients of the generated weights), and the optimizer time the
hypernetwork saves (it updates far fewer parameters). Targets: WRN-40-1 step <= 1.02, WRN-28-10
step <= 1.03 at batch 32 and generation <= 300 ms at 1 thread, materialized inference <= 1.01 of
the plain model's.

Allocator: by default glibc's own (what a user gets); ``--malloc caching`` re-runs the script with
glibc's mmap and trim thresholds raised so freed blocks are kept for reuse, to show how much of a
difference is page faults on fresh memory. Both models always run under the same allocator.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from hyper import Hyper, materialize, wrap
from models import CharTransformer, create_model, resnet18
from timing import interleaved_times, ratio_interval, verdict  # benchmarks/timing.py, beside this script

VOCAB, WINDOW = 65, 128  # the character transformer's row: tinyshakespeare's characters


def char_transformer() -> nn.Module:
    torch.manual_seed(0)
    return CharTransformer(vocab_size=VOCAB, num_layers=6, num_heads=6, embed_dim=384, context=256)


# model -> (build hyper, build plain, input shape (or "tokens"), batch, rounds, step target)
MODELS: dict[str, tuple[Callable[[], nn.Module], Callable[[], nn.Module], tuple[int, ...] | str, int, int, float]] = {
    "wrn40_1": (lambda: create_model("hyper_wrn40_1"), lambda: create_model("wrn40_1"), (3, 32, 32), 64, 20, 1.02),
    "wrn28_10": (lambda: create_model("hyper_wrn28_10"), lambda: create_model("wrn28_10"), (3, 32, 32), 32, 8, 1.03),
    "resnet18": (lambda: wrap(resnet18(num_classes=10), Hyper()), lambda: resnet18(num_classes=10), (3, 112, 112), 32, 12, 1.03),
    "char_transformer": (lambda: wrap(char_transformer(), Hyper(embedding_dim=16), include="blocks.*"),
                         char_transformer, "tokens", 16, 12, 1.03),
}
CACHING_MALLOC = {"MALLOC_MMAP_THRESHOLD_": str(2**32), "MALLOC_TRIM_THRESHOLD_": str(2**32)}


PHASES = ("generation forward", "forward + loss", "backward", "optimizer step")


def training_step(model: nn.Module, x: torch.Tensor, y: torch.Tensor, phases: dict[str, list[float]]) -> Callable[[], None]:
    """One SGD step; each call appends its phases' seconds to ``phases`` (generation forward is
    0 for a plain model)."""
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    generated = hasattr(model, "generated_weights")
    for name in PHASES:
        phases[name] = []

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        t0 = time.perf_counter()
        weights = model.generated_weights() if generated else None
        t1 = time.perf_counter()
        output = model(x, weights=weights) if generated else model(x)
        if isinstance(output, tuple):  # a language model: (logits (B, T, V), state)
            output, y_ = output[0].flatten(0, 1), y.flatten()
        else:
            y_ = y
        loss = F.cross_entropy(output, y_)
        t2 = time.perf_counter()
        loss.backward()
        t3 = time.perf_counter()
        optimizer.step()
        t4 = time.perf_counter()
        for name, seconds in zip(PHASES, (t1 - t0, t2 - t1, t3 - t2, t4 - t3)):
            phases[name].append(seconds)

    return step


def generation(model: nn.Module) -> Callable[[], None]:
    """Forward and backward of the weight source alone: what the hypernetwork adds to a step."""
    grads = {name: torch.randn_like(w) for name, w in model.generated_weights().items()}

    def run() -> None:
        weights = model.generated_weights()
        torch.autograd.backward([weights[k] for k in grads], [grads[k] for k in grads])

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


def report_steps(times: dict[str, list[float]], phases: dict[str, dict[str, list[float]]], target: float,
                 generated: int, warmup: int) -> None:
    print("\ntraining step (forward, loss, backward, SGD step), medians:")
    for name in times:
        print(f"  {name:<24} {median_ms(times, name):9.1f} ms")
    report_ratio(times, "hyper step", "plain step", target)
    extra = median_ms(times, "hyper step") - median_ms(times, "plain step")
    print(f"  hyper - plain = {extra:+.1f} ms; phase by phase inside the same steps (medians, ms):")
    print(f"    {'phase':<20} {'hyper':>9} {'plain':>9} {'difference':>11}")
    total = {"hyper": 0.0, "plain": 0.0}
    for phase in PHASES:
        medians = {m: statistics.median(phases[m][phase][warmup:]) * 1e3 for m in total}
        for m in total:
            total[m] += medians[m]
        print(f"    {phase:<20} {medians['hyper']:9.1f} {medians['plain']:9.1f} {medians['hyper'] - medians['plain']:+11.1f}")
    print(f"    {'sum of phases':<20} {total['hyper']:9.1f} {total['plain']:9.1f} {total['hyper'] - total['plain']:+11.1f}")
    gen = median_ms(times, "generation")
    print(f"  generation alone: {gen:.1f} ms forward + backward for {generated / 1e6:.2f}M generated weights "
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
    if shape == "tokens":
        tokens = torch.randint(0, VOCAB, (batch, WINDOW + 1))
        x, y = tokens[:, :-1], tokens[:, 1:]
    else:
        x, y = torch.randn(batch, *shape), torch.randint(0, 10, (batch,))
    hyper, plain = make_hyper(), make_plain()
    generated = sum(w.numel() for w in hyper.generated_weights().values())
    described = f"{WINDOW} tokens" if shape == "tokens" else "x".join(map(str, shape))
    print(f"{args.model}: batch {batch}, {described}, {args.threads} thread(s), {rounds} rounds "
          f"after {args.warmup} warm-up, glibc malloc {args.malloc}, torch {torch.__version__}")

    phases: dict[str, dict[str, list[float]]] = {"hyper": {}, "plain": {}}
    steps = interleaved_times({
        "hyper step": training_step(hyper, x, y, phases["hyper"]),
        "plain step": training_step(plain, x, y, phases["plain"]),
        "generation": generation(hyper),
    }, rounds, args.warmup)
    report_steps(steps, phases, target, generated, args.warmup)

    baked = materialize(hyper)
    infer = interleaved_times({"materialized": inference(baked, x), "plain": inference(plain, x)}, rounds, args.warmup)
    print("\ninference (eval, one batch), medians:")
    for name in infer:
        print(f"  {name:<24} {median_ms(infer, name):9.1f} ms")
    report_ratio(infer, "materialized", "plain", 1.01)


if __name__ == "__main__":
    main()
