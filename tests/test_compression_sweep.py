"""Smoke test of the compression preset: a few of its points, as written, through the sweep's own
runner (each epoch cut to 3 batches so that the test is short)."""

from pathlib import Path

import pytest

from hyper.sweeps import load_sweep
from hyper.sweeps.grid import set_path
from hyper.training.sweep_cli import run_point

PRESET = Path(__file__).resolve().parents[1] / "configs" / "sweeps" / "digits_compression.yaml"


@pytest.mark.parametrize("method", ["lottery", "hyper ptq", "narrow distilled"])
def test_preset_points_run(method, tmp_path, one_thread):
    point = next(p for p in load_sweep(PRESET).points() if p.method == method)
    for key, value in {"trainer.limit_train_batches": 3, "trainer.limit_val_batches": 1, "trainer.limit_test_batches": 1,
                       "trainer.enable_progress_bar": False, "trainer.enable_model_summary": False}.items():
        set_path(point.config, key, value)
    row = run_point(point, tmp_path / "run", None)
    assert 0 <= row["test_acc"] <= 1 and row["plain_equivalent_params"] == 174_778
    assert row["size_bytes"] > 0 and row["compression_bytes"] > 1 and row["latency_ms"] > 0
    if method == "hyper ptq":  # 8-bit weights (biases and norms stay fp32): bytes shrink ~3x more than parameters
        assert row["compression_bytes"] > 2.5 * row["compression_ratio"]
    if method == "narrow distilled":  # half the channels, counted against the configured WRN-16-1
        assert row["trainable_params"] == 44_922 and row["compression_ratio"] == pytest.approx(174_778 / 44_922)
    if method == "lottery":  # one round of 60%
        assert row["pruned"] and 2.2 < row["compression_ratio"] < 2.6 and row["epochs"] == 20
