"""Resume after SIGKILL mid-epoch: same final weights and metrics as an uninterrupted run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from tests.conftest import EXPERIMENTS, SMOKE, run_vitlight, write_image_folder
from tests.helpers.wandb_records import run_ids

# Two epochs of 6 steps, a checkpoint every step, random-crop augmentation and shuffling on:
# every source of randomness has to come back for the weights to match.
TOLERANCE = 1e-6


def fit_args(images: Path, runs: Path, *extra: str) -> list[str]:
    return [
        "fit", "--config", str(EXPERIMENTS / "quickstart.yaml"), "--config", str(SMOKE),
        "--data", "ImageFolder", "--data.data_dir", str(images), "--data.image_size", "14",
        "--data.num_workers", "0", "--data.batch_size", "8", "--data.train_size", "48",
        "--data.random_crop_padding", "2", "--data.horizontal_flip", "true",
        "--trainer.max_epochs", "2", "--trainer.limit_train_batches", "6", "--trainer.limit_val_batches", "2",
        "--trainer.deterministic", "true", "--trainer.enable_progress_bar", "false",
        "--checkpoint_every_n_steps", "1", "--runs_dir", str(runs), *extra,
    ]


def final_state(runs: Path) -> tuple[dict, dict]:
    (run,) = (runs / "quickstart").iterdir()
    checkpoint = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)
    return checkpoint, json.loads((run / "summary.json").read_text())


@pytest.fixture()
def images(tmp_path: Path) -> Path:
    return write_image_folder(tmp_path / "images", per_class=20, size=16)


def test_sigkill_mid_epoch_then_resume_matches_an_uninterrupted_run(images: Path, tmp_path: Path):
    straight = run_vitlight(*fit_args(images, tmp_path / "straight"), cwd=tmp_path)
    assert straight.returncode == 0, straight.stderr[-2000:]

    killed = run_vitlight(*fit_args(images, tmp_path / "resumed", "--trainer.callbacks+=tests.helpers.callbacks.KillAtStep",
                                    "--trainer.callbacks.step=4"), cwd=tmp_path, env={"PYTHONPATH": str(Path(__file__).parents[1])})
    assert killed.returncode == -9, killed.stderr[-2000:]
    (run,) = (tmp_path / "resumed" / "quickstart").iterdir()
    assert torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)["global_step"] == 4  # mid-epoch 0

    resumed = run_vitlight(*fit_args(images, tmp_path / "resumed", "--ckpt_path", "last"), cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-2000:]

    expected, expected_summary = final_state(tmp_path / "straight")
    actual, actual_summary = final_state(tmp_path / "resumed")  # still one run folder: the resumed run reused it
    assert actual["global_step"] == expected["global_step"] == 12
    for name, value in expected["state_dict"].items():
        assert torch.allclose(actual["state_dict"][name], value, atol=TOLERANCE, rtol=0), name
    for key, value in expected_summary["test"].items():
        assert actual_summary["test"][key] == pytest.approx(value, abs=TOLERANCE), key
    assert actual_summary["run_id"] == run.name and actual_summary["status"] == "finished"
    # the resumed run continued the same W&B run
    wandb_ids = {i for f in run.glob("wandb/offline-run-*/run-*.wandb") for i in run_ids(f)}
    assert wandb_ids == {actual_summary["wandb_run_id"]}


def test_resume_with_nothing_to_resume_exits_2(tmp_path: Path, images: Path):
    result = run_vitlight(*fit_args(images, tmp_path / "empty", "--ckpt_path", "last"), cwd=tmp_path)
    assert result.returncode == 2
    assert "nothing to resume" in result.stderr
    assert not (tmp_path / "empty" / "quickstart").exists()
