"""The same YAML runs with `--trainer.devices 2 --trainer.strategy ddp` (two CPU processes)."""

from __future__ import annotations

import json
from pathlib import Path

from tests.conftest import EXPERIMENTS, SMOKE, run_vitlight, write_image_folder
from tests.helpers.wandb_records import run_ids


def test_two_process_ddp_on_cpu(tmp_path: Path):
    images = write_image_folder(tmp_path / "images", per_class=12, size=16)
    result = run_vitlight(
        "fit", "--config", str(EXPERIMENTS / "quickstart.yaml"), "--config", str(SMOKE),
        "--data", "ImageFolder", "--data.data_dir", str(images), "--data.image_size", "14", "--data.num_workers", "0",
        "--trainer.accelerator", "cpu", "--trainer.devices", "2", "--trainer.strategy", "ddp",
        "--trainer.enable_progress_bar", "false", "--runs_dir", str(tmp_path / "runs"),
        env={"OMP_NUM_THREADS": "1"}, cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    runs = list((tmp_path / "runs" / "quickstart").iterdir())
    assert len(runs) == 1, runs  # both ranks wrote into one run folder
    summary = json.loads((runs[0] / "summary.json").read_text())
    assert summary["status"] == "finished"
    # 36 test images split over two ranks; the synced metric is over all of them
    assert 0.0 <= summary["test"]["test/acc"] <= 1.0
    wandb_files = list(runs[0].glob("wandb/offline-run-*/run-*.wandb"))
    assert len(wandb_files) == 1  # W&B logged once, from rank 0
    assert run_ids(wandb_files[0]) == {summary["wandb_run_id"]}
    assert "Starting with 2 processes" in result.stderr + result.stdout
