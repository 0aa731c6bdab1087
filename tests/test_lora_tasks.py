"""benchmarks/lora_tasks.py (one HyperLoRA for several tasks against one LoRA per task) runs end
to end on tiny sizes, and docs/conditional.md's table is what its committed rows say."""

import json
import os
import statistics
import subprocess
import sys
from collections import defaultdict

from doc_text import RESULTS, ROOT, doc, section

ROWS = RESULTS / "lora_tasks.jsonl"
LABELS = {"base": "frozen base", "lora": "one LoRA per task", "hyperlora": "one HyperLoRA for all"}
DIFFERENCE = "HyperLoRA − LoRA, paired by seed"


def test_smoke_run_writes_a_row_per_family_method_task_and_seed(tmp_path) -> None:  # noqa: ANN001
    out = tmp_path / "rows.jsonl"
    done = subprocess.run([sys.executable, "benchmarks/lora_tasks.py", "--smoke", "--seeds", "0", "1", "--out", str(out)],
                          cwd=ROOT, capture_output=True, text=True, timeout=300, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert done.returncode == 0, done.stderr[-2000:]
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    keys = {(r["family"], r["method"], r["task"], r["seed"]) for r in rows}
    expected = {(f, "base", t, 0) for f in ("char-transformer", "hf-llama") for t in ("pydoc", "python")}
    expected |= {(f, m, t, s) for f in ("char-transformer", "hf-llama") for m in ("lora", "hyperlora")
                 for t in ("pydoc", "python") for s in (0, 1)}
    assert keys == expected and len(rows) == len(expected)
    for r in rows:
        assert 0 < r["val_bpc"] < 10 and set(r["corpus_sha256"]) == {"pydoc", "python"}
        assert r["command"].startswith("python benchmarks/lora_tasks.py --smoke")
    adapted = [r for r in rows if r["method"] != "base"]
    assert len({r["steps"] for r in adapted}) == 1  # compute matched: T LoRAs' steps = HyperLoRA's steps
    for family in ("char-transformer", "hf-llama"):  # parameters matched: HyperLoRA at least the T LoRAs, within 30%
        (lora,), (hyper,) = ({r["trainable_params"] for r in adapted if r["family"] == family and r["method"] == m} for m in ("lora", "hyperlora"))
        assert lora <= hyper <= 1.3 * lora
    assert "| hf-llama | one HyperLoRA for all |" in done.stdout
    assert not ROWS.exists() or all("--smoke" not in json.loads(line)["command"] for line in ROWS.read_text().splitlines())


def cell(values: list[float]) -> str:
    return f"{values[0]:.3f}" if len(values) == 1 else f"{statistics.mean(values):.3f} ± {statistics.stdev(values):.3f}"


def expected_cells(rows: list[dict]) -> dict[tuple[str, str, str], str]:
    """{(model, method label, column): cell} recomputed from the rows."""
    values, trainable = defaultdict(list), {}
    for r in rows:
        values[r["family"], LABELS[r["method"]], f"{r['task']} bpc"].append(r["val_bpc"])
        trainable[r["family"], LABELS[r["method"]], "trainable"] = f"{r['trainable_params']:,}"
    cells = {key: cell(v) for key, v in values.items()} | trainable
    by_seed = {(r["family"], r["method"], r["task"], r["seed"]): r["val_bpc"] for r in rows}
    for family, method, task, seed in by_seed:
        if method == "lora":
            values[family, DIFFERENCE, f"{task} bpc"].append(by_seed[family, "hyperlora", task, seed] - by_seed[family, "lora", task, seed])
    return cells | {key: cell(v) for key, v in values.items() if key[1] == DIFFERENCE}


def test_the_docs_table_is_the_committed_rows() -> None:
    rows = [json.loads(line) for line in ROWS.read_text().splitlines()]
    text = section("lora tasks", doc("conditional"))
    header, _, *lines = [[c.strip() for c in line.strip("|").split("|")] for line in text.splitlines() if line.startswith("|")]
    shown = {(line[0], line[1], column): value for line in lines for column, value in zip(header[2:], line[2:]) if value}
    assert shown == expected_cells(rows)
    assert {(r["family"], r["method"]) for r in rows} == {(f, m) for f in ("char-transformer", "hf-llama") for m in LABELS}
    assert len({r["seed"] for r in rows if r["method"] == "lora"}) >= 3
    (command,) = {r["command"] for r in rows}
    assert f"`{command}`" in doc("conditional")
