"""Learning-rate schedules stepped once per optimizer step."""

from __future__ import annotations

import math

from torch.optim import Optimizer
from torch.optim.lr_scheduler import LambdaLR

from vitlight.errors import ConfigError


class WarmupCosine(LambdaLR):
    """Linear warmup from 0 to the base rate, then cosine decay to `min_lr_ratio` of it.

    `total_steps=None` is filled in by the task from the trainer's estimated stepping
    batches (`set_total_steps`), so a YAML never has to know the dataset size.
    """

    def __init__(
        self,
        optimizer: Optimizer,
        warmup_steps: int = 0,
        warmup_fraction: float = 0.0,
        total_steps: int | None = None,
        min_lr_ratio: float = 0.0,
    ) -> None:
        self.warmup_steps = warmup_steps
        self.warmup_fraction = warmup_fraction
        self.total_steps = total_steps
        self.min_lr_ratio = min_lr_ratio
        super().__init__(optimizer, self._factor)

    def set_total_steps(self, total_steps: int) -> None:
        """Fixes the schedule's length and re-applies the current step's rate."""
        if self.total_steps is not None:
            return
        self.total_steps = max(int(total_steps), 1)
        for group, base_lr in zip(self.optimizer.param_groups, self.base_lrs):
            group["lr"] = base_lr * self._factor(self.last_epoch)

    def _warmup(self) -> int:
        if self.total_steps is None and self.warmup_fraction:
            return 1  # length not known yet (set at train start): start at a rate near zero
        if self.warmup_steps:
            return self.warmup_steps
        return int(self.warmup_fraction * (self.total_steps or 0))

    def _factor(self, step: int) -> float:
        warmup = self._warmup()
        if step < warmup:
            return (step + 1) / warmup
        total = self.total_steps or 1
        progress = min(max(step - warmup, 0) / max(total - warmup, 1), 1.0)
        return self.min_lr_ratio + (1.0 - self.min_lr_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))


def complete_schedules(trainer) -> None:
    """Gives every WarmupCosine without a length the trainer's number of optimizer steps.

    Called at train start, not in configure_optimizers: asking the trainer for its stepping
    batches there builds the train loader before a resumed run has restored the loader's
    position, and the run would then resume at the wrong batch.
    """
    for config in trainer.lr_scheduler_configs:
        if isinstance(config.scheduler, WarmupCosine) and config.scheduler.total_steps is None:
            steps = trainer.estimated_stepping_batches
            if not math.isfinite(steps):
                raise ConfigError(
                    "WarmupCosine needs the run's length, but trainer.max_epochs is -1 and trainer.max_steps is -1 "
                    "(train without end); set trainer.max_steps or trainer.max_epochs, or "
                    "model.init_args.lr_scheduler.init_args.total_steps"
                )
            config.scheduler.set_total_steps(int(steps))
