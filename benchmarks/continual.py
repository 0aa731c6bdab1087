"""Continual learning on split digits: a hypernetwork with the output regulariser against the baselines.

Run: ``python benchmarks/continual.py [--seeds 0 1 2] [--out benchmarks/results/continual_digits.jsonl]``
(``--table`` prints the table of an existing results file and trains nothing).

Every method trains through ``python train.py fit`` of ``configs/continual_digits.yaml`` (5 tasks of
2 digits, one after another, 300 steps each), with only the network or β changed:

- ``hyper + regulariser``: the preset (β = 0.05);
- ``hyper, β = 0``: the same hypernetwork without the regulariser;
- ``fine-tuning``: one plain MLP (the preset's target) trained task after task;
- ``one network per task``: 5 plain MLPs (``OnePerTask``), each trained on its task only.

After each task, the accuracy on every task's test images (``AccuracyMatrix``). One row per method
and seed: the final accuracy per task (after the last task), their mean, the average forgetting
(mean over the first 4 tasks of best accuracy since learned − final accuracy), trainable and
plain-equivalent parameters. The table (mean ± sample std over seeds) is what docs/conditional.md shows.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import io
import json
import logging
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

PRESET = ROOT / "configs" / "continual_digits.yaml"
RESULTS = ROOT / "benchmarks" / "results" / "continual_digits.jsonl"
COMMAND = "python benchmarks/continual.py --seeds 0 1 2 3 4"
METHODS = ("hyper + regulariser", "hyper, β = 0", "fine-tuning", "one network per task")


def method_config(method: str, seed: int, folder: str) -> dict[str, Any]:
    """The preset with ``method``'s network and β, ``seed``, and a quiet trainer writing to ``folder``."""
    config = yaml.safe_load(PRESET.read_text())
    model = config["model"]["init_args"]
    target = copy.deepcopy(model["network"]["init_args"]["target"])
    num_tasks = model["network"]["init_args"]["source"]["init_args"]["num_tasks"]
    if method == "hyper, β = 0":
        model["beta"] = 0.0
    elif method == "fine-tuning":
        model.update(beta=0.0, network=target)
    elif method == "one network per task":
        network = {"class_path": "hyper.training.OnePerTask", "init_args": {"network": target, "num_tasks": num_tasks}}
        model.update(beta=0.0, network=network)
    config["seed_everything"] = seed
    config["data"]["init_args"]["seed"] = seed
    config["trainer"].update(
        default_root_dir=folder,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[{"class_path": "hyper.training.AccuracyMatrix", "init_args": {"split": "test"}}],
    )
    return config


def run(method: str, seed: int) -> dict[str, Any]:
    """Fit ``method`` with ``seed`` through train.py's command line; its results row."""
    from hyper import count_parameters
    from hyper.training.continual import AccuracyMatrix, forgetting
    from hyper.training.hyper_cli import HyperCLI

    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "config.yaml"
        path.write_text(yaml.safe_dump(method_config(method, seed, folder), sort_keys=False, allow_unicode=True))
        start = time.perf_counter()
        with contextlib.redirect_stdout(io.StringIO()):  # the run's report table
            cli = HyperCLI(args=["fit", "--config", str(path)])
        seconds = time.perf_counter() - start
    (matrix,) = [c.matrix for c in cli.trainer.callbacks if isinstance(c, AccuracyMatrix)]
    counts = count_parameters(cli.model.network)
    final = matrix[-1]
    return {
        "method": method,
        "seed": seed,
        "beta": cli.model.beta,
        "steps_per_task": cli.datamodule.steps_per_task,
        "final_acc": final,
        "mean_final_acc": sum(final) / len(final),
        "forgetting": forgetting(matrix),
        "accuracy_matrix": matrix,
        "trainable_params": counts.trainable,
        "plain_equivalent_params": counts.plain_equivalent,
        "fit_time_s": round(seconds, 1),
        "command": COMMAND,
    }


def mean_std(values: list[float], scale: float = 100.0, digits: int = 1) -> str:
    values = [scale * v for v in values]
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):.{digits}f} ± {std:.{digits}f}"


def table(rows: list[dict[str, Any]]) -> str:
    """The markdown table of ``rows``: per method, mean ± std over seeds (accuracies in %)."""
    num_tasks = len(rows[0]["final_acc"])
    header = ["method", "trainable params", *(f"task {2 * t}/{2 * t + 1}" for t in range(num_tasks)),
              "mean", "forgetting (points)", "seeds"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for method in METHODS:
        mine = [r for r in rows if r["method"] == method]
        if not mine:
            continue
        cells = [method, f"{mine[0]['trainable_params']:,}"]
        cells += [mean_std([r["final_acc"][t] for r in mine]) for t in range(num_tasks)]
        cells += [mean_std([r["mean_final_acc"] for r in mine]), mean_std([r["forgetting"] for r in mine], digits=2)]
        cells.append(str(len(mine)))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--table", action="store_true", help="print the table of --out; train nothing")
    args = parser.parse_args()
    warnings.filterwarnings("ignore", message="LightningCLI's args parameter is intended")  # as train.py
    warnings.filterwarnings("ignore", message=r"`isinstance\(treespec, LeafSpec\)` is deprecated")
    import lightning  # noqa: F401 - it sets its loggers' level when imported: quieten them after

    for name in ("lightning.pytorch", "lightning.fabric"):  # "GPU available", seeds, tips: once per run
        logging.getLogger(name).setLevel(logging.WARNING)
    if not args.table:
        rows = []
        for seed in args.seeds:
            for method in args.methods:
                rows.append(run(method, seed))
                row = rows[-1]
                print(f"{method:22s} seed {seed}: final {100 * row['mean_final_acc']:.1f}%, forgetting "
                      f"{100 * row['forgetting']:.2f} points, {row['fit_time_s']} s", file=sys.stderr, flush=True)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows))
    print(table([json.loads(line) for line in args.out.read_text().splitlines()]))


if __name__ == "__main__":
    main()
