"""The recurrent step-time benchmark runs and prints its rows (a smoke test: timings are not
checked; benchmarks print figures, tests do not time)."""

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_lstm_step_time_prints_equal_size_and_matched_rows_with_their_spread():
    args = ["--rounds", "2", "--warmup", "0", "--batch", "2", "--seq", "3", "--allocator", "default", "--clock", "cpu"]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "benchmarks/lstm_step_time.py", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    out = done.stdout
    assert "allocator: glibc defaults" in out and "cpu clock" in out and "1 thread(s)" in out
    lines = out.strip().splitlines()
    assert lines[1].startswith("model ")
    rows = {line.split("  ")[0].strip(): line for line in lines[2:]}
    assert set(rows) == {"HyperLSTM", "LN-LSTM", "nn.LSTM", "LN-LSTM 365 (params)", "nn.LSTM 365 (params)"}
    assert "652,338" in rows["HyperLSTM"] and "≤ 2.5:" in rows["HyperLSTM"] and "≤ 1.25:" in rows["LN-LSTM"]
    assert "1.00   1.00–1.00" in rows["nn.LSTM"]  # the baseline against itself


def test_lstm_gpu_step_time_smoke_runs_every_row():
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "benchmarks/lstm_gpu_step_time.py", "--smoke"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    lines = done.stdout.strip().splitlines()
    assert lines[0].startswith("training step on CPU (smoke") and lines[1].startswith("row ")
    rows = {line.split("  ")[0].strip(): line for line in lines[2:7]}
    assert set(rows) == {"nn.LSTM", "LN-LSTM compiled", "LN-LSTM eager", "HyperLSTM compiled", "HyperLSTM eager"}
    assert "1.00   1.00–1.00" in rows["nn.LSTM"]
    assert "(" in rows["HyperLSTM compiled"] and "(" not in rows["HyperLSTM eager"]  # the speed-up column
    assert lines[7] == "the compiled rows ran their steps uncompiled (--smoke)"


def test_lstm_gpu_step_time_says_it_needs_a_gpu():
    env = {**os.environ, "PYTHONPATH": str(ROOT), "CUDA_VISIBLE_DEVICES": ""}
    done = subprocess.run([sys.executable, "benchmarks/lstm_gpu_step_time.py"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 1 and done.stderr.strip().splitlines() == [
        "lstm_gpu_step_time.py: needs a CUDA device (--device cpu runs the same code paths on CPU)"]


def test_lstm_gpu_step_time_refuses_fewer_than_one_step_per_call():
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "benchmarks/lstm_gpu_step_time.py", "--steps-per-call", "0"], cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.strip().splitlines()[-1].endswith("error: --steps-per-call must be at least 1, got 0")
