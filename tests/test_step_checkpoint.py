"""StepCheckpoint (Lightning's ModelCheckpoint writing last.ckpt every N optimizer steps): once per
optimizer step, also when several batches make one step (gradient accumulation)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.demos.boring_classes import BoringModel

from vitlight.reliability import StepCheckpoint


class SavedSteps(Callback):
    def __init__(self) -> None:
        self.steps: list[int] = []

    def on_save_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict[str, Any]) -> None:
        self.steps.append(trainer.global_step)


def test_one_save_per_optimizer_step_under_gradient_accumulation(tmp_path: Path):
    saved = SavedSteps()
    trainer = L.Trainer(
        max_steps=6,
        accumulate_grad_batches=3,
        limit_val_batches=0,
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[saved, StepCheckpoint(str(tmp_path), 2)],
    )
    trainer.fit(BoringModel())
    assert saved.steps == [2, 4, 6]  # every 2nd of 6 steps (18 batches), each once
    checkpoint = torch.load(tmp_path / "last.ckpt", weights_only=False)
    assert checkpoint["global_step"] == 6
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.ckpt"]  # no top-k or versioned copies
