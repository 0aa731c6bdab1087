"""docs/conditional.md's per-sample table is what the committed benchmark output says."""

import re

from doc_text import RESULTS, doc, markdown_table, section

OUTPUT = RESULTS / "per_sample_2026-12-03.txt"
STEP = re.compile(r"^  (?P<name>per-sample|loop|shared)\s+median\s+(?P<ms>[\d.]+) ms per step$", re.M)
RATIO = re.compile(r"^  (?P<name>loop / per-sample|per-sample / shared): ratio of medians (?P<r>[\d.]+), 90% interval (?P<low>[\d.]+)-(?P<high>[\d.]+)", re.M)


def test_the_per_sample_table_is_the_committed_output() -> None:
    rows, runs = [], {}
    for block in OUTPUT.read_text().split("\n$ ")[1:]:
        command, output = block.split("\n", 1)
        model = re.search(r"--model (\w+)", command)[1]
        runs[model] = runs.get(model, 0) + 1
        ms = {m["name"]: m["ms"] for m in STEP.finditer(output)}
        ratio = {m["name"]: f"{m['r']} ({m['low']}–{m['high']})" for m in RATIO.finditer(output)}
        rows.append([model, str(runs[model]), ms["per-sample"], ms["shared"], ms["loop"], ratio["per-sample / shared"], ratio["loop / per-sample"]])
    assert runs == {"mlp": 2, "convnet": 2}
    table = markdown_table(
        ["model", "run", "per-sample ms", "shared ms", "loop ms", "per-sample / shared", "loop / per-sample"],
        ["---"] * 7, rows,
    )
    assert table == section("per-sample steps", doc("conditional"))
