"""bench/step_overhead.py runs `vitlight fit`'s shipped stack with tiny settings and prints its
documented lines (not a speed check)."""

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "bench" / "step_overhead.py"
NUMBER = r"\d+\.\d+"


def _load():
    spec = importlib.util.spec_from_file_location("step_overhead", BENCH)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    return bench


@pytest.mark.slow  # default run under 15 minutes; `make test-slow` runs it
def test_step_overhead_bench_prints_both_sides_and_ratio_last(tmp_path):
    # one model keeps the default run short (each side of a model is a whole `vitlight fit`)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    cmd = [
        sys.executable,
        str(BENCH),
        "--models",
        "vit_ti4",
        "--batch",
        "2",
        "--steps",
        "1",
        "--warmup",
        "0",
        "--rounds",
        "1",
        "--threads",
        "1",
        "--clock",
        "cpu",
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=400, cwd=tmp_path, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = proc.stdout.strip().splitlines()
    assert re.match(r"threads=1 batch=2 steps=1 warmup=0 rounds=1 clock=cpu torch=\S+ lightning=\S+$", lines[0])
    assert len(lines) == 6, lines
    for side, line in zip(("vitlight", "plain"), lines[1:3]):
        pattern = rf"vit_ti4 +{side} +{NUMBER} ms/step +{NUMBER} steps/s +{NUMBER} images/s +{NUMBER} cpu-ms/step"
        assert re.fullmatch(pattern, line), line
    assert re.fullmatch(rf"vit_ti4 +ratio wall {NUMBER} cpu {NUMBER} \(\d+ s\)", lines[3]), lines[3]
    vitlight_cpu, plain_cpu = (float(line.split()[-2]) for line in lines[1:3])
    assert float(lines[3].split()[5]) == pytest.approx(vitlight_cpu / plain_cpu, rel=2e-3)  # --clock cpu
    assert lines[-2] == "worst model: vit_ti4"
    assert re.fullmatch(rf"RATIO {NUMBER}", lines[-1])
    assert float(lines[-1].split()[1]) == pytest.approx(float(lines[3].split()[5]), abs=1e-4)
    # the shipped stack ran: the offline W&B logger, and the progress bar kept off the figures on stdout
    assert proc.stderr.count("W&B: offline") == 1 and "Epoch 0/0" in proc.stderr


def test_the_timed_config_includes_the_shipped_trainer_section(tmp_path):
    bench = _load()
    args = bench._parse(["--models", "vit_ti4", "--batch", "4", "--steps", "2", "--warmup", "1"])
    config = yaml.safe_load(bench.write_config("vit_ti4", args, tmp_path).read_text())
    assert config["trainer"] == str(ROOT / "experiments" / "_trainer.yaml")
    assert (
        config["data"]["init_args"]["train_images"] == 4 * 4
    )  # warmup + steps + the batch whose start ends the last step


def test_plain_side_finishes_uint8_batches_as_the_module_does():
    bench = _load()
    images = torch.tensor([[[[0, 255]]]], dtype=torch.uint8)
    mean, std = torch.tensor([0.5]).view(1, 1, 1, 1), torch.tensor([0.25]).view(1, 1, 1, 1)
    assert bench.finish_batch(images, mean, std).tolist() == [[[[-2.0, 2.0]]]]
    floats = torch.randn(1, 1, 1, 2)
    assert bench.finish_batch(floats, mean, std) is floats


def test_step_overhead_bench_rejects_an_unknown_model(capsys):
    bench = _load()
    with pytest.raises(SystemExit) as exit_info:
        bench.main(["--models", "vit_ti4,alexnet"])
    assert exit_info.value.code == 2
    assert "--models alexnet: choose from vit_ti4, resnet18" in capsys.readouterr().err
