"""benchmarks/paper_lm.py, the paper's character-LM claim on one GPU: what a CPU can check of it.
The script trains the three models of the committed comparison through ``train.py run`` (its smoke
mode: a synthetic corpus, 2 steps each) and prints and writes their rows; a bad corpus path is one
line. Its bits per character need a GPU and are not claimed here."""

import json
import os
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "benchmarks/paper_lm.py", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=300, env={**os.environ, "PYTHONPATH": str(ROOT)})


def test_the_smoke_run_trains_the_comparisons_three_models(tmp_path: Path) -> None:
    out = tmp_path / "rows.jsonl"
    done = run("--smoke", "--out", str(out))
    assert done.returncode == 0, done.stderr[-2000:]
    rows = {row["model"]: row for row in map(json.loads, out.read_text().splitlines())}
    assert list(rows) == ["HyperLSTM", "LN-LSTM equal units", "LN-LSTM matched parameters"]
    assert all(row["steps"] == 2 and row["smoke"] and row["test_bpc"] > 0 for row in rows.values())
    # the comparison's shape: equal units is the smaller LN-LSTM, matched is within 2% of HyperLSTM
    hyper, equal, matched = (rows[name]["parameters"] for name in rows)
    assert equal < matched and abs(matched - hyper) / hyper < 0.02
    assert all(f"{row['parameters']:,}" in done.stdout for row in rows.values())
    assert "paper (Penn Treebank" in done.stdout


def test_the_script_runs_the_committed_comparisons_recipe() -> None:
    # the GPU rows are to be read against benchmarks/results/shakespeare_paper_claim.jsonl: same steps and dropout
    sweep = yaml.safe_load((ROOT / "configs/sweeps/shakespeare_paper_claim.yaml").read_text())
    source = (ROOT / "benchmarks/paper_lm.py").read_text()
    assert f'"--steps", type=int, default={sweep["overrides"]["trainer.max_steps"]}' in source
    assert f'recurrent_dropout", "{sweep["overrides"]["model.init_args.network.init_args.recurrent_dropout"]}"' in source


def test_a_missing_corpus_is_one_line(tmp_path: Path) -> None:
    done = run("--data", str(tmp_path / "nowhere.txt"))
    assert done.returncode == 2
    assert done.stderr.strip().splitlines()[-1] == f"paper_lm.py: error: --data must be tinyshakespeare's input.txt, got {tmp_path / 'nowhere.txt'}"
