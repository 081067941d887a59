"""What a run's W&B summary says: the best validation value over the run, not the last one.

W&B keeps the last logged value of each key as the run's summary, which after a late drop in
accuracy is not the result a sweep or a runs table should show. `define_metric(..., summary=...)`
makes W&B keep the best instead (`val/acc` -> `{"max": ...}` in the summary; the history, which
W&B's sweep controller and hyperband read, is unchanged). Test metrics of the tested checkpoint
go to the summary as they are (vitlight.cli writes them when the run ends).
"""

from __future__ import annotations

from typing import Any

from lightning.pytorch.callbacks import Callback

from vitlight.logging_wandb import wandb_loggers

BEST_SUMMARIES = {  # logged key -> the summary W&B keeps
    "val/acc": "max",
    "val/acc_top5": "max",
    "val/loss": "min",
}


def define_summaries(run: Any) -> None:
    """Declares the best-over-run summaries on a W&B run (wandb.Run or the logger's experiment)."""
    for key, summary in BEST_SUMMARIES.items():  # the step axis Lightning's WandbLogger gives every key ("*")
        run.define_metric(key, step_metric="trainer/global_step", summary=summary)


class BestSummaries(Callback):
    """Declares the summaries on every WandbLogger before the first value is logged."""

    def setup(self, trainer: Any, pl_module: Any, stage: str) -> None:
        if not trainer.is_global_zero:
            return
        for logger in wandb_loggers(trainer.loggers):
            define_summaries(logger.experiment)
