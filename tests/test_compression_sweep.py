"""Smoke test of the compression preset: a few of its points, as written, through the sweep's own
runner (each epoch cut to 3 batches so that the test is short)."""

import math
from pathlib import Path

import pytest

from hyper.sweeps import load_sweep
from hyper.sweeps.grid import set_path
from hyper.training.sweep_cli import run_point
from models import HyperResNet, WideResNet
from test_storage import quantised_bytes

PRESET = Path(__file__).resolve().parents[1] / "configs" / "sweeps" / "digits_compression.yaml"
WRN = dict(depth=16, width=1, num_classes=10, in_channels=1)  # the preset's configured network
PLAIN = sum(p.numel() for p in WideResNet(**WRN).parameters())  # 174,778


def pruned_once(amount: float) -> tuple[int, int]:
    """(non-zero parameters, bytes) of the WRN after one round of per-tensor magnitude pruning, by
    hand: each conv and linear kernel of n weights loses round(amount · n) of them (torch's prune)
    and is stored as its kept fp32 values plus a bitmask of n bits (flat indices, at least a byte
    per kept weight, would be larger); norms and biases stay dense fp32."""
    kept_total, size = 0, 0
    for p in WideResNet(**WRN).parameters():
        n = p.numel()
        kept = n - round(amount * n) if p.dim() >= 2 else n
        kept_total += kept
        size += 4 * kept + (math.ceil(n / 8) if p.dim() >= 2 else 0)
    return kept_total, size


@pytest.mark.parametrize("method", ["lottery", "hyper ptq", "narrow distilled"])
def test_preset_points_run(method, tmp_path, one_thread):
    point = next(p for p in load_sweep(PRESET).points() if p.method == method)
    for key, value in {"trainer.limit_train_batches": 3, "trainer.limit_val_batches": 1, "trainer.limit_test_batches": 1,
                       "trainer.enable_progress_bar": False, "trainer.enable_model_summary": False}.items():
        set_path(point.config, key, value)
    row = run_point(point, tmp_path / "run", None)
    assert 0 <= row["test_acc"] <= 1 and row["plain_equivalent_params"] == PLAIN == 174_778
    assert row["latency_ms"] > 0
    if method == "hyper ptq":  # 8-bit weights and scales; biases and norms stay fp32
        network = HyperResNet(**WRN, embedding_dim=8, hidden_dim=16)
        assert row["trainable_params"] == sum(p.numel() for p in network.parameters())
        assert row["size_bytes"] == quantised_bytes(network, 8)
    if method == "narrow distilled":  # half the channels, counted against the configured WRN-16-1, in fp32
        narrow = sum(p.numel() for p in WideResNet(**{**WRN, "width": 0.5}).parameters())
        assert row["trainable_params"] == narrow == 44_922 and row["size_bytes"] == 4 * narrow
    if method == "lottery":  # one round of 60%
        assert row["pruned"] and row["epochs"] == 20
        assert (row["trainable_params"], row["size_bytes"]) == pruned_once(0.6)
    assert row["compression_ratio"] == pytest.approx(PLAIN / row["trainable_params"])
    assert row["compression_bytes"] == pytest.approx(4 * PLAIN / row["size_bytes"])
