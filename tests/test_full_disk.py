"""A real full disk (a small tmpfs mounted by the test): every write vitlight makes ends in one line naming the
path and the space left, exit 2, and the files written before stay intact. Skipped where mounting is not allowed."""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.conftest import run_vitlight, smoke_fit_on_folder, write_image_folder
from tests.test_run_start import one_error_line, snapshot


@contextmanager
def tmpfs(folder: Path, size: str) -> Iterator[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip("cannot mount a tmpfs here (needs root): the real full-disk tests do not run")
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], capture_output=True)


def fill(folder: Path, leave_bytes: int) -> None:
    """Fills the file system of `folder` until `leave_bytes` are free."""
    free = shutil.disk_usage(folder).free
    with open(folder / "filler", "ab") as stream:
        stream.truncate(0)
        stream.write(b"\0" * max(0, free - leave_bytes))


@pytest.fixture()
def images(tmp_path: Path) -> Path:
    return write_image_folder(tmp_path / "images", per_class=12, size=16)


def fit_args(images: Path, runs: Path, *extra: str) -> list[str]:
    return [*smoke_fit_on_folder(images), "--trainer.enable_progress_bar", "false", "--runs_dir", str(runs), *extra]


OFFLINE = {"WANDB_MODE": "offline"}


def test_a_checkpoint_that_fills_the_disk(images: Path, tmp_path: Path):
    """torch's zip writer turns ENOSPC into RuntimeError('... unexpected pos'); it still ends in one line."""
    with tmpfs(tmp_path / "disk", "3m") as disk:
        result = run_vitlight(*fit_args(images, disk / "runs"), cwd=tmp_path, env=OFFLINE)
        line = one_error_line(result)
        assert "saving checkpoint" in line and "the disk is full (" in line and " free on " in line
        (run,) = (disk / "runs" / "quickstart").iterdir()
        assert json.loads((run / "summary.json").read_text())["run_id"] == run.name  # written before: intact
        assert not list(run.rglob("*.tmp"))


def test_summary_and_wandb_files_on_a_full_disk(images: Path, tmp_path: Path):
    with tmpfs(tmp_path / "disk", "1m") as disk:
        fill(disk, 4096)
        result = run_vitlight(*fit_args(images, disk / "runs"), cwd=tmp_path, env=OFFLINE)
        line = one_error_line(result)
        assert "the disk is full" in line and str(disk / "runs" / "quickstart") in line
        assert "Logging error" not in result.stderr  # W&B's log files fail quietly; vitlight says it once


def test_a_full_cache_disk(images: Path, tmp_path: Path):
    with tmpfs(tmp_path / "cache", "1m") as cache:
        fill(cache, 16 * 1024)
        result = run_vitlight(
            *fit_args(images, tmp_path / "runs"), cwd=tmp_path, env={**OFFLINE, "VITLIGHT_CACHE": str(cache)}
        )
        line = one_error_line(result)
        assert "writing the image cache" in line and "the disk is full (" in line and str(cache) in line
        assert [p.name for p in cache.iterdir()] == ["filler"]  # no half-written cache entry


def test_a_resume_on_a_full_disk_leaves_the_run_as_it_was(finished_smoke_run: tuple[Path, Path], tmp_path: Path):
    images, runs = finished_smoke_run
    with tmpfs(tmp_path / "disk", "64m") as disk:
        shutil.copytree(runs, disk / "runs", symlinks=True)
        (run,) = (disk / "runs" / "quickstart").iterdir()
        fill(disk, 200 * 1024)
        before = snapshot(run)
        resumed = run_vitlight(
            *fit_args(images, disk / "runs", "--ckpt_path", "last", "--trainer.max_epochs", "2"),
            cwd=tmp_path,
            env=OFFLINE,
        )
        line = one_error_line(resumed)
        assert "the disk is full" in line and "free on" in line and "MiB" in line
        assert snapshot(run) == before
