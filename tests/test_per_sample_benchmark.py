"""The per-sample benchmark runs and prints its three steps and two ratios (a smoke test: timings
are not checked; benchmarks print figures, tests do not time)."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("model", ["mlp", "convnet"])
def test_per_sample_benchmark_prints_steps_and_ratios(model: str) -> None:
    args = ["--model", model, "--batch", "4", "--rounds", "2", "--warmup", "0"]
    done = subprocess.run([sys.executable, "benchmarks/per_sample.py", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=300, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert done.returncode == 0, done.stderr[-2000:]
    out = done.stdout
    assert re.search(rf"^{model}: [\d,]+ trainable for [\d,]+ plain-equivalent per weight set; batch 4, condition 16, 1 thread\(s\), 2 rounds$", out, re.M)
    assert all(re.search(rf"^  {name}\s+median\s+[\d.]+ ms per step$", out, re.M) for name in ("per-sample", "loop", "shared"))
    assert re.search(r"loop / per-sample: ratio of medians [\d.]+, 90% interval [\d.]+-[\d.]+: target >= 10 (met|NOT met|within noise)", out)
    assert re.search(r"per-sample / shared: ratio of medians [\d.]+, 90% interval [\d.]+-[\d.]+: (met|NOT met|within noise)", out)
