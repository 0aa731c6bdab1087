"""Sweeps: grid expansion, sharding, resume after interruption, results merge, the plot."""

import json

from pathlib import Path

import pytest

from hyper.sweeps import finish, load_sweep, parse_shard, read_rows, run_sweep, shard, summarize
from hyper.sweeps.plot import FRONT_LABEL, draw_curves
from hyper.sweeps.summary import pareto_front

SWEEP = """
base: base.yaml
metric: test_acc
seeds: [0, 1]
overrides: {trainer.max_epochs: 3}
methods:
  - name: hyper
    vary: {model.init_args.embedding_dim: [2, 4, 8]}
  - name: lowrank
    set: {model: {class_path: models.WideResNet, init_args: {source: {class_path: hyper.LowRank}}}}
    vary: {model.init_args.source.init_args.rank: [1, 2], model.init_args.depth: [10, 16]}
"""
BASE = "model:\n  class_path: models.HyperResNet\n  init_args: {depth: 10, embedding_dim: 64}\ntrainer: {max_epochs: 50}\n"


@pytest.fixture
def sweep(tmp_path):
    (tmp_path / "base.yaml").write_text(BASE)
    (tmp_path / "s.yaml").write_text(SWEEP)
    return load_sweep(tmp_path / "s.yaml")


def fake_run(point, run_dir, resume=None):
    """Deterministic stand-in for training: more capacity, more accuracy."""
    init = point.config["model"]["init_args"]
    capacity = init.get("embedding_dim") or init["source"]["init_args"]["rank"] * 3
    return {"trainable_params": 1000 * capacity, "knobs": {"source": "knobs"}, "compression_ratio": 100 / capacity,
            "size_bytes": 4000 * capacity + point.seed, "compression_bytes": 400 / capacity,
            "test_acc": 1 - 1 / (capacity + 1) - 0.01 * point.seed}


def test_grid_expands_as_written(sweep):
    points = sweep.points()
    assert len(points) == (3 + 2 * 2) * 2
    assert [p.knobs for p in points[:6:2]] == [{"embedding_dim": d} for d in (2, 4, 8)]
    assert [p.seed for p in points[:2]] == [0, 1]
    hyper = points[0].config
    assert hyper["model"] == {"class_path": "models.HyperResNet", "init_args": {"depth": 10, "embedding_dim": 2}}
    assert hyper["trainer"]["max_epochs"] == 3  # overrides apply to every point
    low = points[6].config["model"]
    # ``set`` replaced the whole model: nothing of HyperResNet's init_args leaks into it.
    assert low == {"class_path": "models.WideResNet", "init_args": {"source": {"class_path": "hyper.LowRank", "init_args": {"rank": 1}}, "depth": 10}}
    assert len({p.key for p in points}) == len(points)


def test_shards_partition_the_points(sweep):
    points = sweep.points()
    parts = [shard(points, i, 3) for i in (1, 2, 3)]
    keys = [p.key for part in parts for p in part]
    assert sorted(keys) == sorted(p.key for p in points) and len(keys) == len(set(keys))
    assert parse_shard("2/3") == (2, 3)


@pytest.mark.parametrize(("name", "count"), [("shakespeare_lstm", 8), ("char_lstm", 3), ("char_lstm", 2)])
def test_a_student_is_in_its_teachers_shard_after_it(name, count):
    points = load_sweep(Path(__file__).resolve().parents[1] / "configs" / "sweeps" / f"{name}.yaml").points()
    parts = [shard(points, i, count) for i in range(1, count + 1)]
    keys = [p.key for part in parts for p in part]
    assert sorted(keys) == sorted(p.key for p in points) and len(keys) == len(set(keys))
    students = 0
    for part in parts:
        for position, point in enumerate(part):
            if point.teacher_from:
                teachers = [p for p in part[:position] if p.method == point.teacher_from and p.seed == point.seed]
                assert teachers, (point.label, "its teacher is not earlier in its shard")
                students += 1
    assert students == sum(p.teacher_from is not None for p in points) > 0
    assert max(map(len, parts)) - min(map(len, parts)) <= len(points) // count  # still spread
    for bad in ("0/3", "4/3", "x", "1/2/3"):
        with pytest.raises(ValueError, match="shard"):
            parse_shard(bad)


def test_interrupted_sweep_resumes_without_redoing(sweep, tmp_path):
    calls = []

    def crash_after_first(point, run_dir, resume):
        if calls:
            raise KeyboardInterrupt
        calls.append(point.key)
        return fake_run(point, run_dir)

    folder = tmp_path / "out"
    with pytest.raises(KeyboardInterrupt):
        run_sweep(sweep, folder, crash_after_first, log=lambda s: None)
    assert [r["key"] for r in read_rows(folder)] == calls

    rerun = []
    run_sweep(sweep, folder, lambda p, d, r: rerun.append(p.key) or fake_run(p, d), log=lambda s: None)
    assert calls[0] not in rerun and len(rerun) == len(sweep.points()) - 1
    assert len(read_rows(folder)) == len(sweep.points())


def test_shard_results_merge_and_partial_lines_are_ignored(sweep, tmp_path):
    folder = tmp_path / "out"
    for i in (1, 2):
        run_sweep(sweep, folder, fake_run, shard_spec=(i, 2), log=lambda s: None)
    files = sorted(folder.glob("results*.jsonl"))
    assert [f.name for f in files] == ["results.shard-1-of-2.jsonl", "results.shard-2-of-2.jsonl"]
    with open(files[0], "a") as f:
        f.write('{"key": "half a ro')  # a write cut by a crash
    rows = read_rows(folder)
    assert sorted(r["key"] for r in rows) == sorted(p.key for p in sweep.points())


def test_summary_and_plot_from_a_results_file(sweep, tmp_path):
    folder = tmp_path / "out"
    run_sweep(sweep, folder, fake_run, log=lambda s: None)
    lines = []
    png = finish("s", folder, "test_acc", log=lines.append)
    assert png.is_file() and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "| hyper | embedding_dim=8 |" in lines[0]
    rows = read_rows(folder)
    assert rows[0]["knobs"] == {"embedding_dim": 2} and rows[0]["source_knobs"] == {"source": "knobs"}
    entries = summarize(rows, "test_acc")
    assert len(entries) == 3 + 4 and all(e.seeds == 2 for e in entries)


ROWS = [
    {"method": "a", "knobs": {"k": 1}, "trainable_params": 1, "compression_ratio": 10, "test_acc": 0.90},
    {"method": "a", "knobs": {"k": 2}, "trainable_params": 2, "compression_ratio": 5, "test_acc": 0.95},
    {"method": "b", "knobs": {"k": 1}, "trainable_params": 3, "compression_ratio": 4, "test_acc": 0.93},  # dominated
    {"method": "b", "knobs": {"k": 2}, "trainable_params": 4, "compression_ratio": 2, "test_acc": 0.97},
]


def test_pareto_front():
    front = pareto_front(summarize(ROWS, "test_acc"))
    assert [(e.method, e.knobs["k"]) for e in front] == [("b", 2), ("a", 2), ("a", 1)]


def drawn(figure):
    """What a compression-curve figure shows: {label: (x, y)} of its lines, its ringed points,
    its point labels, the front's draw style and the axes' scales."""
    (ax,) = figure.axes
    lines = {c.get_label(): c.lines[0] for c in ax.containers}  # errorbar: one container per method
    lines |= {line.get_label(): line for line in ax.get_lines() if not line.get_label().startswith("_")}
    (rings,) = [c for c in ax.collections if type(c).__name__ == "PathCollection"]
    return {
        "lines": {label: (list(line.get_xdata()), list(line.get_ydata())) for label, line in lines.items()},
        "front_style": lines[FRONT_LABEL].get_drawstyle(),
        "rings": [tuple(point) for point in rings.get_offsets()],
        "labels": sorted((t.get_text(), tuple(t.xy)) for t in ax.texts),
        "scales": (ax.get_xscale(), ax.get_yscale()),
        "ylabel": ax.get_ylabel(),
        "legend": [t.get_text() for t in ax.get_legend().get_texts()],
    }


def test_the_plot_shows_each_method_and_the_front():
    shown = drawn(draw_curves(summarize(ROWS, "test_acc"), "test_acc"))
    assert shown["scales"] == ("log", "linear") and shown["ylabel"] == "test error (%)"
    assert sorted(shown["legend"]) == ["Pareto front", "a", "b"]
    # error in % against compression, each method's points in order of compression
    assert shown["lines"] == {
        "a": ([5, 10], pytest.approx([5, 10])),
        "b": ([2, 4], pytest.approx([3, 7])),
        "Pareto front": ([2, 5, 10], pytest.approx([3, 5, 10])),
    }
    # the best error reachable at each compression or more: a staircase that steps at each point
    assert shown["front_style"] == "steps-pre"
    assert shown["rings"] == [(2, pytest.approx(3)), (5, pytest.approx(5)), (10, pytest.approx(10))]
    assert [(text, x) for text, (x, _) in shown["labels"]] == [("1", 4), ("1", 10), ("2", 2), ("2", 5)]


def test_the_plot_takes_a_log_cost_axis_when_a_point_collapses():
    collapsed = {"method": "c", "knobs": {"k": 1}, "trainable_params": 1, "compression_ratio": 20, "test_acc": 0.1}
    shown = drawn(draw_curves(summarize([*ROWS, collapsed], "test_acc"), "test_acc"))
    assert shown["scales"] == ("log", "log")  # 3% to 90%: a linear axis would squash the rest
    assert shown["lines"]["Pareto front"] == ([2, 5, 10, 20], pytest.approx([3, 5, 10, 90]))
    bpc = [{**row, "test_bpc": 1 + row["test_acc"]} for row in ROWS]
    shown = drawn(draw_curves(summarize(bpc, "test_bpc"), "test_bpc"))
    assert shown["ylabel"] == "test_bpc" and shown["scales"] == ("log", "linear")
    assert shown["lines"]["Pareto front"] == ([10], pytest.approx([1.9]))  # lower bpc is better


def test_bad_sweep_files(tmp_path):
    (tmp_path / "a.yaml").write_text("methods: []\n")
    with pytest.raises(ValueError, match="non-empty 'methods'"):
        load_sweep(tmp_path / "a.yaml")
    (tmp_path / "b.yaml").write_text("methods: [{name: x, vary: {a: 3}}]\n")
    with pytest.raises(ValueError, match="vary.a must be a non-empty list"):
        load_sweep(tmp_path / "b.yaml")
    with pytest.raises(FileNotFoundError, match="sweep file not found"):
        load_sweep(tmp_path / "missing.yaml")


def test_set_path_indexes_lists():
    from hyper.sweeps.grid import set_path

    config = {"trainer": {"callbacks": [{"class_path": "X"}]}}
    set_path(config, "trainer.callbacks.0.init_args.amount", 0.5)
    assert config == {"trainer": {"callbacks": [{"class_path": "X", "init_args": {"amount": 0.5}}]}}
    with pytest.raises(ValueError, match="not an index"):
        set_path(config, "trainer.callbacks.3.x", 1)


def test_bytes_axis_table_and_plot(sweep, tmp_path):
    from hyper.sweeps.plot import default_axes, plot_curves
    from hyper.sweeps.summary import summary_table

    folder = tmp_path / "out"
    run_sweep(sweep, folder, fake_run, log=lambda s: None)
    entries = summarize(read_rows(folder), "test_acc")
    (first,) = [e for e in entries if e.knobs == {"embedding_dim": 2}]  # seeds 0 and 1
    assert first.size_bytes == 8000 and first.compression_bytes == pytest.approx(200)  # seeds' mean
    assert first.cost_std == pytest.approx(100 * 0.01 / 2**0.5)  # two seeds 1 point apart
    table = summary_table(entries, "test_acc")
    assert "| bytes | byte compression |" in table and "| 8,000 | 200.00x |" in table and " ± 0.71 |" in table
    assert default_axes(entries) == ("params", "bytes")
    assert pareto_front(entries, "bytes")[-1].compression_bytes == max(e.compression_bytes for e in entries)
    png = plot_curves(entries, "test_acc", tmp_path / "both.png", axes=default_axes(entries))
    assert png.read_bytes()[:4] == b"\x89PNG"
    old = [{k: v for k, v in row.items() if k not in ("size_bytes", "compression_bytes")} for row in read_rows(folder)]
    old_entries = summarize(old, "test_acc")  # results written before the byte count
    assert default_axes(old_entries) == ("params",) and "| - | - |" in summary_table(old_entries, "test_acc")
    with pytest.raises(ValueError, match="no compression_bytes"):
        pareto_front(old_entries, "bytes")


def test_smallest_size_within_a_point_of_plain():
    from hyper.sweeps.summary import smallest_within

    def row(method, k, acc, size):
        return {"method": method, "knobs": {"k": k}, "trainable_params": size, "compression_ratio": 1.0,
                "size_bytes": size, "compression_bytes": 1000 / size, "test_acc": acc}

    rows = [row("plain", 1, 0.970, 1000), row("q", 8, 0.968, 250), row("q", 4, 0.961, 125), row("q", 1, 0.90, 40),
            row("bad", 1, 0.5, 10)]
    table = smallest_within(summarize(rows, "test_acc"))
    assert "| q | 125 | k=4 | 8.00x |" in table  # 3.9 error <= 3.0 + 1; 10.0 is not
    assert "| bad | - | - | - |" in table and "| plain | 1,000 | k=1 | 1.00x |" in table


def test_a_rerun_takes_a_finished_report_and_clears_an_orphan_folder(sweep, tmp_path):
    folder = tmp_path / "out"
    first, second = sweep.points()[:2]
    # killed after the first point's run finished, before its row was written
    finished = folder / "runs" / first.key / "net" / "version_0"
    finished.mkdir(parents=True)
    (finished / "report.json").write_text(json.dumps({"status": "finished", **fake_run(first, None)}))
    # killed before the second point's first checkpoint: a folder with nothing to keep
    orphan = folder / "runs" / second.key / "net" / "version_0"
    orphan.mkdir(parents=True)
    (orphan / "metrics.csv").write_text("step\n")
    ran = []
    run_sweep(sweep, folder, lambda p, d, r: ran.append((p.key, d.exists(), r)) or fake_run(p, d), log=lambda s: None)
    assert first.key not in [key for key, _, _ in ran]  # its row came from its report
    assert (second.key, False, None) in ran  # run afresh, after its orphan folder was removed
    assert sorted(r["key"] for r in read_rows(folder)) == sorted(p.key for p in sweep.points())
