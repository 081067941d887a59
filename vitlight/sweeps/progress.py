"""Per-epoch metrics for the sweep runner: one JSON line per validation epoch.

The sweep runner sets VITLIGHT_PROGRESS_FILE for each trial and reads the file while the
trial runs, to feed hyperband early termination; the runner adds it with
`--trainer.callbacks+=` to `fit` trials of sweeps that use hyperband. Without the variable the
callback does nothing. Listed twice (by the runner and by the experiment's own callbacks), it
writes once.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback

PROGRESS_ENV = "VITLIGHT_PROGRESS_FILE"


class ProgressFile(Callback):
    """Appends `{"epoch": e, "step": s, "val/acc": ..., ...}` to $VITLIGHT_PROGRESS_FILE after each validation."""

    def __init__(self, path: str | None = None) -> None:
        """
        Args:
            path: the file to append to; None reads $VITLIGHT_PROGRESS_FILE when training starts.
        """
        self.path = path

    def _target(self) -> Path | None:
        path = self.path or os.environ.get(PROGRESS_ENV)
        return Path(path) if path else None

    def _is_first(self, trainer: L.Trainer) -> bool:
        first = next(c for c in trainer.callbacks if isinstance(c, ProgressFile))
        return first is self

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        target = self._target()
        if target is None or trainer.sanity_checking or not trainer.is_global_zero or not self._is_first(trainer):
            return
        record: dict[str, float | int] = {"epoch": trainer.current_epoch, "step": trainer.global_step}
        for key, value in trainer.callback_metrics.items():
            if isinstance(value, torch.Tensor) and value.numel() == 1:
                record[key] = float(value)
            elif isinstance(value, (int, float)):
                record[key] = float(value)
        target.parent.mkdir(parents=True, exist_ok=True)
        with open(target, "a") as stream:
            stream.write(json.dumps(record) + "\n")
            stream.flush()
