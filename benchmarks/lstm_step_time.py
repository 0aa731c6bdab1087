"""Training-step time of HyperLSTM and LN-LSTM against torch's fused nn.LSTM, on CPU.

Run: ``python benchmarks/lstm_step_time.py [--rounds 10] [--warmup 2] [--threads 1] [--compile]``

One step = forward through the character model (embedding → core → head over a vocabulary of
50), cross-entropy, backward, Adam step; batch 32, sequence 100, hidden 256, HyperLSTM with
hyper LSTM 128 and N_z 16. Models are timed round-robin (hyper, LN, nn.LSTM, hyper, ...) so
that drift in the machine's load hits all alike; figures are medians, verdicts ratios to
nn.LSTM.

Threads default to 1, because the figures must survive a shared machine. The LN-LSTM and
HyperLSTM loops run ~20 small ops per time step; on 2 cores busy with other jobs (load ~7),
two intra-op threads make each of them wait for a descheduled worker: HyperLSTM 6.1 s per step
with 2 threads against 0.83 s with 1 (nn.LSTM 0.80 s against 0.20 s). With the cores mostly
free (load ~2), 2 threads are faster for all three (HyperLSTM 0.51 s, nn.LSTM 0.09 s) and
favour nn.LSTM more; use ``--threads 2`` there.

``--compile`` adds variants whose LSTMUpdate modules (LN, gates, cell update: the elementwise
part of each step) are wrapped in ``torch.compile``. They changed the step by -6 % to +8 %
from run to run against eager (no consistent gain), so the models do not use them. Compiling
the whole unrolled 100-step loop did not finish warming up in 3 CPU-minutes, and a
TorchScript'd LN-LSTM loop (TorchScript is deprecated as of torch 2.13) took 910 ms against
504 ms eager in a prototype, so neither is offered. The default run takes 20-30 s.
"""

from __future__ import annotations

import argparse
import statistics
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from models.char_model import CharRNN
from models.lstm import LSTMUpdate
from timing import interleaved_times  # benchmarks/timing.py, beside this script

CORE_LABELS = {"hyper_lstm": "HyperLSTM", "ln_lstm": "LN-LSTM", "lstm": "nn.LSTM"}


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=10, help="timed rounds over all models")
    parser.add_argument("--warmup", type=int, default=2, help="untimed rounds first")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--seq", type=int, default=100)
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--vocab", type=int, default=50)
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads (see above)")
    parser.add_argument("--compile", action="store_true", help="also time torch.compile'd cell updates")
    return parser.parse_args()


def build_model(core: str, hidden: int, vocab: int, compile_updates: bool) -> nn.Module:
    torch.manual_seed(0)
    model = CharRNN(vocab_size=vocab, core=core, hidden_size=hidden, hyper_size=128, hyper_embedding_dim=16)
    if compile_updates:
        for parent in list(model.modules()):
            for name, child in list(parent.named_children()):
                if isinstance(child, LSTMUpdate):
                    setattr(parent, name, torch.compile(child, dynamic=False))
    return model


def training_step(model: nn.Module, tokens: torch.Tensor, targets: torch.Tensor) -> Callable[[], None]:
    optimiser = torch.optim.Adam(model.parameters(), lr=1e-3)

    def step() -> None:
        optimiser.zero_grad(set_to_none=True)
        logits, _ = model(tokens)  # (B, T, V)
        F.cross_entropy(logits.flatten(0, 1), targets.flatten()).backward()
        optimiser.step()

    return step


def report(times: dict[str, list[float]], params: dict[str, int], baseline: str) -> str:
    medians = {name: statistics.median(t) * 1e3 for name, t in times.items()}
    lines = [f"{'model':<28} {'params':>9} {'median ms':>10} {'min ms':>8} {'÷ nn.LSTM':>10}"]
    for name, median in medians.items():
        lines.append(
            f"{name:<28} {params[name]:>9,} {median:>10.1f} {min(times[name]) * 1e3:>8.1f} "
            f"{median / medians[baseline]:>10.2f}"
        )
    return "\n".join(lines)


def main() -> None:
    args = parse_args()
    torch.set_num_threads(args.threads)
    tokens = torch.randint(0, args.vocab, (args.batch, args.seq))
    targets = torch.randint(0, args.vocab, (args.batch, args.seq))
    variants = [(core, False) for core in CORE_LABELS]
    variants += [(core, True) for core in ("hyper_lstm", "ln_lstm")] if args.compile else []
    runs, params = {}, {}
    for core, compiled in variants:
        name = CORE_LABELS[core] + (" (compiled update)" if compiled else "")
        model = build_model(core, args.hidden, args.vocab, compiled)
        params[name] = sum(p.numel() for p in model.parameters())
        runs[name] = training_step(model, tokens, targets)
    print(
        f"training step, batch {args.batch}, sequence {args.seq}, hidden {args.hidden}, "
        f"vocab {args.vocab}, "
        f"{torch.get_num_threads()} threads, {args.rounds} rounds after {args.warmup} warm-up"
    )
    times = interleaved_times(runs, args.rounds, args.warmup)
    print(report(times, params, baseline=CORE_LABELS["lstm"]))


if __name__ == "__main__":
    main()
