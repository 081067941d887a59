"""`vitlight fit` with vitlight.fsdp.BlockFSDP on one CPU process (torch's FSDP over gloo, world size 1),
as a user runs it: global-norm clipping, activation checkpointing, the W&B summary's FLOP count, the test
of the written checkpoint after fit. (Two ranks: tests/test_fsdp_gloo.py.)"""

from __future__ import annotations

import json
from pathlib import Path

from tests.conftest import run_vitlight, smoke_fit_on_folder, write_image_folder
from vitlight.checkpoints import load_module


def test_fsdp_by_block_fits_clipped_tests_and_writes_a_readable_checkpoint(tmp_path: Path):
    images = write_image_folder(tmp_path / "images", per_class=12, size=16)
    runs = tmp_path / "runs"
    done = run_vitlight(
        *smoke_fit_on_folder(images),
        "--runs_dir",
        str(runs),
        "--trainer.accelerator",
        "cpu",
        "--trainer.devices",
        "1",
        "--trainer.gradient_clip_val",
        "0.5",
        "--trainer.gradient_clip_algorithm",
        "norm",
        "--trainer.strategy",
        "vitlight.fsdp.BlockFSDP",
        "--trainer.strategy.block_classes",
        "[timm.models.vision_transformer.Block]",
        "--trainer.strategy.activation_checkpointing",
        "true",
        cwd=tmp_path,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    summary = json.loads(next(runs.glob("*/*/summary.json")).read_text())
    assert summary["status"] == "finished" and summary["test"]
    module, _ = load_module(next(runs.glob("*/*/checkpoints/last.ckpt")))
    assert sum(p.numel() for p in module.parameters()) > 0
