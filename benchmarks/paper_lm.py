"""The paper's character-LM claim on one GPU: HyperLSTM against LN-LSTM on tinyshakespeare.

Run (a GPU; tinyshakespeare's input.txt from Karpathy's char-rnn):
    python benchmarks/paper_lm.py --data PATH/tinyshakespeare.txt
Smoke (CPU, a small synthetic corpus, 2 steps per model, the same code; the tests run it):
    python benchmarks/paper_lm.py --smoke

Ha et al. (2016) find HyperLSTM better than LN-LSTM on character-level Penn Treebank (1.265
against 1.267 bpc at 1000 units; LN-HyperLSTM 1.250) and enwik8. This trains the project's
comparison (``configs/sweeps/shakespeare_paper_claim.yaml``: a 256-unit HyperLSTM with a 128-unit
hyper LSTM and N_z 16; an LN-LSTM of the same 256 units, the paper's comparison; an LN-LSTM of
364 units, matched in parameters) through ``train.py run``, each model its own run folder and
report, and prints the table. Every run uses the sweep's recipe: Adam 2e-3 with a cosine
schedule, gradient clipping 1, recurrent dropout 0.1, batches of 32 streams × 100 characters.

Defaults: 4,000 steps per model, the steps of the committed CPU comparison
(``benchmarks/results/shakespeare_paper_claim.jsonl``, 8-19 CPU-minutes a run), so the GPU's rows
can be checked against those before longer runs (``--steps``). On CUDA, float32 matmuls use
TF32. The recurrent loops run there as compiled blocks of time steps (``models.compiled_steps``;
the fused C++ step kernels are CPU-only): the first sequence of each model compiles (tens of
seconds, inside its wall time), and the characters per second it prints measure the rest.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run from anywhere: the project's models/ and hyper/ first

from hyper.training.cli import main as train  # noqa: E402

PTB = {"LN-LSTM 1000 units": 1.267, "HyperLSTM": 1.265, "LN-HyperLSTM": 1.250}  # Table: test bpc, Penn Treebank
NETWORK = "--model.init_args.network.init_args"
MODELS = {  # name: (preset, its overrides)
    "HyperLSTM": ("shakespeare_hyper_lstm", []),
    "LN-LSTM equal units": ("shakespeare_ln_lstm", [f"{NETWORK}.hidden_size", "256"]),
    "LN-LSTM matched parameters": ("shakespeare_ln_lstm", []),
}


def synthetic_corpus(folder: Path) -> Path:
    """A few thousand characters of made-up lines: the smoke run's stand-in for tinyshakespeare."""
    generator = torch.Generator().manual_seed(0)
    words = ["the", "king", "doth", "speak", "thou", "art", "my", "lord", "and", "she", "hath", "gone"]
    lines = [" ".join(words[i] for i in torch.randint(0, len(words), (8,), generator=generator)) for _ in range(300)]
    path = folder / "corpus.txt"
    path.write_text("\n".join(lines) + "\n")
    return path


def run_one(name: str, args: argparse.Namespace, out: Path) -> dict:
    preset, overrides = MODELS[name]
    root = out / name.replace(" ", "_")
    command = [
        "run", "--config", preset, "--data.path", str(args.data),
        "--seed_everything", str(args.seed),
        "--trainer.max_steps", str(args.steps),
        "--trainer.val_check_interval", str(min(500, args.steps)),
        "--trainer.default_root_dir", str(root),
        f"{NETWORK}.recurrent_dropout", "0.1",
        *overrides,
    ]
    if args.smoke:
        command += ["--trainer.accelerator", "cpu", "--trainer.limit_val_batches", "2", "--trainer.limit_test_batches", "2",
                    "--data.batch_size", "4", "--data.seq_len", "20"]
    started = time.perf_counter()
    status = train(command)
    if status != 0:
        raise SystemExit(f"paper_lm: the {name} run failed (exit {status}); its error is above")
    (report,) = root.glob("*/version_*/report.json")
    row = json.loads(report.read_text())
    return {"model": name, "parameters": row["trainable_params"], "val_bpc": row["best_val_bpc"], "test_bpc": row["test_bpc"],
            "steps": row["steps"], "fit_s": row.get("fit_time_s"), "wall_s": time.perf_counter() - started,
            "chars_per_s": row.get("tokens_per_s"), "device": "cuda" if torch.cuda.is_available() and not args.smoke else "cpu",
            "seed": args.seed, "smoke": args.smoke, "run": str(report.parent)}


def table(rows: list[dict]) -> str:
    lines = [f"{'model':<28} {'parameters':>11} {'val bpc':>8} {'test bpc':>9} {'fit s':>7} {'chars/s':>9}"]
    for row in rows:
        fit = f"{row['fit_s']:.0f}" if row["fit_s"] is not None else "-"
        speed = f"{row['chars_per_s']:.0f}" if row["chars_per_s"] is not None else "-"
        lines.append(f"{row['model']:<28} {row['parameters']:>11,} {row['val_bpc']:>8.3f} {row['test_bpc']:>9.3f} {fit:>7} {speed:>9}")
    lines.append("paper (Penn Treebank, 1000 units, test bpc): " + ", ".join(f"{k} {v:.3f}" for k, v in PTB.items()))
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, help="tinyshakespeare's input.txt")
    parser.add_argument("--steps", type=int, default=4000, help="optimiser steps per model")
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=None, help="append one JSON row per model here")
    parser.add_argument("--runs", type=Path, default=Path("runs/paper_lm"), help="where the runs' folders go")
    parser.add_argument("--smoke", action="store_true", help="CPU, a synthetic corpus, 2 steps per model: does it run")
    args = parser.parse_args()
    if args.steps < 1:
        parser.error(f"--steps must be at least 1, got {args.steps}")
    with tempfile.TemporaryDirectory() as scratch:
        if args.smoke:
            args.steps, args.data, args.runs = 2, synthetic_corpus(Path(scratch)), Path(scratch) / "runs"
        elif args.data is None or not args.data.is_file():
            parser.error(f"--data must be tinyshakespeare's input.txt, got {args.data}")
        if torch.cuda.is_available() and not args.smoke:
            torch.backends.cuda.matmul.allow_tf32 = True
            torch.backends.cudnn.allow_tf32 = True
        device = "cuda" if torch.cuda.is_available() and not args.smoke else "cpu"
        print(f"paper_lm: {', '.join(args.models)} on {device}, {args.steps} steps each, seed {args.seed}", flush=True)
        rows = [run_one(name, args, args.runs) for name in args.models]
    print(table(rows))
    if args.out is not None:
        with args.out.open("a") as out:
            out.writelines(json.dumps(row) + "\n" for row in rows)


if __name__ == "__main__":
    sys.exit(main())
