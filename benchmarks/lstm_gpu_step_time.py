"""Training-step time of the recurrent cores on a GPU: the compiled update against the eager one.

Run: ``python benchmarks/lstm_gpu_step_time.py [--rounds 20] [--warmup 3] [--batch 32] [--seq 100]``

``--device cpu`` runs the GPU's code paths on CPU (the fused C++ kernels off, the compiled steps
through Inductor's C++ backend): with small sizes, where a step's time is nearly all host-side
overhead, it is a proxy for the host's share of a GPU step without a GPU's kernel launches.
``--smoke``: the same code on CPU at toy sizes, 1 round, the compiled rows' steps run uncompiled
(compiling costs ~25 s here and is tested on its own), for the test suite; its times mean nothing.

On CUDA the fused C++ kernels of the CPU path do not run; the LN-LSTM and HyperLSTM scans do
their per-step LSTM update either as eager operations (~40 and ~90 launches per time step,
forward and backward) or through ``models.compiled_update`` (the default on CUDA: one
``torch.compile``-d call per update and direction). One step = forward through the character
model (embedding → core → head, vocabulary 50), cross-entropy, backward, Adam step; hidden 256,
HyperLSTM with hyper LSTM 128 and N_z 16, as ``benchmarks/lstm_step_time.py``. Rows:

- nn.LSTM (cuDNN), the baseline;
- LN-LSTM and HyperLSTM with the compiled update, and the same with the eager update.

Models are timed round-robin (``benchmarks/timing.py``), each step ending in a device
synchronisation. Printed: the median step, the ratio to nn.LSTM with its bootstrap 90%
interval, and the compiled update's speed-up over the eager one (eager ÷ compiled), with its
interval. The first round compiles (tens of seconds, not timed: ``--warmup``).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from models import compiled_steps, compiled_update, fused_kernels
from models.char_model import CharRNN
from timing import interleaved_times, ratio_interval  # benchmarks/timing.py, beside this script

HIDDEN, EMBEDDING_DIM, VOCAB = 256, 16, 50  # the hyper LSTM is half the main one (128 at 256)
BASELINE = "nn.LSTM"
# row → (core, compiled update or not)
ROWS = {
    BASELINE: ("lstm", False),
    "LN-LSTM compiled": ("ln_lstm", True),
    "LN-LSTM eager": ("ln_lstm", False),
    "HyperLSTM compiled": ("hyper_lstm", True),
    "HyperLSTM eager": ("hyper_lstm", False),
}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=20, help="timed rounds over all rows")
    parser.add_argument("--warmup", type=int, default=3, help="untimed rounds first (the compiles happen here)")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--seq", type=int, default=100)
    parser.add_argument("--hidden", type=int, default=HIDDEN, help="main hidden size (the hyper LSTM's is half)")
    parser.add_argument("--device", choices=("cuda", "cpu"), default="cuda",
                        help="cpu: the GPU's code paths on CPU (fused kernels off), a proxy for host-side cost")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads on CPU")
    parser.add_argument("--steps-per-call", type=int, default=compiled_steps.STEPS_PER_CALL,
                        help="time steps per compiled call (models.compiled_steps.STEPS_PER_CALL)")
    parser.add_argument("--smoke", action="store_true", help="CPU, toy sizes, 1 round: checks the script runs")
    args = parser.parse_args(argv)
    if args.smoke:
        args.device, args.rounds, args.warmup, args.batch, args.seq, args.hidden = "cpu", 1, 1, 2, 2, 16
    if args.steps_per_call < 1:
        parser.error(f"--steps-per-call must be at least 1, got {args.steps_per_call}")
    return args


def training_step(core: str, hidden: int, compiled: bool, device: torch.device, batch: int, seq: int) -> Callable[[], None]:
    torch.manual_seed(0)
    model = CharRNN(vocab_size=VOCAB, core=core, hidden_size=hidden, hyper_size=hidden // 2,
                    hyper_embedding_dim=EMBEDDING_DIM).to(device)
    optimiser = torch.optim.Adam(model.parameters(), lr=1e-3)
    tokens = torch.randint(0, VOCAB, (batch, seq), device=device)
    targets = torch.randint(0, VOCAB, (batch, seq), device=device)
    # "1" also sends CPU tensors through it (--smoke); "0" runs the eager operations
    mode = "1" if compiled else "0"

    def step() -> None:
        compiled_update.mode = mode
        optimiser.zero_grad(set_to_none=True)
        logits, _ = model(tokens)
        F.cross_entropy(logits.flatten(0, 1), targets.flatten()).backward()
        optimiser.step()
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    step.model = model  # type: ignore[attr-defined]
    return step


def report(times: dict[str, list[float]]) -> str:
    base = statistics.median(times[BASELINE])
    lines = [f"{'row':<20} {'median ms':>10} {'÷ nn.LSTM':>10} {'90% interval':>13}   eager ÷ compiled (90% interval)"]
    for name, seconds in times.items():
        median = statistics.median(seconds)
        _, low, high = ratio_interval(times, name, BASELINE)
        speedup = ""
        if name.endswith(" compiled"):
            ratio, s_low, s_high = ratio_interval(times, name.replace("compiled", "eager"), name)
            speedup = f"{ratio:.2f} ({s_low:.2f}–{s_high:.2f})"
        lines.append(f"{name:<20} {median * 1e3:>10.2f} {median / base:>10.2f} {low:>6.2f}–{high:<6.2f}   {speedup}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        sys.exit("lstm_gpu_step_time.py: needs a CUDA device (--device cpu runs the same code paths on CPU)")
    device = torch.device(args.device)
    if args.smoke:  # the compiled rows' steps run uncompiled: compiling is tests/test_compiled_update.py's
        compiled_update.compiled = lambda fn, variant: fn
    if device.type == "cpu":
        torch.set_num_threads(args.threads)
        fused_kernels.enabled = False  # they would take the place of both paths: run the GPU's
        where = "CPU (smoke: times mean nothing)" if args.smoke else f"CPU, fused kernels off, {args.threads} thread(s)"
    else:
        where = torch.cuda.get_device_name(device)
    compiled_steps.STEPS_PER_CALL = args.steps_per_call
    runs = {name: training_step(core, args.hidden, compiled, device, args.batch, args.seq) for name, (core, compiled) in ROWS.items()}
    print(f"training step on {where}, batch {args.batch}, sequence {args.seq}, hidden {args.hidden}, "
          f"{args.steps_per_call} step(s) per compiled call, {args.rounds} rounds after {args.warmup} warm-up; "
          f"torch {torch.__version__}", flush=True)
    started = time.perf_counter()
    previous = compiled_update.mode
    try:
        times = interleaved_times(runs, args.rounds, args.warmup)
    finally:
        compiled_update.mode = previous
    print(report(times))
    if args.smoke:
        print("the compiled rows ran their steps uncompiled (--smoke)")
    elif compiled_update._broken:
        print("the compiled steps FAILED to compile (see the warning): their rows ran uncompiled")
    else:
        print(f"the compiled steps ran: {len(compiled_update._variants)} variants compiled")
    print(f"({time.perf_counter() - started:.0f} s in all, compiles included)")


if __name__ == "__main__":
    main()
