"""Training-step time of HyperLSTM and LN-LSTM against torch's fused nn.LSTM, on CPU.

Run: ``python benchmarks/lstm_step_time.py [--rounds 12] [--warmup 2] [--threads 1]
[--allocator both|default|caching] [--clock wall|cpu]``

One step = forward through the character model (embedding → core → head over a vocabulary of
50), cross-entropy, backward, Adam step; batch 32, sequence 100, hidden 256, HyperLSTM with
hyper LSTM 128 and N_z 16. Rows:

- HyperLSTM, LN-LSTM and nn.LSTM at equal hidden size (256): the per-step cost of the
  architecture (targets: HyperLSTM ≤ 2.5× and LN-LSTM ≤ 1.25× nn.LSTM);
- LN-LSTM and nn.LSTM with the hidden size that matches HyperLSTM's parameter count: the
  comparison a fixed parameter budget makes.

Models are timed round-robin, the order reversed every other round, so drift in the machine's
load hits all alike. The figure is the ratio of medians to nn.LSTM at hidden 256, with its
bootstrap 90% interval over rounds (``benchmarks/timing.py``). A verdict against a target is
given only when that interval lies wholly on one side of it; otherwise it says "within noise".

Allocator: with ``--allocator both`` (the default) the figures are printed twice, first under
glibc's default malloc settings (what a user gets: fresh multi-MB tensors are mmapped and page
faulted in every step, which costs nn.LSTM's oneDNN path too), then after re-running the
script with glibc's mmap and trim thresholds raised (freed memory is reused, as with a caching
allocator such as jemalloc). The headline is the default allocator.

Threads default to 1, as the README states: the figures must survive a shared machine, and with
2 threads on 2 busy cores each small per-step operation waits for a descheduled worker. With
``--clock cpu`` the script times process CPU time instead of wall time: on a loaded machine it
is far steadier (it excludes time spent descheduled), and with 1 thread it is the same quantity.

The default run takes about a minute.
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

from models.char_model import CharRNN
from timing import interleaved_times, ratio_interval, verdict  # benchmarks/timing.py, beside this script

HIDDEN, HYPER_SIZE, EMBEDDING_DIM = 256, 128, 16
TARGETS = {"HyperLSTM": 2.5, "LN-LSTM": 1.25}
BASELINE = "nn.LSTM"
CACHING_MALLOC = {"MALLOC_MMAP_THRESHOLD_": str(2**32), "MALLOC_TRIM_THRESHOLD_": str(2**32)}
CLOCKS = {"wall": time.perf_counter, "cpu": time.process_time}


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=12, help="timed rounds over all models")
    parser.add_argument("--warmup", type=int, default=2, help="untimed rounds first")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--seq", type=int, default=100)
    parser.add_argument("--vocab", type=int, default=50)
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads (see above)")
    parser.add_argument("--allocator", choices=("both", "default", "caching"), default="both")
    parser.add_argument("--clock", choices=tuple(CLOCKS), default="wall")
    parser.add_argument("--no-matched", action="store_true", help="leave out the parameter-matched rows")
    return parser.parse_args()


def char_model(core: str, hidden: int, vocab: int) -> nn.Module:
    torch.manual_seed(0)
    return CharRNN(vocab_size=vocab, core=core, hidden_size=hidden, hyper_size=HYPER_SIZE,
                   hyper_embedding_dim=EMBEDDING_DIM)


def count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def matched_hidden(core: str, target: int, vocab: int) -> int:
    """The hidden size whose model has the parameter count closest to ``target``."""
    low, high = 1, 4 * HIDDEN
    while high - low > 1:  # the count grows with the hidden size
        mid = (low + high) // 2
        low, high = (mid, high) if count(char_model(core, mid, vocab)) <= target else (low, mid)
    return min((low, high), key=lambda h: abs(count(char_model(core, h, vocab)) - target))


def models(vocab: int, matched: bool) -> dict[str, nn.Module]:
    built = {
        "HyperLSTM": char_model("hyper_lstm", HIDDEN, vocab),
        "LN-LSTM": char_model("ln_lstm", HIDDEN, vocab),
        BASELINE: char_model("lstm", HIDDEN, vocab),
    }
    if matched:
        target = count(built["HyperLSTM"])
        for core, label in (("ln_lstm", "LN-LSTM"), ("lstm", BASELINE)):
            hidden = matched_hidden(core, target, vocab)
            built[f"{label} {hidden} (params)"] = char_model(core, hidden, vocab)
    return built


def training_step(model: nn.Module, tokens: torch.Tensor, targets: torch.Tensor) -> Callable[[], None]:
    optimiser = torch.optim.Adam(model.parameters(), lr=1e-3)

    def step() -> None:
        optimiser.zero_grad(set_to_none=True)
        logits, _ = model(tokens)  # (B, T, V)
        F.cross_entropy(logits.flatten(0, 1), targets.flatten()).backward()
        optimiser.step()

    return step


def report(times: dict[str, list[float]], built: dict[str, nn.Module]) -> str:
    base = statistics.median(times[BASELINE])
    header = f"{'model':<26} {'hidden':>6} {'params':>9} {'median ms':>10} {'÷ nn.LSTM':>10} {'90% interval':>13}  target"
    lines = [header]
    for name, seconds in times.items():
        median = statistics.median(seconds)
        _, low, high = ratio_interval(times, name, BASELINE)
        target = TARGETS.get(name)
        goal = f"≤ {target}: {verdict(low, high, target)}" if target else ""
        lines.append(
            f"{name:<26} {built[name].core.hidden_size:>6} {count(built[name]):>9,} {median * 1e3:>10.1f} "
            f"{median / base:>10.2f} {low:>6.2f}–{high:<6.2f}  {goal}"
        )
    return "\n".join(lines)


def run(args: argparse.Namespace, allocator: str) -> None:
    torch.set_num_threads(args.threads)
    tokens = torch.randint(0, args.vocab, (args.batch, args.seq))
    targets = torch.randint(0, args.vocab, (args.batch, args.seq))
    built = models(args.vocab, matched=not args.no_matched)
    runs = {name: training_step(model, tokens, targets) for name, model in built.items()}
    print(
        f"\ntraining step, batch {args.batch}, sequence {args.seq}, vocab {args.vocab}, "
        f"{torch.get_num_threads()} thread(s), {args.clock} clock, {args.rounds} rounds after "
        f"{args.warmup} warm-up; allocator: {allocator}"
    )
    times = interleaved_times(runs, args.rounds, args.warmup, CLOCKS[args.clock])
    print(report(times, built), flush=True)


def main() -> None:
    args = parse_args()
    caching = all(os.environ.get(k) == v for k, v in CACHING_MALLOC.items())
    if args.allocator == "caching" and not caching:
        os.execve(sys.executable, [sys.executable, *sys.argv], {**os.environ, **CACHING_MALLOC})
    run(args, "glibc, caching thresholds" if caching else "glibc defaults")
    if args.allocator == "both" and not caching:
        # the last --allocator given wins
        os.execve(sys.executable, [sys.executable, *sys.argv, "--allocator", "caching"], {**os.environ, **CACHING_MALLOC})


if __name__ == "__main__":
    main()
