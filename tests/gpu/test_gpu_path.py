"""The GPU path, on a CUDA device (run by the prepared script in docs/performance.md): bf16 by default,
no host sync in vitlight's step code under torch.cuda.set_sync_debug_mode("error"), FSDP by block with
global-norm clipping, fused AdamW, and the iGPT built on the meta device and compiled per block."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from lightning.pytorch.callbacks import Callback

from tests.conftest import EXPERIMENTS, SMOKE, write_image_folder

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")]


class SyncErrorsInVitlightSteps(Callback):
    """Turns CUDA's sync debug mode to "error" around vitlight's own step code after the first
    steps (Lightning's loop and progress bar still read values when they log)."""

    def __init__(self) -> None:
        self.steps_checked = 0

    def on_train_batch_start(self, trainer, pl_module, batch, batch_index: int) -> None:
        if trainer.global_step >= 2:
            torch.cuda.set_sync_debug_mode("error")

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_index: int) -> None:
        if torch.cuda.get_sync_debug_mode() != 0:
            self.steps_checked += 1
        torch.cuda.set_sync_debug_mode("default")


def _fit(tmp_path: Path, experiment: str, *extra: str) -> dict:
    from vitlight.cli import main

    images = write_image_folder(tmp_path / "images", per_class=24, size=28)
    runs = tmp_path / "runs"
    args = [
        "fit",
        "--config",
        str(EXPERIMENTS / experiment),
        "--config",
        str(SMOKE),
        "--data",
        "ImageFolder",
        "--data.data_dir",
        str(images),
        "--data.image_size",
        "28",  # the quickstart ViT's patches are 7 px
        "--data.batch_size",
        "8",
        "--runs_dir",
        str(runs),
        "--trainer.log_every_n_steps",
        "1000",
        "--checkpoint_every_n_steps",
        "0",
        "--trainer.limit_train_batches",
        "6",
        *extra,
    ]
    assert main(args) == 0
    return json.loads(next(runs.glob("*/*/summary.json")).read_text())


def test_bf16_and_tf32_are_the_cuda_defaults(tmp_path: Path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "disabled")
    summary = _fit(tmp_path, "quickstart.yaml")
    assert summary["precision"] in ("bf16-mixed", "16-mixed")
    assert summary["float32_matmul_precision"] == "high"


@pytest.mark.parametrize(
    "experiment, extra",
    [
        (
            "quickstart.yaml",
            [
                "--model.init_args.ema_decay",
                "0.99",
                "--model.init_args.mixup_alpha",
                "0.8",
                "--data.horizontal_flip",
                "true",
                "--data.random_crop_padding",
                "4",
            ],
        ),
        ("resnet18_cifar10.yaml", ["--model.init_args.ema_decay", "0.99", "--model.init_args.mixup_alpha", "0.8"]),
        ("igpt_tiny_quickstart.yaml", []),
        ("igpt_tiny_quickstart_bert.yaml", []),
        ("igpt_tiny_quickstart_probe.yaml", []),
    ],
)
def test_no_sync_in_vitlight_steps_under_cuda_debug_mode(
    tmp_path: Path, monkeypatch, experiment: str, extra: list[str]
):
    import tests.gpu.test_gpu_path as this

    monkeypatch.setenv("WANDB_MODE", "disabled")
    _fit(
        tmp_path,
        experiment,
        "--trainer.callbacks+=tests.gpu.test_gpu_path.SyncErrorsInVitlightSteps",
        "--trainer.enable_progress_bar",
        "false",
        *extra,
    )
    assert this  # a sync in a checked step raises inside fit, which then returns non-zero


class FusedAdamW(Callback):
    """Fails the run unless AdamW took its fused CUDA kernel (vitlight.tasks.optim.build_optimizer)."""

    def on_train_start(self, trainer, pl_module) -> None:
        assert trainer.optimizers[0].defaults["fused"] is True


FSDP_CLIPPED = [
    "--trainer.devices",
    "1",
    "--trainer.gradient_clip_val",
    "1.0",
    "--trainer.gradient_clip_algorithm",
    "norm",  # Lightning's own FSDP precision refuses this; BlockFSDP clips over the shards
    "--trainer.callbacks+=tests.gpu.test_gpu_path.FusedAdamW",
    "--trainer.strategy",
    "vitlight.fsdp.BlockFSDP",
    "--trainer.strategy.activation_checkpointing",
    "true",
]


def test_fsdp_by_block_trains_clipped_and_writes_a_readable_checkpoint(tmp_path: Path, monkeypatch):
    from vitlight.checkpoints import load_module

    monkeypatch.setenv("WANDB_MODE", "disabled")
    summary = _fit(
        tmp_path,
        "quickstart.yaml",
        *FSDP_CLIPPED,
        "--trainer.strategy.block_classes",
        "[timm.models.vision_transformer.Block]",
    )
    assert summary["status"] == "finished"
    checkpoint = next(tmp_path.glob("runs/*/*/checkpoints/last.ckpt"))
    module, _ = load_module(checkpoint)
    assert sum(p.numel() for p in module.parameters()) > 0


def test_fsdp_igpt_built_on_meta_compiled_per_block_trains_clipped(tmp_path: Path, monkeypatch):
    """igpt_xl_cifar10's settings on the tiny iGPT: empty init, blocks compiled, FSDP units, checkpointing."""
    from vitlight.checkpoints import load_module

    monkeypatch.setenv("WANDB_MODE", "disabled")
    summary = _fit(
        tmp_path,
        "igpt_tiny_quickstart.yaml",
        *FSDP_CLIPPED,
        "--trainer.strategy.block_classes",
        "[vitlight.models.igpt_model.Block]",
        "--model.init_args.empty_init",
        "true",
        "--model.init_args.compile",
        "true",
    )
    assert summary["status"] == "finished"
    module, _ = load_module(next(tmp_path.glob("runs/*/*/checkpoints/last.ckpt")))
    assert 0.005 < float(module.model.blocks[0].attn.qkv.weight.std()) < 0.1  # iGPT's init, barely trained
