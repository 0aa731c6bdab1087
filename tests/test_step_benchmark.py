"""The step-time benchmark runs and its breakdown adds up (a smoke test: timings are not checked;
benchmarks print figures, tests do not time)."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("model", ["wrn40_1", "char_transformer"])
def test_step_time_prints_the_ratio_and_phases_that_add_up(model):
    args = ["--model", model, "--batch", "2", "--rounds", "2", "--warmup", "0"]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "benchmarks/step_time.py", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    out = done.stdout
    assert "1 thread(s), 2 rounds" in out and "glibc malloc default" in out
    assert re.search(r"hyper step / plain step: ratio of medians [\d.]+, 90% interval [\d.]+-[\d.]+: (met|NOT met|within noise)", out)
    rows = {}
    for line in out.splitlines():
        match = re.match(r"\s+(generation forward|forward \+ loss|backward|optimizer step|sum of phases)\s+([\d.]+)\s+([\d.]+)\s+([+-][\d.]+)$", line)
        if match:
            rows[match[1]] = [float(v) for v in match.groups()[1:]]
    assert set(rows) == {"generation forward", "forward + loss", "backward", "optimizer step", "sum of phases"}
    assert rows["generation forward"][1] == 0.0  # the plain model generates nothing
    for column in range(3):  # hyper, plain, difference: the sum row is the sum of the phases (to rounding)
        parts = sum(rows[phase][column] for phase in rows if phase != "sum of phases")
        assert abs(parts - rows["sum of phases"][column]) <= 0.25
    assert "ms per million" in out and "materialized / plain: ratio of medians" in out
