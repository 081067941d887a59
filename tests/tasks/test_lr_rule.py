"""The papers' learning-rate rule: lr x global batch / base batch, resolved at fit time and logged."""

from __future__ import annotations

import lightning as L
import pytest
import torch
from lightning.pytorch.loggers.logger import Logger

from tests.conftest import write_image_folder
from vitlight.data import ImageFolder
from vitlight.errors import ConfigError
from vitlight.tasks import ImageClassifier
from vitlight.tasks.schedules import WarmupCosine

TINY = {"patch_size": 4, "embed_dim": 16, "depth": 1, "num_heads": 2}


class HyperparameterRecorder(Logger):
    def __init__(self) -> None:
        super().__init__()
        self.hyperparameters: dict = {}

    @property
    def name(self) -> str:
        return "recorder"

    @property
    def version(self) -> int:
        return 0

    def log_hyperparams(self, params, *args, **kwargs) -> None:
        if isinstance(params, dict):
            self.hyperparameters.update(params)

    def log_metrics(self, metrics, step=None) -> None:
        pass


def _fit(tmp_path, base_batch_size: int | None, accumulate: int, scheduler=None):
    folder = write_image_folder(tmp_path / "images", per_class=8, size=8)
    data = ImageFolder(data_dir=str(folder), image_size=8, batch_size=4, num_workers=0, val_fraction=0.2)
    model = ImageClassifier(
        model_name="vit_tiny_patch16_224",
        model_kwargs=TINY,
        num_classes=3,
        image_size=8,
        optimizer=lambda params: torch.optim.AdamW(params, lr=5e-4, weight_decay=0.05),
        lr_scheduler=scheduler,
        base_batch_size=base_batch_size,
    )
    recorder = HyperparameterRecorder()
    trainer = L.Trainer(
        max_steps=1,
        accumulate_grad_batches=accumulate,
        logger=recorder,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        limit_val_batches=0,
        accelerator="cpu",
    )
    trainer.fit(model, datamodule=data)
    return trainer, recorder


def test_deit_rule_scales_by_the_global_batch_and_logs_it(tmp_path):
    trainer, recorder = _fit(tmp_path, base_batch_size=512, accumulate=2)
    expected = 5e-4 * (1 * 4 * 2) / 512  # devices x per-device batch x accumulation
    assert recorder.hyperparameters["global_batch_size"] == 8
    assert recorder.hyperparameters["lr_resolved"] == pytest.approx(expected)
    assert all(group["lr"] == pytest.approx(expected) for group in trainer.optimizers[0].param_groups)


def test_the_schedule_starts_from_the_scaled_rate(tmp_path):
    trainer, _ = _fit(
        tmp_path, base_batch_size=16, accumulate=1, scheduler=lambda opt: WarmupCosine(opt, total_steps=100)
    )
    scheduler = trainer.lr_scheduler_configs[0].scheduler
    assert scheduler.base_lrs[0] == pytest.approx(5e-4 * 4 / 16)


def test_without_a_base_batch_the_lr_is_used_as_written(tmp_path):
    trainer, recorder = _fit(tmp_path, base_batch_size=None, accumulate=1)
    assert trainer.optimizers[0].param_groups[0]["lr"] == pytest.approx(5e-4)
    assert "lr_resolved" not in recorder.hyperparameters


def test_a_bad_base_batch_is_a_one_line_error(tmp_path):
    with pytest.raises(ConfigError, match="base_batch_size must be positive"):
        _fit(tmp_path, base_batch_size=0, accumulate=1)
