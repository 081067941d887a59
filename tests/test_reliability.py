"""Atomic checkpoints, a full disk, a non-finite loss, SIGTERM, and the W&B key never written anywhere."""

from __future__ import annotations

import errno
import json
import os
from pathlib import Path

import pytest
import torch

from tests.conftest import run_vitlight, smoke_fit_on_folder, write_image_folder
from tests.helpers.wandb_records import exit_codes
from vitlight.cli import main
from vitlight.errors import CheckpointError
from vitlight.reliability import AtomicCheckpointIO

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture()
def images(tmp_path: Path) -> Path:
    return write_image_folder(tmp_path / "images", per_class=12, size=16)


def fit_args(images: Path, runs: Path, *extra: str) -> list[str]:
    return [
        *smoke_fit_on_folder(images),
        "--trainer.enable_progress_bar",
        "false",
        "--runs_dir",
        str(runs),
        *extra,
    ]


def test_atomic_save_replaces_the_file_whole(tmp_path: Path):
    io = AtomicCheckpointIO()
    target = tmp_path / "last.ckpt"
    io.save_checkpoint({"weights": torch.ones(3)}, target)
    io.save_checkpoint({"weights": torch.full((3,), 2.0)}, target)
    assert torch.equal(torch.load(target, weights_only=True)["weights"], torch.full((3,), 2.0))
    assert [p.name for p in tmp_path.iterdir()] == ["last.ckpt"]  # no temporary left behind
    umask = os.umask(0)
    os.umask(umask)
    assert target.stat().st_mode & 0o777 == 0o666 & ~umask  # the usual mode, not mkstemp's 0600


def test_a_kill_or_full_disk_during_a_save_keeps_the_previous_checkpoint(tmp_path: Path, monkeypatch):
    io = AtomicCheckpointIO()
    target = tmp_path / "last.ckpt"
    io.save_checkpoint({"weights": torch.ones(1000)}, target)
    good = target.read_bytes()

    def fill_the_disk(obj, stream, *args, **kwargs):
        stream.write(b"half a checkpoint")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(torch, "save", fill_the_disk)
    with pytest.raises(CheckpointError, match=r"the disk is full \(.* free on .*\); the previous checkpoint is kept"):
        io.save_checkpoint({"weights": torch.zeros(1000)}, target)
    assert target.read_bytes() == good
    assert [p.name for p in tmp_path.iterdir()] == ["last.ckpt"]


def test_full_disk_during_a_run_ends_in_one_line_and_exit_2(images: Path, tmp_path: Path, monkeypatch, capsys):
    real_save = torch.save
    calls = {"count": 0}

    def save_then_fill(obj, stream, *args, **kwargs):
        calls["count"] += 1
        if calls["count"] > 1:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_save(obj, stream, *args, **kwargs)

    monkeypatch.setattr(torch, "save", save_then_fill)
    code = main(fit_args(images, tmp_path / "runs", "--checkpoint_every_n_steps", "1"))
    assert code == 2
    err = capsys.readouterr().err
    assert "vitlight: error: saving checkpoint" in err and "the disk is full" in err
    (run,) = (tmp_path / "runs" / "quickstart").iterdir()
    assert torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)["global_step"] == 1
    assert json.loads((run / "summary.json").read_text())["status"] == "failed"


def test_non_finite_loss_stops_with_the_step_and_keeps_the_last_good_checkpoint(images: Path, tmp_path: Path, capsys):
    code = main(
        fit_args(
            images,
            tmp_path / "runs",
            "--checkpoint_every_n_steps",
            "1",
            "--trainer.max_epochs",
            "2",
            "--trainer.callbacks+=tests.helpers.callbacks.PoisonLossAtStep",
            "--trainer.callbacks.step=2",
        )
    )
    assert code == 2
    err = capsys.readouterr().err
    assert "non-finite train/loss (nan) at step 3" in err
    (run,) = (tmp_path / "runs" / "quickstart").iterdir()
    checkpoint = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)
    assert checkpoint["global_step"] == 2
    assert all(torch.isfinite(v).all() for v in checkpoint["state_dict"].values() if v.is_floating_point())
    summary = json.loads((run / "summary.json").read_text())
    assert summary["status"] == "failed"
    (wandb_file,) = run.glob("wandb/offline-run-*/run-*.wandb")
    assert exit_codes(wandb_file) == [1]  # the W&B run is marked failed too


def test_sigterm_saves_a_checkpoint_then_resumes(images: Path, tmp_path: Path):
    killed = run_vitlight(
        *fit_args(
            images,
            tmp_path / "runs",
            "--checkpoint_every_n_steps",
            "0",
            "--trainer.limit_train_batches",
            "4",
            "--trainer.callbacks+=tests.helpers.callbacks.KillAtStep",
            "--trainer.callbacks.step=2",
            "--trainer.callbacks.signal_name=SIGTERM",
        ),
        cwd=tmp_path,
        env={"PYTHONPATH": str(ROOT)},
    )
    assert killed.returncode == 143, killed.stderr[-2000:]
    assert "stopped by SIGTERM" in killed.stderr
    (run,) = (tmp_path / "runs" / "quickstart").iterdir()
    assert torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)["global_step"] == 2
    assert json.loads((run / "summary.json").read_text())["status"] == "interrupted"
    resumed = run_vitlight(
        *fit_args(images, tmp_path / "runs", "--trainer.limit_train_batches", "4", "--ckpt_path", "last"), cwd=tmp_path
    )
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert json.loads((run / "summary.json").read_text())["status"] == "finished"
    assert torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)["global_step"] == 4


SECRET = "wandb-secret-key-0123456789abcdef"


def test_the_wandb_api_key_is_never_written(images: Path, tmp_path: Path, monkeypatch, capsys):
    monkeypatch.setenv("WANDB_API_KEY", SECRET)
    monkeypatch.setenv("WANDB_MODE", "offline")  # credentials present, but this machine has no server
    # the key also slips into the config, as a user pasting it into a note would do
    args = fit_args(images, tmp_path / "runs", "--trainer.logger.init_args.notes", f"key {SECRET}")
    with pytest.raises(SystemExit):
        main([*args, "--print_config"])
    printed = capsys.readouterr().out
    assert "WandbLogger" in printed and SECRET not in printed
    assert main(args) == 0
    (run,) = (tmp_path / "runs" / "quickstart").iterdir()
    written = [p for p in run.rglob("*") if p.is_file()]
    assert any(p.suffix == ".ckpt" for p in written) and any(p.suffix == ".wandb" for p in written)
    for path in written:
        assert SECRET.encode() not in path.read_bytes(), path


def test_the_wandb_api_key_in_the_command_line_reaches_no_file(images: Path, tmp_path: Path):
    """W&B records the command line (sys.argv) in its run files; a key typed into any value must not get there."""
    runs = tmp_path / "runs"
    result = run_vitlight(
        *fit_args(images, runs, "--trainer.logger.init_args.notes", f"key {SECRET}"),
        cwd=tmp_path,
        env={"WANDB_API_KEY": SECRET, "WANDB_MODE": "offline"},
    )
    assert result.returncode == 0, result.stderr[-2000:]
    (run,) = (runs / "quickstart").iterdir()
    written = [p for p in run.rglob("*") if p.is_file()]
    assert any(p.suffix == ".wandb" for p in written)
    assert any(b"--trainer.logger.init_args.notes" in p.read_bytes() for p in written)  # argv was recorded
    for path in written:
        assert SECRET.encode() not in path.read_bytes(), path
