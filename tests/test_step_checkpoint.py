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


class Clock(Callback):
    """A fake clock that advances one minute per training batch (StepCheckpoint reads it)."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_index) -> None:
        self.now += 60.0


def _fit_with(tmp_path: Path, checkpoint: StepCheckpoint, clock: Clock | None, max_steps: int, accumulate: int = 1):
    L.seed_everything(0)
    if clock is not None:
        checkpoint.clock = clock
    saved = SavedSteps()
    callbacks = [saved, *([clock] if clock else []), checkpoint]  # the clock ticks before the checkpoint looks
    trainer = L.Trainer(
        max_steps=max_steps,
        accumulate_grad_batches=accumulate,
        limit_val_batches=0,
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=callbacks,
    )
    trainer.fit(BoringModel())
    return saved.steps


def test_clock_saves_after_the_interval_on_optimizer_steps(tmp_path: Path):
    steps = _fit_with(tmp_path, StepCheckpoint(str(tmp_path), every_n_minutes=2.5), Clock(), max_steps=10)
    assert steps == [3, 6, 9]  # 3 minutes >= 2.5 since train start, then since each save
    # 3 batches per optimizer step: the interval ends after batch 4 (mid-accumulation, where a save would
    # lose batch 4's gradients on resume); the save waits for the step that batch 6 completes
    steps = _fit_with(tmp_path, StepCheckpoint(str(tmp_path), every_n_minutes=3.5), Clock(), max_steps=4, accumulate=3)
    assert steps == [2, 4]


def test_a_clock_checkpoint_is_the_step_checkpoint_of_that_step(tmp_path: Path):
    """What exact resume needs (tests/test_resume.py resumes step checkpoints): the same weights,
    optimizer, loop and loader state as a checkpoint every 3 steps, written at step 3."""
    assert _fit_with(tmp_path / "clock", StepCheckpoint(str(tmp_path / "clock"), every_n_minutes=2.5), Clock(), 4) == [
        3
    ]
    assert _fit_with(tmp_path / "steps", StepCheckpoint(str(tmp_path / "steps"), 3), None, 4) == [3]
    by_clock, by_steps = (torch.load(tmp_path / name / "last.ckpt", weights_only=False) for name in ("clock", "steps"))
    assert by_clock["global_step"] == by_steps["global_step"] == 3
    for name, value in by_steps["state_dict"].items():
        assert torch.equal(by_clock["state_dict"][name], value), name
    assert by_clock["loops"] == by_steps["loops"]
    assert str(by_clock["optimizer_states"]) == str(by_steps["optimizer_states"])
