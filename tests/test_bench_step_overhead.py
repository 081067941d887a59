"""bench/step_overhead.py runs with tiny settings and prints its documented lines (not a speed check)."""

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "bench" / "step_overhead.py"
NUMBER = r"\d+\.\d+"


def test_step_overhead_bench_prints_both_sides_per_model_and_ratio_last():
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, str(BENCH), "--models", "vit_ti4,resnet18", "--batch", "2", "--steps", "1",
           "--warmup", "0", "--rounds", "1", "--threads", "1", "--clock", "cpu"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=180, cwd=ROOT, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = proc.stdout.strip().splitlines()
    assert re.match(r"threads=1 batch=2 steps=1 warmup=0 rounds=1 clock=cpu torch=\S+ lightning=\S+$", lines[0])
    ratios = {}
    for model, block in (("vit_ti4", lines[1:4]), ("resnet18", lines[4:7])):
        for side, line in zip(("vitlight", "plain"), block):
            pattern = rf"{model} +{side} +{NUMBER} ms/step +{NUMBER} steps/s +{NUMBER} images/s +{NUMBER} cpu-ms/step"
            assert re.fullmatch(pattern, line), line
        assert re.fullmatch(rf"{model} +ratio wall {NUMBER} cpu {NUMBER} \(\d+ s\)", block[2]), block[2]
        ratios[model] = float(block[2].split()[5])  # --clock cpu
    worst = max(ratios, key=ratios.get)
    assert lines[-2] == f"worst model: {worst}"
    assert re.fullmatch(rf"RATIO {NUMBER}", lines[-1])
    assert float(lines[-1].split()[1]) == pytest.approx(ratios[worst], abs=1e-4)


def test_step_overhead_bench_rejects_an_unknown_model(capsys):
    spec = importlib.util.spec_from_file_location("step_overhead", BENCH)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    with pytest.raises(SystemExit) as exit_info:
        bench.main(["--models", "vit_ti4,alexnet"])
    assert exit_info.value.code == 2
    assert "--models alexnet: choose from vit_ti4, resnet18" in capsys.readouterr().err
