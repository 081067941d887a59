"""What a run's W&B summary says: the best validation value over the run, not the last one.

W&B keeps the last logged value of each key as the run's summary, which after a late drop in
accuracy is not the result a sweep or a runs table should show. `define_metric(..., summary=...)`
makes W&B keep the best instead (`val/acc` -> `{"max": ...}` in the summary; the history, which
W&B's sweep controller and hyperband read, is unchanged). Test metrics of the tested checkpoint
go to the summary as they are (vitlight.cli writes them when the run ends). Two run facts join
them for the study's dashboards (`vitlight dashboard`): `data/train_size`, the training images
as a count (a sweep may give a fraction), and `compute/train_flops`, the counted FLOPs of one
image's training step through the backbone (vitlight.analysis.flops, meta device) times the
images the optimizer saw.
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


def run_facts(trainer: Any, pl_module: Any) -> dict[str, float]:
    """`data/train_size` and `compute/train_flops` of a finished fit, where they can be known."""
    facts: dict[str, float] = {}
    datamodule = getattr(trainer, "datamodule", None)
    data = datamodule.data_summary() if hasattr(datamodule, "data_summary") else {}
    if isinstance(data.get("train_size"), int):
        facts["data/train_size"] = data["train_size"]
    backbone, hparams = getattr(pl_module, "backbone", None), getattr(pl_module, "hparams", {})
    batch = getattr(datamodule, "batch_size", None)
    if backbone is not None and isinstance(batch, int) and hparams.get("image_size") and hparams.get("channels"):
        from vitlight.analysis.flops import count_training_flops

        size, channels = int(hparams["image_size"]), int(hparams["channels"])
        per_image = (
            count_training_flops(backbone, (2, channels, size, size)).train_step / 2
        )  # 2: batch norm on 1x1 maps
        images = trainer.global_step * batch * trainer.accumulate_grad_batches * trainer.world_size
        facts["compute/train_flops"] = float(per_image * images)
    return facts


class BestSummaries(Callback):
    """Declares the summaries on every WandbLogger before the first value is logged; adds the run facts at the end.

    Declared at the first start hook, not at set-up: starting the W&B run writes into the run folder,
    which a run may do only once it got past its start checks (vitlight.run_start)."""

    def __init__(self) -> None:
        self._declared = False

    def _declare(self, trainer: Any) -> None:
        if self._declared or not trainer.is_global_zero:
            return
        self._declared = True
        for logger in wandb_loggers(trainer.loggers):
            define_summaries(logger.experiment)

    def on_fit_start(self, trainer: Any, pl_module: Any) -> None:
        self._declare(trainer)

    def on_validation_start(self, trainer: Any, pl_module: Any) -> None:
        self._declare(trainer)

    def on_test_start(self, trainer: Any, pl_module: Any) -> None:
        self._declare(trainer)

    def on_predict_start(self, trainer: Any, pl_module: Any) -> None:
        self._declare(trainer)

    def on_fit_end(self, trainer: Any, pl_module: Any) -> None:
        loggers = wandb_loggers(trainer.loggers) if trainer.is_global_zero else []
        if loggers:
            facts = run_facts(trainer, pl_module)
            for logger in loggers:
                logger.experiment.summary.update(facts)
