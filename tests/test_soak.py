"""Soak: many short trainings in one process leak no processes, file handles or memory.

Slow (about 200 smoke-size runs); run with `pytest -m slow tests/test_soak.py`.
SOAK_RUNS overrides the count; the figures are printed at the end.
"""

from __future__ import annotations

import gc
import os
import random
from pathlib import Path

import pytest

from tests.conftest import EXPERIMENTS, SMOKE
from tests.data.conftest import cifar_batches
from vitlight.cli import main

CONFIGS = ["quickstart.yaml", "vit_ti4_cifar10.yaml", "resnet18_cifar10.yaml", "vit_ti4_finetune_cifar100.yaml"]


def open_files() -> int:
    # a finished run's data module (its image-cache memmaps) can wait in a reference cycle for the collector:
    # collected first, so that only handles something still holds are counted
    gc.collect()
    return len(os.listdir("/proc/self/fd"))


def child_processes() -> int:
    me = str(os.getpid())
    count = 0
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            count += fields[1] == me
    return count


def resident_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


@pytest.mark.slow
def test_soak_many_short_trainings(tmp_path: Path, capsys):
    runs = int(os.environ.get("SOAK_RUNS", "200"))
    data = {
        "cifar10": cifar_batches(tmp_path / "c10", "cifar10", per_batch=20),
        "cifar100": cifar_batches(tmp_path / "c100", "cifar100", per_batch=200, num_classes=100),
    }
    rng = random.Random(0)
    samples: list[tuple[int, int, float]] = []
    for index in range(runs):
        config = rng.choice(CONFIGS)
        extra = []
        if "cifar100" in config:
            extra = ["--data.data_dir", str(data["cifar100"])]
        elif "cifar10" in config:
            extra = ["--data.data_dir", str(data["cifar10"])]
        extra += [
            "--data.batch_size",
            str(rng.choice([4, 8, 16])),
            "--seed_everything",
            str(rng.randrange(1000)),
            "--trainer.enable_progress_bar",
            "false",
            "--trainer.enable_model_summary",
            "false",
        ]
        code = main(
            [
                "fit",
                "--config",
                str(EXPERIMENTS / config),
                "--config",
                str(SMOKE),
                "--runs_dir",
                str(tmp_path / "runs"),
                *extra,
            ]
        )
        assert code == 0, f"run {index} ({config}) failed"
        samples.append((open_files(), child_processes(), resident_mib()))
    warm = samples[min(10, len(samples) - 1)]
    last = samples[-1]
    with capsys.disabled():
        print(
            f"\nsoak: {runs} runs; open files {warm[0]} after 10 -> {last[0]} at the end; "
            f"child processes {last[1]}; RSS {warm[2]:.0f} MiB after 10 -> {last[2]:.0f} MiB at the end "
            f"(max {max(s[2] for s in samples):.0f})"
        )
    assert last[0] <= warm[0] + 5, "file handles leak"
    assert last[1] <= 1, "child processes left running"
    assert last[2] <= warm[2] * 1.25 + 100, "memory grows"
