"""docs/benchmarks.md is what the committed benchmark output says: every table rebuilt from
benchmarks/results/benchmarks_2026-11-21.txt (and the runs since live weights from the later
files), every figure in its prose recomputed from them."""

import re
import statistics
from collections import Counter

from doc_text import RESULTS, ROOT, doc, markdown_table, prose, section, stated
from models import compiled_steps

BENCHMARKS = RESULTS / "benchmarks_2026-11-21.txt"
# after the weights were bound live on the target (hyper/binding.py): the runs since, by date
LIVE = [RESULTS / "benchmarks_2026-12-03.txt", RESULTS / "benchmarks_2026-12-04.txt"]
STEP_HEADER = re.compile(
    r"^(?P<model>\w+): batch (?P<batch>\d+), (?P<input>[^,]+), (?P<threads>\d+) thread\(s\), "
    r"(?P<rounds>\d+) rounds after \d+ warm-up, glibc malloc (?P<allocator>\w+)",
    re.M,
)
MEDIAN = re.compile(r"^  (?P<name>[a-z ]+?)\s+(?P<ms>\d+\.\d+) ms$", re.M)
RATIO = re.compile(
    r"ratio of medians (?P<ratio>\d+\.\d+), 90% interval (?P<low>\d+\.\d+)-(?P<high>\d+\.\d+): "
    r"(?P<verdict>met|NOT met|within noise) \([^\d)]*(?P<target>\d+(?:\.\d+)?)\)$",
    re.M,
)
PHASE = re.compile(r"^    (?P<phase>[a-z +]+?)\s+(?P<hyper>\d+\.\d+)\s+(?P<plain>\d+\.\d+)\s+(?P<difference>[+-]\d+\.\d+)$", re.M)
GENERATED = re.compile(r"for (?P<weights>\d+\.\d+)M generated weights = (?P<per_million>\d+\.\d+) ms per million")
LSTM_HEADER = re.compile(
    r"^training step, batch (?P<batch>\d+), sequence (?P<sequence>\d+), vocab (?P<vocab>\d+), "
    r"(?P<threads>\d+) thread\(s\), .*?(?P<rounds>\d+) rounds after \d+ warm-up; allocator: (?P<allocator>.+)$",
    re.M,
)
LSTM_ROW = re.compile(
    r"^(?P<name>\S.*?)\s{2,}(?P<hidden>\d+)\s+(?P<params>[\d,]+)\s+(?P<ms>\d+\.\d+)\s+(?P<ratio>\d+\.\d+)\s+"
    r"(?P<low>\d+\.\d+)–(?P<high>\d+\.\d+)(?:\s+≤ (?P<target>[\d.]+): (?P<verdict>met|NOT met|within noise))?",
    re.M,
)
ALLOCATORS = {"glibc defaults": "default", "glibc, caching thresholds": "caching"}


def benchmark_blocks() -> list[tuple[str, str]]:
    """(command, what it printed) for each ``$ command`` block of the committed output."""
    blocks = BENCHMARKS.read_text().split("\n$ ")[1:]
    return [tuple(block.split("\n", 1)) for block in blocks]


def step_time_runs(blocks: list[tuple[str, str]] | None = None) -> list[dict]:
    """benchmarks/step_time.py's runs, in the file's order, each labelled ``model #n``."""
    runs, seen = [], {}
    for command, output in benchmark_blocks() if blocks is None else blocks:
        if not command.startswith("python benchmarks/step_time.py"):
            continue
        training, inference = output.split("\ninference (eval, one batch)", 1)
        run = STEP_HEADER.search(training).groupdict()
        seen[run["model"]] = seen.get(run["model"], 0) + 1
        run["label"] = f"`{run['model']}` #{seen[run['model']]}"
        run["step"] = {m["name"]: float(m["ms"]) for m in MEDIAN.finditer(training)}
        run["step_ratio"] = RATIO.search(training).groupdict()
        run["phases"] = {m["phase"]: m.groupdict() for m in PHASE.finditer(training)}
        run.update(GENERATED.search(training).groupdict())
        run["inference"] = {m["name"]: float(m["ms"]) for m in MEDIAN.finditer(inference)}
        run["inference_ratio"] = RATIO.search(inference).groupdict()
        runs.append(run)
    return runs


def live_runs() -> list[dict]:
    """The step_time.py runs since the weights are bound live on the target: the later files'
    ``## command  (run n)`` blocks, each run with its file's date."""
    runs = []
    for path in LIVE:
        blocks = [tuple(b.split("\n", 1)) for b in path.read_text().split("\n## ")[1:]]
        blocks = [(re.sub(r"\s+\(run \d+\)$", "", command), output) for command, output in blocks]
        runs += [{**run, "date": path.stem.split("_", 1)[1]} for run in step_time_runs(blocks)]
    return runs


def live_table() -> str:
    rows = [
        [r["date"], r["label"], f"{r['step']['hyper step']:.1f}", f"{r['step']['plain step']:.1f}",
         interval(r["step_ratio"]), verdict(r["step_ratio"]), r["phases"]["backward"]["difference"]]
        for r in live_runs()
    ]
    header = ["date", "run", "hyper step (ms)", "plain step (ms)", "hyper ÷ plain (90% interval)", "target", "backward, hyper − plain (ms)"]
    return markdown_table(header, ["---", "---", "---:", "---:", "---", "---", "---:"], rows)


def lstm_runs() -> list[dict]:
    """benchmarks/lstm_step_time.py's tables: one per run and allocator, rows by model."""
    runs, count = [], 0
    for command, output in benchmark_blocks():
        if not command.startswith("python benchmarks/lstm_step_time.py"):
            continue
        count += 1
        headers = list(LSTM_HEADER.finditer(output))
        for header, end in zip(headers, [*headers[1:], None]):
            table = output[header.end() : end.start() if end else None]
            run = {**header.groupdict(), "run": count, "allocator": ALLOCATORS[header["allocator"]]}
            run["rows"] = {m["name"]: m.groupdict() for m in LSTM_ROW.finditer(table)}
            runs.append(run)
    return runs


def verdict(ratio: dict) -> str:
    return f"≤ {ratio['target']}: {ratio['verdict'].lower()}"


def interval(ratio: dict) -> str:
    return f"{ratio['ratio']} ({ratio['low']}–{ratio['high']})"


PHASES = ("generation forward", "forward + loss", "backward", "optimizer step", "sum of phases")


def share_of_plain_step(run: dict) -> str:
    return f"{100 * run['step']['generation'] / run['step']['plain step']:.1f}%"


# The tables of step_time.py's runs, one row a run after its label and allocator:
# {marker: (the other columns, "l" or "r" alignment of each, a run -> those cells)}.
STEP_TABLES = {
    "step-setup": (
        ["input", "batch", "threads", "rounds"], "lrrr",
        lambda r: [r["input"].replace("x", "×"), r["batch"], r["threads"], r["rounds"]],
    ),
    "step-time": (
        ["hyper step (ms)", "plain step (ms)", "hyper ÷ plain (90% interval)", "target"], "rrll",
        lambda r: [f"{r['step']['hyper step']:.1f}", f"{r['step']['plain step']:.1f}",
                   interval(r["step_ratio"]), verdict(r["step_ratio"])],
    ),
    "generation": (
        ["generated weights", "generation, forward + backward (ms)", "per million weights (ms)", "÷ plain step"], "rrrr",
        lambda r: [f"{r['weights']}M", f"{r['step']['generation']:.1f}", r["per_million"], share_of_plain_step(r)],
    ),
    "phases": (list(PHASES), "rrrrr", lambda r: [r["phases"][phase]["difference"] for phase in PHASES]),
    "inference": (
        ["materialized (ms)", "plain (ms)", "materialized ÷ plain (90% interval)", "target"], "rrll",
        lambda r: [f"{r['inference']['materialized']:.1f}", f"{r['inference']['plain']:.1f}",
                   interval(r["inference_ratio"]), verdict(r["inference_ratio"])],
    ),
}


def step_time_table(name: str) -> str:
    columns, align, cells = STEP_TABLES[name]
    rows = [[run["label"], run["allocator"], *cells(run)] for run in step_time_runs()]
    return markdown_table(["run", "allocator", *columns], ["---", "---", *("---" if a == "l" else "---:" for a in align)], rows)


def benchmark_tables() -> dict[str, str]:
    """The tables docs/benchmarks.md shows, made from the committed output."""
    return {**{name: step_time_table(name) for name in STEP_TABLES}, "lstm-step-time": lstm_table(), "step-time-live": live_table()}


def lstm_table() -> str:
    runs = lstm_runs()
    names = list(runs[0]["rows"])
    rows = []
    for allocator in ("default", "caching"):
        for name in names:
            cells = []
            for run in (r for r in runs if r["allocator"] == allocator):
                row = run["rows"][name]
                goal = f": {row['verdict'].lower()}" if row["target"] else ""
                cells += [row["ms"], f"{row['ratio']} ({row['low']}–{row['high']}){goal}"]
            first = run["rows"][name]
            rows.append([name, allocator, first["hidden"], first["params"], *cells])
    header = ["model", "allocator", "hidden", "params", "run 1 (ms)", "run 1 ÷ nn.LSTM (90% interval)",
              "run 2 (ms)", "run 2 ÷ nn.LSTM (90% interval)"]
    return markdown_table(header, ["---", "---", "---:", "---:", "---:", "---", "---:", "---"], rows)


def test_benchmarks_tables_are_the_committed_output():
    benchmarks = doc("benchmarks")
    for name, table in benchmark_tables().items():
        assert section(name, benchmarks) == table, name


def test_benchmarks_setup_is_what_the_runs_printed():
    text = prose(doc("benchmarks"))
    commands = Counter(command for command, _ in benchmark_blocks())
    (caching,) = [command for command in commands if "--malloc caching" in command]
    assert "--model wrn28_10" in caching and commands[caching] == 1
    assert all(n == 2 for command, n in commands.items() if command != caching)
    assert "two runs of each command, and one of WRN-28-10 with the caching allocator" in text
    assert f"the runs of {BENCHMARKS.stem.rsplit('_', 1)[1]}" in text
    threads = {r["threads"] for r in step_time_runs()} | {r["threads"] for r in lstm_runs()}
    assert threads == {"1"} and "Every run uses 1 thread" in text
    (version,) = set(re.findall(r"torch (\S+)\+cpu", BENCHMARKS.read_text()))
    assert f"torch {version} CPU" in text


def test_benchmarks_generation_figures_are_the_committed_output():
    text, runs = doc("benchmarks"), step_time_runs()
    large = [float(r["per_million"]) for r in runs if r["model"] != "wrn40_1"]
    assert stated(r"Generation costs about (\d+) ms per million generated weights\*\* on the two large models", text) == (
        f"{round(statistics.mean(large))}",)
    small = [r for r in runs if r["model"] == "wrn40_1"]
    low, *_, high = sorted(float(r["per_million"]) for r in small)
    assert stated(r"On WRN-40-1's ([\d.]+)M weights it is ([\d.]+)–([\d.]+) ms per million", text) == (
        small[0]["weights"], f"{low:.1f}", f"{high:.1f}")
    (target,) = re.findall(r"generation <= (\d+) ms", (ROOT / "benchmarks" / "step_time.py").read_text())
    assert stated(r"target for the generation, ≤ (\d+) ms at 1 thread\*\* \(`benchmarks/step_time.py`\), is met in every run", text) == (target,)
    assert all(r["step"]["generation"] <= float(target) for r in runs if r["model"] == "wrn28_10")


def test_benchmarks_breakdown_figures_are_the_committed_output():
    text, runs = doc("benchmarks"), step_time_runs()

    def phase(run: dict, name: str, side: str = "difference") -> float:
        return float(run["phases"][name][side])

    forward = max(100 * phase(r, "forward + loss") / phase(r, "forward + loss", "plain") for r in runs)
    assert stated(r"at most (\d+)% of the plain network's forward and loss", text) == (f"{round(forward)}",)
    assert all(max(PHASES[:4], key=lambda name: phase(r, name)) == "backward" for r in runs)  # most of it
    assert all(phase(r, "optimizer step") < 0 for r in runs)  # the optimizer step saves
    wide = [r for r in runs if r["model"] == "wrn28_10"]
    own_backward = [r["step"]["generation"] - phase(r, "generation forward", "hyper") for r in wide]
    default = [b for r, b in zip(wide, own_backward) if r["allocator"] == "default"]
    assert stated(r"the generation's own backward is about (\d+) ms", text) == (f"{round(statistics.mean(default))}",)
    assert stated(r"the gradients of (\d+) MB of generated weights \(fp32\)", text) == (f"{round(float(wide[0]['weights']) * 4)}",)
    # "With --malloc caching the step ratio drops to within noise of its target, and the
    # backward's extra time to about the generation's own backward."
    assert "the step ratio drops to within noise of its target, and the backward's extra time to about the generation's own backward" in prose(text)
    (caching,) = [(r, b) for r, b in zip(wide, own_backward) if r["allocator"] == "caching"]
    assert caching[0]["step_ratio"]["verdict"] == "within noise"
    assert all(r["step_ratio"]["verdict"] == "NOT met" for r in wide if r["allocator"] == "default")
    assert abs(phase(caching[0], "backward") - caching[1]) < 0.1 * caching[1]
    low, *_, high = sorted(float(r["inference_ratio"]["ratio"]) for r in runs)
    assert stated(r"the ratios lie between ([\d.]+) and ([\d.]+), and no run misses the target", text) == (f"{low:.3f}", f"{high:.3f}")
    assert all(r["inference_ratio"]["verdict"] != "NOT met" for r in runs)


def test_benchmarks_recurrent_figures_are_the_committed_output():
    text, runs = doc("benchmarks"), lstm_runs()
    script = (ROOT / "benchmarks" / "lstm_step_time.py").read_text()
    hidden, hyper_size, n_z = re.search(r"^HIDDEN, HYPER_SIZE, EMBEDDING_DIM = (\d+), (\d+), (\d+)$", script, re.M).groups()
    setup = ("batch", "sequence", "vocab", "threads", "rounds")
    first = runs[0]
    assert all(tuple(r[k] for k in setup) == tuple(first[k] for k in setup) for r in runs)
    assert first["rows"]["nn.LSTM"]["hidden"] == hidden
    assert stated(
        r"batch (\d+), sequence (\d+), vocabulary (\d+), hidden (\d+), HyperLSTM with a hyper LSTM of (\d+) "
        r"and N_z (\d+); (\d+) thread, (\d+) rounds",
        text,
    ) == (first["batch"], first["sequence"], first["vocab"], hidden, hyper_size, n_z, first["threads"], first["rounds"])
    targets = {name: row["target"] for name, row in first["rows"].items() if row["target"]}
    assert stated(r"Targets: HyperLSTM ≤ ([\d.]+)× and LN-LSTM ≤ ([\d.]+)× nn.LSTM", text) == (targets["HyperLSTM"], targets["LN-LSTM"])
    verdicts = {a: {r["rows"][n]["verdict"] for r in runs if r["allocator"] == a for n in targets} for a in ALLOCATORS.values()}
    assert verdicts == {"default": {"met"}, "caching": {"NOT met"}}
    assert "Under the default allocator both targets are met" in prose(text) and "neither target is met" in prose(text)

    def ms(run: dict, name: str) -> float:
        return float(run["rows"][name]["ms"])

    pairs = [(d, c) for d in runs for c in runs if (d["allocator"], c["allocator"]) == ("default", "caching") and d["run"] == c["run"]]
    low, *_, high = sorted(round(100 * (1 - ms(c, "nn.LSTM") / ms(d, "nn.LSTM"))) for d, c in pairs)
    fused = max(abs(100 * (1 - ms(c, name) / ms(d, name))) for d, c in pairs for name in targets)
    assert stated(r"gets (\d+)–(\d+)% faster, while the fused cores' steps change by at most (\d+)%", text) == (
        str(low), str(high), str(round(fused)))
    low, *_, high = sorted(ms(r, "HyperLSTM") / ms(r, "LN-LSTM 365 (params)") for r in runs if r["allocator"] == "default")
    assert stated(r"HyperLSTM's step costs ([\d.]+)–([\d.]+)× that of an LN-LSTM of its size", text) == (f"{low:.2f}", f"{high:.2f}")


def test_benchmarks_live_weights_figures_are_the_committed_output():
    text, live, before = doc("benchmarks"), live_runs(), step_time_runs()
    assert "No run misses its step target" in prose(text)
    assert all(r["step_ratio"]["verdict"] != "NOT met" for r in live)
    wide_now = [r["phases"]["backward"]["difference"] for r in live if r["model"] == "wrn28_10"]
    wide_then = [r["phases"]["backward"]["difference"].lstrip("+") for r in before if r["model"] == "wrn28_10" and r["allocator"] == "default"]
    assert stated(r"hyper − plain (\S+) and (\S+) ms, against \+(\S+) and \+(\S+) ms on 2026-11-21", text) == (*wide_now, *wide_then)

    def slower(date: str) -> int:  # how many times as slow as 2026-11-21, on the models both ran
        ratios = [r["step"]["plain step"] / statistics.mean(b["step"]["plain step"] for b in before if b["model"] == r["model"])
                  for r in live if r["date"] == date and any(b["model"] == r["model"] for b in before)]
        return round(statistics.mean(ratios))

    assert stated(r"Those machines ran about (\w+) and (\w+) times as slow", text) == ("two", "three")
    assert (slower("2026-12-03"), slower("2026-12-04")) == (2, 3)


COMPILED_STEPS = RESULTS / "lstm_compiled_steps_2026-12-04.txt"
COMPILED_HEADER = re.compile(r"^training step on (?P<where>[^,]+), .*?(?P<per_call>\d+) step\(s\) per compiled call", re.M)
COMPILED_ROW = re.compile(
    r"^(?P<name>\S.*?)\s{2,}(?P<ms>\d+\.\d+)\s+\d+\.\d+\s+\d+\.\d+–\d+\.\d+\s*"
    r"(?:(?P<speedup>\d+\.\d+) \((?P<low>\d+\.\d+)–(?P<high>\d+\.\d+)\))?$",
    re.M,
)


def compiled_steps_runs() -> list[dict]:
    """benchmarks/lstm_gpu_step_time.py's CPU-proxy runs, in the file's order."""
    runs = []
    for block in COMPILED_STEPS.read_text().split("\n$ ")[1:]:
        command, output = block.split("\n", 1)
        assert command.startswith("python benchmarks/lstm_gpu_step_time.py --device cpu")
        header = COMPILED_HEADER.search(output)
        assert header["where"] == "CPU" and "the compiled steps ran" in output and "FAILED" not in output
        rows = {m["name"]: m.groupdict() for m in COMPILED_ROW.finditer(output)}
        seconds = re.search(r"^\((\d+) s in all, compiles included\)$", output, re.M)[1]
        runs.append({"per_call": int(header["per_call"]), "rows": rows, "seconds": seconds})
    return runs


def test_benchmarks_compiled_steps_figures_are_the_committed_output():
    runs = compiled_steps_runs()
    assert [run["per_call"] for run in runs] == [1, 2, 4, 8, 4]
    rows, seen = [], Counter()
    for run in runs:
        seen[run["per_call"]] += 1
        label = f"{run['per_call']}" + (" (cache warm)" if seen[run["per_call"]] > 1 else "")
        cells = [label]
        for core in ("LN-LSTM", "HyperLSTM"):
            compiled, eager = run["rows"][f"{core} compiled"], run["rows"][f"{core} eager"]
            cells += [compiled["ms"], eager["ms"], f"{compiled['speedup']} ({compiled['low']}–{compiled['high']})"]
        rows.append(cells + [run["seconds"]])
    header = ["steps per call", "LN-LSTM compiled (ms)", "LN-LSTM eager (ms)", "eager ÷ compiled (90% interval)",
              "HyperLSTM compiled (ms)", "HyperLSTM eager (ms)", "eager ÷ compiled (90% interval)",
              "whole run (s), compiles included"]
    text = doc("benchmarks")
    assert section("compiled-steps", text) == markdown_table(header, ["---:", *["---:"] * 7], rows)

    def speedup(per_call: int, core: str, index: int = 0) -> str:
        return [run for run in runs if run["per_call"] == per_call][index]["rows"][f"{core} compiled"]["speedup"]

    assert stated(r"One step per call gains little\*\* \((\d\.\d+)× and (\d\.\d+)×\)", text) == (
        speedup(1, "LN-LSTM"), speedup(1, "HyperLSTM"))
    fours = [float(speedup(4, core, i)) for core in ("LN-LSTM", "HyperLSTM") for i in (0, 1)]
    assert stated(r"at 4 steps per call the compiled steps are (\d\.\d+)–(\d\.\d+)× faster", text) == (
        f"{min(fours):.2f}", f"{max(fours):.2f}")
    assert stated(r"8 gain a little more \((\d\.\d+)× and (\d\.\d+)×\)", text) == (
        speedup(8, "LN-LSTM"), speedup(8, "HyperLSTM"))
    assert min(float(speedup(8, core)) for core in ("LN-LSTM", "HyperLSTM")) > max(fours)  # "a little more"
    first = {run["per_call"]: run["seconds"] for run in reversed(runs)}  # each setting's first, cold run
    assert stated(r"their first run took (\d+) s against (\d+) s, compiles included", text) == (first[8], first[4])
    assert stated(r"`torch.compile`-d \(Triton on CUDA\), (\d+) time steps per compiled call", text) == (
        str(compiled_steps.STEPS_PER_CALL),)
