import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]


def test_sampling_bench_runs_and_prints_ratio_last():
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    cmd = [
        sys.executable,
        str(ROOT / "bench" / "sampling.py"),
        "--device",
        "cpu",
        "--batch",
        "2",
        "--prefix",
        "8",
        "--new_tokens",
        "8",
        "--vocab_size",
        "16",
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120, cwd=ROOT, env=env)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.strip().splitlines()
    assert lines[0].startswith("preset=igpt-tiny ")
    assert re.fullmatch(r"cached +\d+\.\d+ s +\d+\.\d+ tokens/s", lines[1])
    assert re.fullmatch(r"recompute +\d+\.\d+ s +\d+\.\d+ tokens/s", lines[2])
    assert lines[3] == "same tokens: True"
    assert re.fullmatch(r"RATIO \d+\.\d+", lines[-1])
    assert float(lines[-1].split()[1]) > 0


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-GPU error")
def test_sampling_bench_rejects_cuda_without_a_gpu():
    proc = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "sampling.py"), "--device", "cuda"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert proc.returncode == 2 and "CUDA is not available" in proc.stderr
