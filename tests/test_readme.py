"""The README's and docs' figures are what the project's own code counts or what committed result
files hold, and their examples do what they say. (docs/benchmarks.md: tests/test_benchmarks_doc.py.)

Every table between ``<!-- name -->`` markers is rebuilt here from its source and compared whole;
a figure in prose is read out of the text and compared with what its source gives.
"""

import contextlib
import io
import json
import re
import shlex
import statistics

import pytest
import torch
import yaml
from jsonargparse import ArgumentParser
from torch import nn

from doc_text import README, RESULTS, ROOT, doc, prose, section, stated
from hyper import GeneratedNetwork, count_parameters
from hyper.sweeps import load_sweep, read_rows, summarize, summary_table
from hyper.sweeps.summary import smallest_within
from models.paper_table import paper_table


def jsonl(name: str) -> list[dict]:
    return [json.loads(line) for line in (RESULTS / name).open()]


def build_network(config: dict) -> nn.Module:
    """The network a train.py config names (``model.init_args.network``), nothing else."""
    parser = ArgumentParser(exit_on_error=False)
    parser.add_argument("--network", type=nn.Module)
    return parser.instantiate_classes(parser.parse_object({"network": config})).network


def preset(name: str) -> dict:
    return yaml.safe_load((ROOT / "configs" / f"{name}.yaml").read_text())


def preset_network(name: str) -> nn.Module:
    """The network of configs/NAME.yaml; a character model's vocabulary is its data's, as train.py links it."""
    config = preset(name)
    network = config["model"]["init_args"]["network"]
    if config["data"]["class_path"] == "hyper.data.CharDataModule":
        from hyper.data import CharDataModule

        network["init_args"]["vocab_size"] = CharDataModule(**config["data"].get("init_args", {})).vocab_size
    return build_network(network)


def cpu_minutes(rows: list[dict]) -> str:
    return f"{round(sum(row['fit_time_s'] for row in rows) / 60)}"


# ---------------------------------------------------------------------------------------------
# README: the top commands, the examples, the default run, the headline result


def test_the_two_commands_are_at_the_top_and_ci_runs_them_verbatim():
    import importlib.util

    spec = importlib.util.spec_from_file_location("readme_commands", ROOT / ".ci" / "readme_commands.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    commands = module.readme_commands(README)  # what .ci/run reads out of the README and runs
    assert len(commands) == 2 and commands[0].endswith("python train.py") and commands[1].endswith("python -m pytest")
    # An open torch requirement resolves to the newest release: on Linux the CUDA build (GB).
    assert all('"torch==' in c for c in commands)
    ci = (ROOT / ".ci" / "run").read_text()
    assert "readme_commands.py README.md" in ci and "python3 -m venv" in ci and "pip install" not in ci
    assert "../shared" not in README


def run_example(marker: str, text: str = README, **replace: str) -> tuple[dict, dict]:
    """Run the python block of ``text`` holding ``marker`` (each ``replace`` key swapped for its
    value first): its names and the table it printed."""
    (code,) = [block for block in re.findall(r"```python\n(.*?)```", text, re.S) if marker in block]
    for old, new in replace.items():
        assert old in code
        code = code.replace(old, new)
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
    assert rows["compression ratio"] == "21.68x"
    (tied_ratio,) = stated(r"\(([\d.]+)× on this ResNet-18\)", README)  # tying_groups=1, stated in the text
    tied = names["wrap"](names["ResNet18"](), names["Hyper"](embedding_dim=64, tying_groups=1))
    assert f"{count_parameters(tied).compression_ratio:.2f}" == tied_ratio
    model, plain = names["model"], names["plain"]
    assert all(p.grad.abs().sum() > 0 for p in model.parameters())  # the step reached every part
    assert type(plain) is names["ResNet18"] and not any(isinstance(m, GeneratedNetwork) for m in plain.modules())
    x = torch.randn(2, 3, 64, 64)
    assert torch.allclose(plain.eval()(x), model.eval()(x), rtol=1e-4, atol=1e-5)


def test_readme_hugging_face_example_trains_generates_saves_and_reloads(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # it saves to ./hyper-llama
    names, printed = run_example("tf.LlamaForCausalLM(config)")
    model, plain, ids = names["model"], names["plain"], names["ids"]
    assert printed == {"": f"{count_parameters(model).compression_ratio:.2f}x"}  # the one line it prints
    assert count_parameters(model).compression_ratio > 1
    tokens = names["tokens"]  # 8 prompt tokens and up to 8 generated (fewer if it drew the end token)
    assert tokens.shape[0] == 1 and 8 < tokens.shape[1] <= 16 and torch.equal(tokens[:, :8], ids[:1, :8])
    model.eval()
    assert torch.allclose(plain.eval()(ids).logits, model(ids).logits, atol=1e-5)
    # the sentence after the example: wrap again, load the hypernetwork's state, same outputs
    (resume,) = stated(r"`(model = wrap\(plain, .*?)`", README)
    exec(resume, names)
    assert torch.allclose(names["model"].eval()(ids).logits, model(ids).logits, atol=1e-5)


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


def test_readme_image_folder_example_trains_on_a_folder(tmp_path):
    from PIL import Image

    for label in ("cat", "dog"):
        (tmp_path / label).mkdir()
        for i in range(3):
            pixels = torch.randint(0, 256, (12, 10, 3), dtype=torch.uint8).numpy()  # any size: resized
            Image.fromarray(pixels).save(tmp_path / label / f"{i}.png")
    names, _ = run_example("class ImageFolder", **{'"my_images"': repr(str(tmp_path)), "range(20)": "range(1)"})
    assert names["data"].classes == ["cat", "dog"] and len(names["data"]) == 6
    x, y = next(iter(names["loader"]))
    assert x.shape == (6, 3, 32, 32) and x.dtype == torch.float32 and set(y.tolist()) == {0, 1}
    assert torch.isfinite(names["loss"]) and all(p.grad is not None for p in names["model"].parameters())


def test_readme_text_quickstart_trains_and_samples(tmp_path):
    """The README's two commands for a text file, on a small file with a few small steps."""
    from hyper.data.text import embedded_corpus
    from hyper.training.cli import main

    (block,) = [b for b in re.findall(r"```bash\n(.*?)```", README, re.S) if "my_corpus.txt" in b]
    fit, sample = (shlex.split(line.split("  #", 1)[0])[2:] for line in block.splitlines() if line.strip())
    corpus = tmp_path / "my_corpus.txt"
    corpus.write_text(embedded_corpus()[:6000])
    runs = tmp_path / "runs"
    small = ["--data.batch_size", "2", "--data.seq_len", "16", "--trainer.max_steps", "4",
             "--trainer.val_check_interval", "2", "--trainer.default_root_dir", str(runs)]
    threads = torch.get_num_threads()  # the preset sets one thread for the process
    try:
        assert main([str(corpus) if arg == "my_corpus.txt" else arg for arg in fit] + small, config_dir=ROOT / "configs") == 0
        report = json.loads(next(runs.glob("*/version_0/report.json")).read_text())
        assert report["status"] == "finished" and report["steps"] == 4 and report["test_bpc"] > 0
        sample = [str(tmp_path / arg) if arg.endswith(".ckpt") else arg for arg in sample]
        with contextlib.redirect_stdout(io.StringIO()) as printed:
            assert main(sample, config_dir=ROOT / "configs") == 0
        assert printed.getvalue().startswith("The ")
    finally:
        torch.set_num_threads(threads)


def test_the_text_size_stated_is_what_the_defaults_need():
    import inspect

    from hyper.data import CharDataModule

    defaults = {k: p.default for k, p in inspect.signature(CharDataModule).parameters.items()}
    per_split = defaults["batch_size"] * (defaults["seq_len"] + 1)  # streams × (window + its target)
    in_file = f"{round(per_split / min(defaults['split']), -3):,.0f}"
    assert stated(r"about ([\d,]+) characters in the file at the defaults", README) == (in_file,)
    assert stated(r"a 5% split needs ([\d,]+), so the file about ([\d,]+)", doc("cli")) == (f"{per_split:,}", in_file)
    assert min(defaults["split"]) == 0.05


def test_readme_default_figures_are_the_default_networks_and_its_committed_run():
    trainable, plain = stated(r"([\d,]+) trainable parameters for a ([\d,]+)-parameter plain network", README)
    count = count_parameters(build_network(preset("default")["model"]["init_args"]["network"]))
    assert (trainable, plain) == (f"{count.trainable:,}", f"{count.plain_equivalent:,}")
    (row,) = [row for row in jsonl("preset_runs.jsonl") if row["command"] == "python train.py"]
    assert stated(r"([\d.]+)% test accuracy", README) == (f"{100 * row['test_acc']:.1f}",)
    assert (row["trainable_params"], row["plain_equivalent_params"]) == (count.trainable, count.plain_equivalent)


def test_readme_headline_is_rows_of_the_digits_table():
    entries = summarize(read_rows(RESULTS / "digits_compression.jsonl"), "test_acc")
    full = summary_table(entries, "test_acc").splitlines()
    headline = section("headline")
    table, text = headline.split("\n\n", 1)
    lines = table.splitlines()
    assert lines[:2] == full[:2] and set(lines[2:]) <= set(full[2:])
    # every figure of the text under the table is one of the table's
    for number in re.findall(r"\d+(?:,\d{3})*(?:\.\d+)?", text):
        assert number in table, number


# ---------------------------------------------------------------------------------------------
# links: every relative link of the README and docs leads to a file, and an anchor to a heading


def github_anchor(heading: str) -> str:
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def headings(text: str) -> set[str]:
    text = re.sub(r"```.*?```", "", text, flags=re.S)
    return {github_anchor(line.lstrip("#")) for line in text.splitlines() if line.startswith("#")}


def test_links_lead_to_files_and_headings():
    pages = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    assert {p.name for p in pages} >= {"cli.md", "design.md", "compression.md", "recurrent.md", "results.md", "benchmarks.md"}
    for page in pages:
        text = re.sub(r"```.*?```", "", page.read_text(), flags=re.S)
        for target in re.findall(r"\]\(([^)\s]+)\)", text):
            if target.startswith(("http://", "https://")):
                continue
            path, _, anchor = target.partition("#")
            file = (page.parent / path).resolve() if path else page
            assert file.exists(), (page.name, target)
            if anchor:
                assert anchor in headings(file.read_text()), (page.name, target)


# ---------------------------------------------------------------------------------------------
# docs/results.md


def test_paper_table_is_current():
    assert section("paper-table", doc("results")) == paper_table()


def preset_runs_table(rows: list[dict]) -> str:
    lines = [
        "| command | model | trainable | plain-equivalent | compression | test metric | steps | seed |",
        "|---|---|---:|---:|---:|---|---:|---:|",
    ]
    for row in rows:
        metric = next(key for key in ("test_acc", "test_bpc") if key in row)
        cells = [f"`{row['command']}`", row["model"], f"{row['trainable_params']:,}",
                 f"{row['plain_equivalent_params']:,}", f"{row['compression_ratio']:.2f}x",
                 f"{metric} {row[metric]:.3f}", str(row["steps"]), str(row["seed"])]
        lines.append(f"| {' | '.join(cells)} |")
    return "\n".join(lines)


def test_preset_runs_table_is_the_committed_rows_of_what_the_presets_build():
    rows = jsonl("preset_runs.jsonl")
    assert section("preset-runs", doc("results")) == preset_runs_table(rows)
    for row in rows:
        words = shlex.split(row["command"])
        name = words[words.index("--config") + 1] if "--config" in words else "default"
        count = count_parameters(preset_network(name))
        assert (row["trainable_params"], row["plain_equivalent_params"]) == (count.trainable, count.plain_equivalent)


def test_char_default_bpc_is_its_committed_run():
    (row,) = [row for row in jsonl("preset_runs.jsonl") if row["command"] == "python train.py --config char_default"]
    figures = re.findall(r"test bpc (\d\.\d+)", doc("recurrent"))
    assert figures and set(figures) == {f"{row['test_bpc']:.2f}"}


def test_character_transformer_counts_are_what_the_presets_build():
    plain, hyper = count_parameters(preset_network("char_transformer")), count_parameters(preset_network("char_hyper_transformer"))
    assert hyper.plain_equivalent == plain.trainable == plain.plain_equivalent
    figures = stated(
        r"the plain transformer has ([\d,]+) parameters and the hypernetwork one ([\d,]+) trainable "
        r"parameters for the same network: \*\*([\d.]+)×\*\* fewer",
        doc("recurrent"),
    )
    assert figures == (f"{plain.trainable:,}", f"{hyper.trainable:,}", f"{hyper.compression_ratio:.2f}")


def test_digits_compression_tables_are_the_committed_results():
    rows = read_rows(RESULTS / "digits_compression.jsonl")
    entries = summarize(rows, "test_acc")
    results = doc("results")
    assert section("digits-compression", results) == f"{summary_table(entries, 'test_acc')}\n\n{smallest_within(entries)}"
    assert stated(r"The (\d+) runs' fits add up to (\d+) CPU-minutes", results) == (str(len(rows)), cpu_minutes(rows))


def test_recurrent_compression_tables_are_the_committed_results():
    rows = read_rows(RESULTS / "char_lstm.jsonl")
    entries = summarize(rows, "test_bpc", compare_to="plain")
    results = doc("results")
    assert section("char-lstm", results) == f"{summary_table(entries, 'test_bpc')}\n\n{smallest_within(entries, points=0.1)}"
    assert stated(r"the (\d+) fits add up to (\d+) CPU-minutes", results) == (str(len(rows)), cpu_minutes(rows))


def test_paper_claim_table_and_text_are_the_committed_results():
    rows = jsonl("shakespeare_paper_claim.jsonl")
    results = doc("results")
    table = section("paper-claim", results).splitlines()[2:]
    assert len(table) == 3
    means, allowed = {}, set()
    for line in table:
        method, units, params, val, test = (cell.strip() for cell in line.split("|")[1:-1])
        runs = [r for r in rows if r["method"] == method]
        assert sorted(r["seed"] for r in runs) == [0, 1, 2]
        assert (units, params) == (str(runs[0]["model_args"]["hidden_size"]), f"{runs[0]['trainable_params']:,}")
        for cell, key in ((val, "val_bpc"), (test, "test_bpc")):
            values = [r[key] for r in runs]
            assert cell == f"{statistics.mean(values):.3f} ± {statistics.stdev(values):.3f}", (method, key)
            means[method, key] = statistics.mean(values)
            allowed |= {f"{v:.3f}" for v in (*values, statistics.mean(values), statistics.stdev(values))}
    allowed |= {f"{abs(a - b):.3f}" for (_, k1), a in means.items() for (_, k2), b in means.items() if k1 == k2}
    text = section("paper-claim-text", results)
    for number in re.findall(r"\d+\.\d{3}", text):  # each a mean, a std, a seed or a gap between means
        assert number in allowed, number
    worst, best = stated(r"the worst HyperLSTM seed, ([\d.]+), beats the best LN-LSTM seed, ([\d.]+)", text)
    hyper = [r["val_bpc"] for r in rows if r["method"] == "HyperLSTM"]
    ln = [r["val_bpc"] for r in rows if r["method"] == "LN-LSTM equal units"]
    assert (worst, best) == (f"{max(hyper):.3f}", f"{min(ln):.3f}") and max(hyper) < min(ln)
    units = {r["method"]: r["model_args"]["hidden_size"] for r in rows}
    assert stated(r"Spent on (\d+) more units", text) == (str(units["LN-LSTM matched parameters"] - units["HyperLSTM"]),)
    assert stated(r"([\d,]+) steps each \(~([\d.]+) epochs\)", results) == (
        f"{rows[0]['steps']:,}", f"{rows[0]['epochs']:.1f}")
    assert {(r["steps"], r["epochs"]) for r in rows} == {(rows[0]["steps"], rows[0]["epochs"])}
    assert stated(r"The nine fits add up to (\d+) CPU-minutes", results) == (cpu_minutes(rows),) and len(rows) == 9
    speed = {m: statistics.mean(r["tokens_per_s"] for r in rows if r["method"] == m) for m in units}
    assert "about half the tokens per second of the 256-unit LN-LSTM" in prose(results)
    assert round(speed["HyperLSTM"] / speed["LN-LSTM equal units"], 1) == 0.5


# Routes whose trained network is the configured one: its count is what the preset builds.
BUILT_AS_CONFIGURED = {"plain", "hyper", "hyper tied", "lowrank", "tied", "templates", "dct", "ptq", "qat"}


def test_digits_compression_sizes_are_what_the_preset_builds():
    points = {}
    for point in load_sweep(ROOT / "configs" / "sweeps" / "digits_compression.yaml").points():
        points[(point.method, ", ".join(f"{k}={v}" for k, v in point.knobs.items()))] = point
    table = section("digits-compression", doc("results")).split("\n\n")[0]
    rows = [line.split("|")[1:-1] for line in table.splitlines()[2:]]
    checked = set()
    for method, knobs, trainable, compression, *_ in (map(str.strip, row) for row in rows):
        if method not in BUILT_AS_CONFIGURED:
            continue
        count = count_parameters(build_network(points[(method, knobs)].config["model"]["init_args"]["network"]))
        assert (trainable, compression) == (f"{count.trainable:,}", f"{count.compression_ratio:.2f}x"), (method, knobs)
        checked.add(method)
    assert checked == BUILT_AS_CONFIGURED


# ---------------------------------------------------------------------------------------------
# docs/benchmarks.md against the committed output of the benchmark runs


def test_readme_conditional_example_runs_per_task_and_per_sample():
    names, printed = run_example("Hyper(embedding_dim=16, num_tasks=5)")
    model, x = names["model"], names["x"]
    ratio = count_parameters(model).compression_ratio
    assert printed == {f"{ratio:.2f}x against 5 plain": "networks"}  # the one line it prints
    assert ratio > 5  # one hypernetwork against five plain networks
    torch.testing.assert_close(names["task3"](x), model(x, task=3))
    torch.testing.assert_close(names["y"], model(x, task=3))  # the last y: inside conditioned(task=3)
    tasks = torch.tensor([0, 3] * 16)
    per_sample = model(x, task=tasks)
    torch.testing.assert_close(per_sample[1::2], model(x[1::2], task=3), rtol=1e-5, atol=1e-6)


def table_cells(text: str, key_columns: int) -> dict[tuple[str, ...], dict[str, str]]:
    """A markdown table's rows as {key cells: {header: cell}}, the key being the first columns."""
    header, _, *rows = [[c.strip() for c in line.strip("|").split("|")] for line in text.splitlines() if line.startswith("|")]
    return {tuple(row[:key_columns]): dict(zip(header, row)) for row in rows}


@pytest.mark.parametrize("name, key_columns", [("continual", 1), ("lora tasks", 2)])
def test_readme_conditional_results_are_cells_of_the_tested_docs_tables(name, key_columns):
    # docs/conditional.md's tables are checked against the committed rows (test_continual.py,
    # test_lora_tasks.py); every cell the README shows must be the same row's cell there
    summary = table_cells(section(name.split()[0] + " summary"), key_columns)
    full = table_cells(section(name, doc("conditional")), key_columns)
    assert len(summary) >= 3
    for key, cells in summary.items():
        assert cells == {header: full[key][header] for header in cells}, key
