"""bench/data_throughput.py runs end to end on tiny archives of an image folder and ends with its RATIO line."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from tests.data.conftest import image_folder

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow  # default run under 15 minutes; `make test-slow` runs it
def test_data_throughput_bench_on_archives(tmp_path: Path) -> None:
    folder = image_folder(
        tmp_path / "images", classes=("a", "b", "c", "d"), counts={"train": 8, "test": 2}, size=32, suffix=".jpg"
    )
    archives = tmp_path / "archives"
    archives.mkdir()
    for split in ("train", "test"):
        with tarfile.open(archives / f"{split}.tar.gz", "w:gz") as archive:
            archive.add(folder / split, arcname=split)
    result = subprocess.run(
        [
            sys.executable,
            str(ROOT / "bench" / "data_throughput.py"),
            "--data_dir",
            str(archives),
            "--max_images",
            "16",
            "--batch_size",
            "4",
            "--steps",
            "1",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert result.returncode == 0, result.stderr[-2000:]
    lines = result.stdout.strip().splitlines()
    assert "unpacked train.tar.gz, test.tar.gz" in result.stdout
    assert re.search(r"from the cache: +\d+ images/s", result.stdout)
    assert re.search(r"decoding files: +\d+ images/s", result.stdout)
    assert re.search(r"ViT-Ti/4 training at 32x32: +\d+ images/s", result.stdout)
    assert re.fullmatch(r"RATIO \d+\.\d\d", lines[-1])


def test_loader_dtype_bench_compares_uint8_with_float32(tmp_path: Path) -> None:
    folder = image_folder(
        tmp_path / "images", classes=("a", "b", "c", "d"), counts={"train": 12, "test": 2}, size=32, suffix=".png"
    )
    result = subprocess.run(
        [
            sys.executable,
            str(ROOT / "bench" / "loader_dtype.py"),
            "--data_dir",
            str(folder),
            "--max_images",
            "24",
            "--batch_size",
            "4",
            "--num_workers",
            "1",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert re.search(r"uint8 handed over, finished after: +\d+ images/s \(\d+ images, 3072 bytes/image", result.stdout)
    assert re.search(r"float32 finished in the workers: +\d+ images/s \(\d+ images, 12288 bytes/image", result.stdout)
    assert re.fullmatch(r"RATIO \d+\.\d\d", result.stdout.strip().splitlines()[-1])
