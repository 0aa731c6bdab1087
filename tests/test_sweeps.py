"""Sweeps: grid expansion, sharding, resume after interruption, results merge, the plot."""

import json

import pytest

from hyper.sweeps import finish, load_sweep, parse_shard, read_rows, run_sweep, shard, summarize
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
    return {"trainable_params": 1000 * capacity, "knobs": {"source": "knobs"}, "compression_ratio": 100 / capacity, "test_acc": 1 - 1 / (capacity + 1)}


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


def test_pareto_front():
    rows = [
        {"method": "a", "knobs": {"k": 1}, "trainable_params": 1, "compression_ratio": 10, "test_acc": 0.90},
        {"method": "a", "knobs": {"k": 2}, "trainable_params": 2, "compression_ratio": 5, "test_acc": 0.95},
        {"method": "b", "knobs": {"k": 1}, "trainable_params": 3, "compression_ratio": 4, "test_acc": 0.93},  # dominated
        {"method": "b", "knobs": {"k": 2}, "trainable_params": 4, "compression_ratio": 2, "test_acc": 0.97},
    ]
    front = pareto_front(summarize(rows, "test_acc"))
    assert [(e.method, e.knobs["k"]) for e in front] == [("b", 2), ("a", 2), ("a", 1)]


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
