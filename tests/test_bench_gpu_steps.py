"""bench/gpu_steps.py, the GPU check's own steps, run on a CPU with tiny shapes (not a speed check): each step
writes its JSON record with the fields the check reads."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import write_image_folder

ROOT = Path(__file__).resolve().parents[1]
STEPS = ROOT / "bench" / "gpu_steps.py"


def _records(step: str, tmp_path: Path, *extra: str) -> list[dict]:
    out = tmp_path / f"{step}.jsonl"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    argv = [sys.executable, str(STEPS), step, "--device", "cpu", "--tiny", "--out", str(out), *extra]
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=300, cwd=tmp_path, env=env)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    records = [json.loads(line) for line in out.read_text().splitlines()]
    printed = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    assert printed == records  # printed as it goes and kept in --out alike
    return records


def test_resnet50_step_times_the_old_and_the_new_settings(tmp_path: Path):
    records = _records("resnet50", tmp_path)
    assert [r["variant"].split(" (")[0] for r in records] == ["as shipped before", "cudnn.benchmark + fused AdamW"]
    assert all(r["step_ms"] > 0 and r["rate"] > 0 and r["batch"] == 2 for r in records)
    assert all(r["cudnn_benchmark"] is False for r in records)  # benchmark is for CNNs on a GPU only


def test_busy_and_attention_steps_report_what_they_saw(tmp_path: Path):
    (busy,) = _records("busy", tmp_path)
    assert busy["config"] == "vit_ti4_cifar10.yaml" and busy["step_ms"] > 0
    assert busy["gpu_busy_fraction"] is None and "CPU run" in busy["note"]
    attention = _records("attention", tmp_path)
    assert [r["config"] for r in attention] == ["vit_b16", "igpt_s"]
    for record in attention:  # both models go through torch's fused SDPA, not a hand-written softmax
        assert "aten::scaled_dot_product_attention" in record["attention_ops"], record


@pytest.mark.parametrize("seconds", [6.0])
def test_time_to_accuracy_step_writes_a_curve(tmp_path: Path, seconds: float):
    data = write_image_folder(tmp_path / "cifar", per_class=8, size=32)
    records = _records("tta", tmp_path, "--data_dir", str(data), "--seconds", str(seconds), "--epochs", "200")
    *points, summary = records
    assert points and all(0.0 <= r["point"]["test_acc"] <= 1.0 for r in points)
    assert summary["curve"] == [r["point"] for r in points]
    trained = [p["train_seconds"] for p in summary["curve"]]
    assert trained == sorted(trained) and trained[-1] <= seconds + 5  # max_time stopped it, not the 200 epochs
    assert summary["best_test_acc"] == max(p["test_acc"] for p in summary["curve"])


def test_gpu_check_runs_only_what_exists_and_what_the_gpu_machine_imports():
    script = (ROOT / "bench" / "gpu_check.sh").read_text()
    commands = [line.strip() for line in script.splitlines() if line.strip().startswith("step ")]
    assert len(commands) >= 9
    for command in commands:
        for word in command.split():
            if word.startswith("bench/") and word.endswith(".py"):
                assert (ROOT / word).is_file(), f"gpu_check.sh runs {word}, which does not exist"
        if "pytest" in command:  # the sweep tests import optuna, which the GPU image lacks
            assert " tests/gpu" in command and "-m gpu" in command, command
    deadlines = [int(command.split()[2]) for command in commands]
    assert sum(deadlines) <= 8 * 60  # the check's whole budget, each step under its own deadline
    assert "|| exit" not in script  # a wheel that fails to install must not skip the benchmark
