"""Shared fixtures: every test runs offline, in its own folder, with its own caches."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

# Tiny models on a shared 2-core machine: one thread avoids oversubscription stalls.
torch.set_num_threads(1)

ROOT = Path(__file__).resolve().parents[1]
EXPERIMENTS = ROOT / "experiments"
SMOKE = EXPERIMENTS / "_smoke.yaml"


@pytest.fixture(autouse=True)
def isolated_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """No network, no credentials, caches and W&B files under tmp_path, cwd in tmp_path."""
    for name in (
        "WANDB_API_KEY",
        "WANDB_MODE",
        "WANDB_RUN_GROUP",
        "WANDB_BASE_URL",
        "WANDB_TAGS",
        "WANDB_RUN_ID",
        "WANDB_SWEEP_ID",
        "WANDB_SWEEP_PARAM_PATH",
        "VITLIGHT_SWEEP_NAME",
        "WANDB_QUIET",
        # set in this process by an in-process `vitlight fit` (the run identity its DDP workers read) and by
        # Lightning's DDP strategy: left over, the next run would take them as a relaunched worker's
        "VITLIGHT_RUN_ID",
        "VITLIGHT_WANDB_ID",
        "LOCAL_RANK",
        "NODE_RANK",
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("NETRC", str(tmp_path / "home" / ".netrc"))
    monkeypatch.setenv("WANDB_CONFIG_DIR", str(tmp_path / "wandb-config"))
    monkeypatch.setenv("WANDB_CACHE_DIR", str(tmp_path / "wandb-cache"))
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))
    monkeypatch.setenv("VITLIGHT_CACHE", str(tmp_path / "vitlight-cache"))
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    monkeypatch.chdir(tmp_path)
    return tmp_path


def write_image_folder(
    root: Path,
    classes: tuple[str, ...] = ("cat", "dog", "frog"),
    per_class: int = 8,
    size: int = 16,
    splits: tuple[str, ...] = ("train", "test"),
    suffix: str = ".png",
) -> Path:
    """A real `split/class/file` image folder; each class has its own colour so a model can learn it."""
    rng = np.random.default_rng(0)
    for split in splits:
        for index, name in enumerate(classes):
            folder = root / split / name
            folder.mkdir(parents=True, exist_ok=True)
            base = np.zeros((size, size, 3), np.uint8)
            base[..., index % 3] = 200
            for item in range(per_class):
                noise = rng.integers(0, 40, size=(size, size, 3), dtype=np.uint8)
                Image.fromarray(base + noise).save(folder / f"{item:03d}{suffix}")
    return root


def smoke_fit_on_folder(images: Path) -> list[str]:
    """`vitlight fit` of the quickstart model with the smoke config on an image folder at 14 px, no
    loader workers; tests add their own options after it."""
    return [
        "fit",
        "--config",
        str(EXPERIMENTS / "quickstart.yaml"),
        "--config",
        str(SMOKE),
        "--data",
        "ImageFolder",
        "--data.data_dir",
        str(images),
        "--data.image_size",
        "14",
        "--data.num_workers",
        "0",
    ]


def run_vitlight(
    *args: str, cwd: Path | None = None, env: dict | None = None, timeout: int = 600
) -> subprocess.CompletedProcess:
    """Runs the real command in a subprocess, as a user would."""
    return subprocess.run(
        [sys.executable, "-m", "vitlight", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env={**os.environ, **(env or {})},
        timeout=timeout,
    )


@pytest.fixture(scope="session")
def finished_smoke_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(image folder, runs folder holding one finished quickstart smoke run), made once per session by a real
    `vitlight fit`; tests that change it copy the runs folder first."""
    root = tmp_path_factory.mktemp("finished")
    images = write_image_folder(root / "images", per_class=12, size=16)
    args = [*smoke_fit_on_folder(images), "--trainer.enable_progress_bar", "false", "--runs_dir", str(root / "runs")]
    env = {"WANDB_MODE": "offline", "VITLIGHT_CACHE": str(root / "cache"), "HOME": str(root)}
    result = run_vitlight(*args, cwd=root, env=env)
    assert result.returncode == 0, result.stderr[-2000:]
    return images, root / "runs"
