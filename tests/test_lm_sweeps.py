"""Recurrent compression sweeps: the presets parse and train, a distilled point reads its
teacher's checkpoint, compression against a reference network, bits per character as a cost."""

from __future__ import annotations

import copy
import json
from dataclasses import replace
from pathlib import Path

import pytest
import yaml

from hyper.data import CharDataModule
from hyper.sweeps import Entry, load_sweep, pareto_front, summarize, summary_table
from hyper.sweeps.grid import set_path
from hyper.training.cli import HyperCLI, main
from hyper.training.sweep_cli import run_point
from test_language_model import bpc_by_hand

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
PRESETS = ("char_lstm", "shakespeare_lstm")
TEXT = "the cat sat on the mat; a rat ate the hat. " * 8
pytestmark = pytest.mark.usefixtures("one_thread")

TINY = {  # a few steps on a tiny corpus: enough to run every part of a point
    "trainer.max_steps": 3,
    "trainer.val_check_interval": 3,
    "data.init_args.batch_size": 2,
    "data.init_args.seq_len": 8,
    "data.init_args.split": [0.6, 0.2, 0.2],
    "threads": 1,
}


def shrunk(config: dict, corpus: Path) -> dict:
    config = copy.deepcopy(config)
    for key, value in {**TINY, "data.init_args.path": str(corpus)}.items():
        set_path(config, key, value)
    return config


def bpc_of_tested_checkpoint(report: dict, config: dict) -> float:
    """The test split's bpc recomputed from the checkpoint the report says it tested."""
    return bpc_by_hand(report["tested_checkpoint"], CharDataModule(**config["data"]["init_args"]))


@pytest.mark.parametrize("name", PRESETS)
def test_preset_parses_and_its_first_point_trains(name: str, tmp_path: Path) -> None:
    sweep = load_sweep(CONFIGS / "sweeps" / f"{name}.yaml")
    points = sweep.points()
    assert sweep.metric == "test_bpc" and sweep.compare_to == "plain"
    methods = {p.method for p in points}
    assert methods == {"plain", "hyper", "hyper tied", "lowrank", "templates", "pruned", "smaller", "distilled"}
    assert points[0].method == "plain" and all(p.teacher_from == "plain" for p in points if p.method == "distilled")
    corpus = tmp_path / "corpus.txt"
    corpus.write_text(TEXT)
    config = shrunk(points[0].config, corpus)
    report = run_point(replace(points[0], config=config), tmp_path / "run", None)
    assert report["steps"] == 3
    assert report["test_bpc"] == pytest.approx(bpc_of_tested_checkpoint(report, config), rel=1e-5)
    if name == "char_lstm":  # every point's network and callbacks build (the first trained above)
        for n, point in enumerate(points[1:]):
            path = tmp_path / f"point{n}.yaml"
            path.write_text(yaml.safe_dump(shrunk(point.config, corpus)))
            cli = HyperCLI(args=["--config", str(path)], run=False)
            assert cli.model.network.vocab_size == cli.datamodule.vocab_size


def write_tiny_sweep(folder: Path) -> Path:
    base = {
        "seed_everything": 0,
        "trainer": {"max_steps": 3, "val_check_interval": 3, "check_val_every_n_epoch": None,
                    "enable_progress_bar": False, "enable_model_summary": False},
        "report": {"unit": "tokens", "count": "elements"},
        "model": {"class_path": "hyper.training.CharLanguageModel", "init_args": {
            "network": {"class_path": "models.CharRNN", "init_args": {"core": "ln_lstm", "hidden_size": 8, "embedding_size": 4}}}},
        "data": {"class_path": "hyper.data.CharDataModule",
                 "init_args": {"path": "placeholder.txt", "batch_size": 2, "seq_len": 8, "split": [0.6, 0.2, 0.2]}},
    }
    (folder / "base.yaml").write_text(yaml.safe_dump(base))
    hidden = "model.init_args.network.init_args.hidden_size"
    sweep = {
        "base": "base.yaml",
        "metric": "test_bpc",
        "compare_to": "plain",
        "methods": [
            {"name": "plain", "vary": {hidden: [8]}},
            {"name": "smaller", "vary": {hidden: [4]}},
            {"name": "distilled", "teacher_from": "plain", "vary": {hidden: [4]}},
        ],
    }
    path = folder / "tiny_lm_sweep.yaml"
    path.write_text(yaml.safe_dump(sweep))
    return path


def test_distilled_point_reads_its_teachers_checkpoint_and_compression_compares_to_plain(tmp_path: Path, capsys) -> None:
    corpus, out = tmp_path / "corpus.txt", tmp_path / "results"
    corpus.write_text(TEXT)
    sweep = write_tiny_sweep(tmp_path)
    assert main(["sweep", "--config", str(sweep), "--out", str(out), "--set", f"data.init_args.path={corpus}"]) == 0
    rows = {r["method"]: r for r in map(json.loads, (out / "results.jsonl").read_text().splitlines())}
    (saved,) = (out / "runs" / rows["distilled"]["key"]).glob("*/version_*/config.yaml")
    config = yaml.safe_load(saved.read_text())  # what ran
    teacher = config["model"]["init_args"]["teacher"]
    assert teacher == rows["plain"]["tested_checkpoint"]
    assert rows["smaller"]["compression_ratio"] == 1.0  # its own plain-equivalent is itself
    entries = {e.method: e for e in summarize(list(rows.values()), "test_bpc", compare_to="plain")}
    plain = rows["plain"]["trainable_params"]
    assert entries["smaller"].compression_ratio == pytest.approx(plain / rows["smaller"]["trainable_params"])
    assert entries["smaller"].compression_ratio > 2
    assert entries["plain"].compression_ratio == 1.0
    assert f"| smaller | hidden_size=4 | {rows['smaller']['trainable_params']:,} | {plain / rows['smaller']['trainable_params']:.2f}x |" in capsys.readouterr().out


def test_a_distilled_point_before_its_teacher_is_one_line(tmp_path: Path, capsys) -> None:
    sweep = write_tiny_sweep(tmp_path)
    spec = yaml.safe_load(sweep.read_text())
    spec["methods"].reverse()  # the distilled method above its teacher
    sweep.write_text(yaml.safe_dump(spec))
    assert main(["sweep", "--config", str(sweep), "--out", str(tmp_path / "r")]) == 2
    error = capsys.readouterr().err.strip().splitlines()
    assert len(error) == 1 and "teacher_from 'plain' must name a method above it" in error[0], error


def test_a_distilled_point_whose_teacher_has_no_row_names_it(tmp_path: Path) -> None:
    """Sharding keeps a student after its teacher in one shard; should the teacher's row still be
    missing (its point failed, or its row was removed), the student says which point to run."""
    from hyper.sweeps.runner import with_teacher

    student = next(p for p in load_sweep(write_tiny_sweep(tmp_path)).points() if p.teacher_from)
    with pytest.raises(ValueError, match=r"distils from method 'plain' \(seed 0\), which has no finished point"):
        with_teacher(student, tmp_path / "empty")


def test_bits_per_character_is_a_cost_lower_is_better() -> None:
    def entry(method: str, ratio: float, bpc: float) -> Entry:
        return Entry(method=method, knobs={}, trainable=1, compression_ratio=ratio, cost=bpc, cost_std=0.0, seeds=1)

    entries = [entry("a", 1.0, 2.0), entry("b", 4.0, 2.5), entry("c", 4.0, 2.2), entry("d", 8.0, 2.1)]
    assert [e.method for e in pareto_front(entries)] == ["a", "d"]  # d beats c and b: more compressed and lower bpc
    rows = [{"method": "m", "knobs": {}, "seed": s, "trainable_params": 10, "compression_ratio": 2.0, "test_bpc": v}
            for s, v in enumerate([2.0, 2.2])]
    (summary,) = summarize(rows, "test_bpc")
    assert summary.cost == pytest.approx(2.1) and summary.cost_std == pytest.approx(0.1414, abs=1e-4)
    assert "| test_bpc |" in summary_table([summary], "test_bpc") and "2.10 ± 0.14" in summary_table([summary], "test_bpc")


def test_paper_claim_preset_compares_equal_units_and_matched_parameters(tmp_path: Path) -> None:
    sweep = load_sweep(CONFIGS / "sweeps" / "shakespeare_paper_claim.yaml")
    points = sweep.points()
    assert len(points) == 9 and sweep.seeds == [0, 1, 2]
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("".join(chr(33 + i) for i in range(65)) * 40)  # tinyshakespeare's 65 characters
    counts = {}
    for point in points[::3]:  # one seed of each model
        path = tmp_path / "point.yaml"
        path.write_text(yaml.safe_dump(shrunk(point.config, corpus)))
        network = HyperCLI(args=["--config", str(path)], run=False).model.network
        assert network.config["recurrent_dropout"] == 0.1
        counts[point.method] = (network.core.hidden_size, sum(p.numel() for p in network.parameters()))
    assert counts["HyperLSTM"] == (256, 657_474)
    assert counts["LN-LSTM equal units"][0] == 256  # equal units: HyperLSTM has more parameters
    assert abs(counts["LN-LSTM matched parameters"][1] - 657_474) / 657_474 < 0.005
    config = shrunk(points[0].config, corpus)
    report = run_point(replace(points[0], config=config), tmp_path / "run", None)
    assert report["steps"] == 3
    assert report["test_bpc"] == pytest.approx(bpc_of_tested_checkpoint(report, config), rel=1e-5)
