"""Two CPU processes (DDP on gloo) run the shipped stack correctly: one run folder, EMA and mixup,
different random draws per rank, exact resume after SIGKILL, metrics over the whole split."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from tests.conftest import ROOT, run_vitlight, smoke_fit_on_folder, write_image_folder
from tests.helpers.wandb_records import run_ids

TWO_PROCESSES = [
    "--trainer.accelerator",
    "cpu",
    "--trainer.devices",
    "2",
    "--trainer.strategy",
    "ddp",
    "--trainer.enable_progress_bar",
    "false",
]
ENV = {"OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}


def ddp_args(images: Path, runs: Path, *extra: str) -> list[str]:
    return [
        *smoke_fit_on_folder(images),
        "--data.horizontal_flip",
        "true",
        "--data.random_crop_padding",
        "2",
        *TWO_PROCESSES,
        "--runs_dir",
        str(runs),
        *extra,
    ]


@pytest.fixture()
def images(tmp_path: Path) -> Path:
    return write_image_folder(tmp_path / "images", per_class=12, size=16)


def test_two_process_ddp_with_ema_and_mixup(images: Path, tmp_path: Path):
    draws = tmp_path / "draws"
    result = run_vitlight(
        *ddp_args(
            images,
            tmp_path / "runs",
            "--model.init_args.ema_decay",
            "0.9",
            "--model.init_args.mixup_alpha",
            "0.8",
            "--model.init_args.cutmix_alpha",
            "1.0",
            "--trainer.callbacks+=tests.helpers.callbacks.RecordRandomDraws",
            f"--trainer.callbacks.folder={draws}",
        ),
        env=ENV,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    runs = list((tmp_path / "runs" / "quickstart").iterdir())
    assert len(runs) == 1, runs  # both ranks wrote into one run folder
    summary = json.loads((runs[0] / "summary.json").read_text())
    assert summary["status"] == "finished" and summary["world_size"] == 2
    assert "val/acc_ema" in summary["best_validation"]  # the EMA copy validated alongside
    assert (
        "ema.module.head.weight" in torch.load(runs[0] / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"]
    )
    wandb_files = list(runs[0].glob("wandb/offline-run-*/run-*.wandb"))
    assert len(wandb_files) == 1  # W&B logged once, from rank 0
    assert run_ids(wandb_files[0]) == {summary["wandb_run_id"]}
    # each rank draws its own dropout, flips, crops and mixup: its generators differ from the other's
    rank0, rank1 = (json.loads((draws / f"rank{r}.json").read_text()) for r in (0, 1))
    assert rank0["torch"] != rank1["torch"] and rank0["numpy"] != rank1["numpy"]


def _in_own_session(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    """The command with its DDP ranks in a process group of their own, so a test can kill them all."""
    process = subprocess.Popen(
        [sys.executable, "-m", "vitlight", *args],
        cwd=cwd,
        env={**os.environ, **ENV},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        out, err = process.communicate(timeout=600)
    finally:
        try:
            os.killpg(process.pid, signal.SIGKILL)  # no rank outlives the test
        except ProcessLookupError:
            pass
    return subprocess.CompletedProcess(process.args, process.returncode, out, err)


@pytest.mark.slow  # default run under 15 minutes; `make test-slow` runs it
def test_two_process_run_killed_and_resumed_equals_the_uninterrupted_one(images: Path, tmp_path: Path):
    steps = [
        "--trainer.max_epochs",
        "2",
        "--trainer.limit_train_batches",
        "3",
        "--data.train_size",
        "24",
        "--data.batch_size",
        "4",
        "--checkpoint_every_n_steps",
        "1",
        "--trainer.deterministic",
        "true",
        "--model.init_args.mixup_alpha",
        "0.8",
    ]
    straight = run_vitlight(*ddp_args(images, tmp_path / "straight", *steps), env=ENV, cwd=tmp_path)
    assert straight.returncode == 0, straight.stderr[-3000:]
    killed = _in_own_session(
        ddp_args(
            images,
            tmp_path / "resumed",
            *steps,
            "--trainer.callbacks+=tests.helpers.callbacks.KillProcessGroupAtStep",
            "--trainer.callbacks.step=2",
        ),
        tmp_path,
    )
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    (run,) = (tmp_path / "resumed" / "quickstart").iterdir()
    saved = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)
    assert saved["global_step"] == 2  # mid-epoch 0
    assert len(saved["callbacks"]["RandomStates"]["ranks"]) == 2  # each rank's generators
    resumed = run_vitlight(
        *ddp_args(images, tmp_path / "resumed", *steps, "--ckpt_path", "last"), env=ENV, cwd=tmp_path
    )
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    expected = torch.load(
        next((tmp_path / "straight" / "quickstart").iterdir()) / "checkpoints" / "last.ckpt", weights_only=True
    )
    actual = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)
    assert actual["global_step"] == expected["global_step"] == 6
    for name, value in expected["state_dict"].items():
        assert torch.allclose(actual["state_dict"][name], value, atol=1e-6, rtol=0), name


# Validation on two ranks: the model predicts the class written in each image's first pixel, and the
# 8 validation images are ordered so that rank 0 (even positions) gets all 4 right and rank 1 (odd
# positions) 1 of 4: 5 of 8 over the whole split, which only a metric synced across ranks reports.
SYNCED_METRIC_SCRIPT = textwrap.dedent("""
    import json, sys
    import lightning as L
    import torch
    from torch.utils.data import DataLoader, TensorDataset
    from vitlight.tasks.classification import ImageClassifier

    class FirstPixelSays(ImageClassifier):
        def forward(self, images):
            return torch.nn.functional.one_hot(images[:, 0, 0, 0].long(), 4).float() * 10.0

    class Data(L.LightningDataModule):
        def val_dataloader(self):
            predicted = torch.tensor([0, 1, 1, 0, 2, 3, 3, 3])
            labels = torch.tensor([0, 1, 1, 2, 2, 0, 3, 1])  # even: right; odd: 1 right, 3 wrong
            images = predicted.float().view(-1, 1, 1, 1).expand(-1, 3, 4, 4).contiguous()
            return DataLoader(TensorDataset(images, labels), batch_size=2)

    if __name__ == "__main__":
        model = FirstPixelSays(model_name="resnet18", num_classes=4, image_size=4, lr_scheduler=None)
        trainer = L.Trainer(accelerator="cpu", devices=2, strategy="ddp", logger=False, enable_progress_bar=False,
                            enable_model_summary=False, enable_checkpointing=False)
        trainer.validate(model, datamodule=Data())
        if trainer.is_global_zero:
            json.dump({k: float(v) for k, v in trainer.callback_metrics.items()}, open(sys.argv[1], "w"))
""")


def test_validation_accuracy_is_over_the_whole_split_not_one_rank(tmp_path: Path):
    script = tmp_path / "validate_two_ranks.py"
    script.write_text(SYNCED_METRIC_SCRIPT)
    out = tmp_path / "metrics.json"
    result = subprocess.run(
        [sys.executable, str(script), str(out)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env={**os.environ, **ENV},
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    metrics = json.loads(out.read_text())
    assert metrics["val/acc"] == pytest.approx(5 / 8)  # rank 0 alone: 1.0; rank 1 alone: 0.25
