"""Resume after a SIGKILL from outside, mid-epoch: an uninterrupted run's final weights and metrics, same W&B run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from tests.conftest import run_vitlight, smoke_fit_on_folder, write_image_folder
from tests.helpers.wandb_records import run_ids

# Two epochs of 6 steps, a checkpoint every step, random-crop augmentation and shuffling on:
# every source of randomness has to come back for the weights to match.
TOLERANCE = 1e-6


def fit_args(images: Path, runs: Path, *extra: str) -> list[str]:
    return [
        *smoke_fit_on_folder(images),
        "--data.batch_size",
        "8",
        "--data.train_size",
        "48",
        "--data.random_crop_padding",
        "2",
        "--data.horizontal_flip",
        "true",
        "--trainer.max_epochs",
        "2",
        "--trainer.limit_train_batches",
        "6",
        "--trainer.limit_val_batches",
        "2",
        "--trainer.deterministic",
        "true",
        "--trainer.enable_progress_bar",
        "false",
        "--checkpoint_every_n_steps",
        "1",
        "--runs_dir",
        str(runs),
        *extra,
    ]


def final_state(runs: Path) -> tuple[dict, dict]:
    (run,) = (runs / "quickstart").iterdir()
    checkpoint = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)
    return checkpoint, json.loads((run / "summary.json").read_text())


@pytest.fixture()
def images(tmp_path: Path) -> Path:
    return write_image_folder(tmp_path / "images", per_class=20, size=16)


def start_and_sigkill_at_step(
    args: list[str], run_root: Path, marker: Path, timeout_s: float = 600
) -> tuple[int, dict]:
    """Starts `vitlight fit` as a child process, SIGKILLs it from here once it waits after the given step;
    returns its exit code and the summary.json it had written by then."""
    process = subprocess.Popen(
        [sys.executable, "-m", "vitlight", *args],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[1])},
        text=True,
    )
    deadline = time.time() + timeout_s
    while not marker.exists() and process.poll() is None and time.time() < deadline:
        time.sleep(0.2)
    assert marker.exists(), process.stderr.read() if process.poll() is not None else "no step reached in time"
    (run,) = run_root.iterdir()
    record = json.loads((run / "summary.json").read_text())  # written at the start, before the kill
    os.kill(process.pid, signal.SIGKILL)
    code = process.wait(timeout=60)
    process.stderr.close()
    return code, record


def test_sigkill_mid_epoch_then_resume_matches_an_uninterrupted_run(images: Path, tmp_path: Path):
    straight = run_vitlight(*fit_args(images, tmp_path / "straight"), cwd=tmp_path)
    assert straight.returncode == 0, straight.stderr[-2000:]

    marker = tmp_path / "at-step-4"
    code, record = start_and_sigkill_at_step(
        fit_args(
            images,
            tmp_path / "resumed",
            "--trainer.callbacks+=tests.helpers.callbacks.PauseAtStep",
            "--trainer.callbacks.step=4",
            f"--trainer.callbacks.marker={marker}",
        ),
        tmp_path / "resumed" / "quickstart",
        marker,
    )
    assert code == -signal.SIGKILL
    (run,) = (tmp_path / "resumed" / "quickstart").iterdir()
    # the run's identity was on disk while it ran
    assert record["status"] == "running" and record["run_id"] == run.name and record["wandb_run_id"]
    assert record["started_at"] and record["resumed_at"] == []
    assert json.loads((run / "summary.json").read_text()) == record  # SIGKILL: nothing more was written
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
    assert actual_summary["started_at"] == record["started_at"] and len(actual_summary["resumed_at"]) == 1
    # the resumed run continued the same W&B run: one id in every W&B run file of the folder
    run_files = list(run.glob("wandb/*run-*/run-*.wandb"))
    assert len(run_files) == 2  # the killed attempt's and the resumed one's
    wandb_ids = {i for f in run_files for i in run_ids(f)}
    assert wandb_ids == {record["wandb_run_id"]} == {actual_summary["wandb_run_id"]}


def test_resume_reuses_the_wandb_id_and_asks_wandb_to_resume(tmp_path: Path, images: Path):
    """Online, W&B continues a run when wandb.init gets its id and resume="allow" (what the logger is given)."""
    from vitlight.lightning_cli import VitlightCLI

    run = tmp_path / "runs" / "quickstart" / "20260101-000000-abcdef"
    (run / "checkpoints").mkdir(parents=True)
    (run / "checkpoints" / "last.ckpt").write_bytes(b"not read before fit")
    (run / "summary.json").write_text(json.dumps({"status": "running", "run_id": run.name, "wandb_run_id": "k1lled01"}))

    class BuildOnly(VitlightCLI):
        def _run_subcommand(self, subcommand: str) -> None:  # everything is built; nothing runs
            pass

    cli = BuildOnly(args=fit_args(images, tmp_path / "runs", "--ckpt_path", "last"))
    (logger,) = cli.trainer.loggers
    assert logger._wandb_init["id"] == "k1lled01" and logger._wandb_init["resume"] == "allow"
    assert cli.config.fit.ckpt_path == str(run / "checkpoints" / "last.ckpt")


def test_wandb_ids_are_made_as_wandb_makes_them_and_the_agents_id_wins_on_resume(
    tmp_path: Path, images: Path, monkeypatch: pytest.MonkeyPatch
):
    import re

    from vitlight.lightning_cli import VitlightCLI
    from vitlight.runs import new_wandb_id, wandb_id_of

    assert re.fullmatch(r"[a-z0-9]{8}", new_wandb_id()) and new_wandb_id() != new_wandb_id()
    run = tmp_path / "runs" / "quickstart" / "20260101-000000-abcdef"
    (run / "checkpoints").mkdir(parents=True)
    (run / "checkpoints" / "last.ckpt").write_bytes(b"not read before fit")
    assert wandb_id_of(run) is None  # no record: never a W&B folder's name taken for one
    (run / "summary.json").write_text(json.dumps({"status": "running", "run_id": run.name, "wandb_run_id": "fr0msum"}))
    assert wandb_id_of(run) == "fr0msum"

    class BuildOnly(VitlightCLI):
        def _run_subcommand(self, subcommand: str) -> None:  # everything is built; nothing runs
            pass

    monkeypatch.setenv("WANDB_RUN_ID", "agent001")  # what `wandb agent` sets for the run it scheduled
    cli = BuildOnly(args=fit_args(images, tmp_path / "runs", "--ckpt_path", "last"))
    (logger,) = cli.trainer.loggers
    assert logger._wandb_init["id"] == "agent001"  # the agent's run reports the trial, not the folder's old run


def test_resume_with_nothing_to_resume_exits_2(tmp_path: Path, images: Path):
    result = run_vitlight(*fit_args(images, tmp_path / "empty", "--ckpt_path", "last"), cwd=tmp_path)
    assert result.returncode == 2
    assert "nothing to resume" in result.stderr
    assert not (tmp_path / "empty" / "quickstart").exists()
