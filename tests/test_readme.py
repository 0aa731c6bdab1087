"""The README's figures are what the project's own code counts, and its example does what it says."""

import contextlib
import io
import re
from pathlib import Path

import torch
import yaml
from jsonargparse import ArgumentParser
from torch import nn

from hyper import GeneratedNetwork, count_parameters
from hyper.sweeps import load_sweep
from models.paper_table import paper_table

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def section(name: str) -> str:
    return README.split(f"<!-- {name} -->\n", 1)[1].split(f"\n<!-- /{name} -->", 1)[0]


def build_network(config: dict) -> nn.Module:
    """The network a train.py config names (``model.init_args.network``), nothing else."""
    parser = ArgumentParser(exit_on_error=False)
    parser.add_argument("--network", type=nn.Module)
    return parser.instantiate_classes(parser.parse_object({"network": config})).network


def test_readme_table_is_current():
    assert section("paper-table") == paper_table()


def run_example(marker: str) -> tuple[dict, dict]:
    """Run the README's python block holding ``marker``: its names and the table it printed."""
    (code,) = [block for block in re.findall(r"```python\n(.*?)```", README, re.S) if marker in block]
    names, printed = {}, io.StringIO()
    with contextlib.redirect_stdout(printed):
        exec(compile(code, "README example", "exec"), names)
    return names, table_rows(printed.getvalue())


def table_rows(text: str) -> dict:
    return {" ".join(line.split()[:-1]): line.split()[-1] for line in text.splitlines() if line.strip("-")}


def test_readme_wrap_example_runs_prints_its_table_and_materializes():
    names, rows = run_example("wrap(ResNet18()")
    shown = README.split("plain = materialize(model)", 1)[1].split("```text\n", 1)[1].split("```", 1)[0]
    assert rows == table_rows(shown)  # the table printed under the example is what it prints
    assert rows["compression ratio"] == "21.68x" and "26.14×" in README  # tied: stated in the text
    tied = names["wrap"](names["ResNet18"](), names["Hyper"](embedding_dim=64, tying_groups=1))
    assert f"{count_parameters(tied).compression_ratio:.2f}" == "26.14"
    model, plain = names["model"], names["plain"]
    assert all(p.grad.abs().sum() > 0 for p in model.parameters())  # the step reached every part
    assert type(plain) is names["ResNet18"] and not any(isinstance(m, GeneratedNetwork) for m in plain.modules())
    x = torch.randn(2, 3, 64, 64)
    assert torch.allclose(plain.eval()(x), model.eval()(x), rtol=1e-4, atol=1e-5)


def test_readme_example_runs_and_prints_the_counts():
    names, rows = run_example("HyperResNet(depth=40")
    # HyperResNet-40-1 with N_z 64: the paper's hyper model (see the paper table)
    assert rows == {
        "embeddings": "15,488", "generator": "75,920", "not generated": "6,362",
        "trainable": "97,770", "plain-equivalent": "563,930", "compression ratio": "5.77x",
        "size (bytes)": "391,080", "byte compression": "5.77x",  # fp32: 4 bytes a parameter
    }
    model, plain = names["model"], names["plain"]
    assert all(p.grad.abs().sum() > 0 for p in model.parameters())  # the training step reached every part
    # "an ordinary WRN with the generated kernels baked in"
    assert not isinstance(plain, GeneratedNetwork) and sum(p.numel() for p in plain.parameters()) == 563_930
    x = torch.randn(2, 3, 32, 32)
    assert torch.allclose(plain.eval()(x), model.eval()(x), rtol=1e-4, atol=1e-5)


def test_readme_default_figures_are_the_default_networks():
    stated = re.search(r"([\d,]+) trainable\s+parameters for a ([\d,]+)-parameter plain network", README)
    default = yaml.safe_load((ROOT / "configs" / "default.yaml").read_text())
    count = count_parameters(build_network(default["model"]["init_args"]["network"]))
    assert stated.groups() == (f"{count.trainable:,}", f"{count.plain_equivalent:,}")


def test_readme_compression_tables_are_the_committed_results():
    from hyper.sweeps import read_rows, summarize, summary_table
    from hyper.sweeps.summary import smallest_within

    entries = summarize(read_rows(ROOT / "benchmarks" / "results" / "digits_compression.jsonl"), "test_acc")
    assert section("digits-compression") == f"{summary_table(entries, 'test_acc')}\n\n{smallest_within(entries)}"


def test_readme_recurrent_compression_tables_are_the_committed_results():
    from hyper.sweeps import read_rows, summarize, summary_table
    from hyper.sweeps.summary import smallest_within

    entries = summarize(read_rows(ROOT / "benchmarks" / "results" / "char_lstm.jsonl"), "test_bpc", compare_to="plain")
    assert section("char-lstm") == f"{summary_table(entries, 'test_bpc')}\n\n{smallest_within(entries, points=0.1)}"


def test_readme_paper_claim_table_is_the_committed_results():
    import json
    import statistics

    rows = [json.loads(line) for line in (ROOT / "benchmarks" / "results" / "shakespeare_paper_claim.jsonl").open()]
    table = section("paper-claim").splitlines()[2:]
    assert len(table) == 3
    for line in table:
        method, units, params, val, test = (cell.strip() for cell in line.split("|")[1:-1])
        runs = [r for r in rows if r["method"] == method]
        assert sorted(r["seed"] for r in runs) == [0, 1, 2]
        assert (units, params) == (str(runs[0]["model_args"]["hidden_size"]), f"{runs[0]['trainable_params']:,}")
        for cell, key in ((val, "val_bpc"), (test, "test_bpc")):
            values = [r[key] for r in runs]
            assert cell == f"{statistics.mean(values):.3f} ± {statistics.stdev(values):.3f}", (method, key)


# Routes whose trained network is the configured one: its count is what the preset builds.
BUILT_AS_CONFIGURED = {"plain", "hyper", "hyper tied", "lowrank", "tied", "templates", "dct", "ptq", "qat"}


def test_readme_compression_sizes_are_what_the_preset_builds():
    points = {}
    for point in load_sweep(ROOT / "configs" / "sweeps" / "digits_compression.yaml").points():
        points[(point.method, ", ".join(f"{k}={v}" for k, v in point.knobs.items()))] = point
    rows = [line.split("|")[1:-1] for line in section("digits-compression").split("\n\n")[0].splitlines()[2:]]
    checked = set()
    for method, knobs, trainable, compression, *_ in (map(str.strip, row) for row in rows):
        if method not in BUILT_AS_CONFIGURED:
            continue
        count = count_parameters(build_network(points[(method, knobs)].config["model"]["init_args"]["network"]))
        assert (trainable, compression) == (f"{count.trainable:,}", f"{count.compression_ratio:.2f}x"), (method, knobs)
        checked.add(method)
    assert checked == BUILT_AS_CONFIGURED


def test_the_two_commands_are_at_the_top_and_ci_runs_the_test_command():
    block = README.split("```bash\n", 1)[1].split("```", 1)[0]
    commands = [line.split("  #", 1)[0].strip() for line in block.splitlines() if line.strip()]
    assert len(commands) == 2 and commands[1].endswith("python -m pytest")
    assert all("--extra-index-url https://download.pytorch.org/whl/cpu" in c for c in commands)  # CPU-safe
    ci = (ROOT / ".ci" / "run").read_text().splitlines()
    assert commands[1] in ci  # CI runs exactly the README's test command
    assert "../shared" not in README
