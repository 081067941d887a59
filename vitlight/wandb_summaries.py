"""What a run's W&B summary says: the best validation value over the run, not the last one.

W&B keeps the last logged value of each key as the run's summary, which after a late drop in
accuracy is not the result a sweep or a runs table should show. `define_metric(..., summary=...)`
makes W&B keep the best while the run goes (`val/acc` -> `{"max": ...}`); when the fit ends the
summary's `val/acc` becomes the best value as a plain number (what a runs table column and the
sweep controller read) and `val/acc_max` keeps it too. The history is unchanged until the end.

Test metrics of the tested checkpoint go to the summary as they are (vitlight.cli writes them
when the run ends). Two run facts join them for the study's dashboards (`vitlight dashboard`):
`data/train_size`, the training images as a count (a sweep may give a fraction), and
`compute/train_flops`, the counted FLOPs of one image's training step through the backbone
(vitlight.analysis.flops, meta device) times the images the optimizer saw. They are in the
summary, and in one history row logged after the test beside the best validation values and the
test values: the row W&B's line plots of accuracy against training-set size or FLOPs read.
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
    """Declares the best-over-run summaries on a W&B run (wandb.Run or the logger's experiment); the step axis
    is Lightning's WandbLogger's, declared for every key."""
    for key, summary in BEST_SUMMARIES.items():
        run.define_metric(key, summary=summary)


def is_better(key: str, value: float, best: float | None) -> bool:
    return best is None or (value > best if BEST_SUMMARIES[key] == "max" else value < best)


def plain_summaries(best: dict[str, float]) -> dict[str, float]:
    """`val/acc`: the best value as a number, and `val/acc_max` beside it (`val/loss_min` for a loss)."""
    return {entry: value for key, value in best.items() for entry in (key, f"{key}_{BEST_SUMMARIES[key]}")}


def training_flops_per_image(trainer: Any, pl_module: Any) -> float | None:
    """Forward + backward FLOPs of one training image through the backbone (meta device), where known.

    Counted before the strategy wraps the model (BestSummaries.setup): an FSDP unit cannot run on
    shape-only weights.
    """
    datamodule = getattr(trainer, "datamodule", None)
    backbone, hparams = getattr(pl_module, "backbone", None), getattr(pl_module, "hparams", {})
    if backbone is None or not isinstance(getattr(datamodule, "batch_size", None), int):
        return None
    if not (hparams.get("image_size") and hparams.get("channels")):
        return None
    from vitlight.analysis.flops import count_training_flops

    size, channels = int(hparams["image_size"]), int(hparams["channels"])
    return count_training_flops(backbone, (2, channels, size, size)).train_step / 2  # 2: batch norm on 1x1 maps


def run_facts(trainer: Any, pl_module: Any, per_image: float | None = None) -> dict[str, float]:
    """`data/train_size` and `compute/train_flops` of a finished fit, where they can be known
    (``per_image``: `training_flops_per_image`, counted now when not given)."""
    facts: dict[str, float] = {}
    datamodule = getattr(trainer, "datamodule", None)
    data = datamodule.data_summary() if hasattr(datamodule, "data_summary") else {}
    if isinstance(data.get("train_size"), int):
        facts["data/train_size"] = data["train_size"]
    per_image = training_flops_per_image(trainer, pl_module) if per_image is None else per_image
    if per_image is not None:
        batch = datamodule.batch_size
        images = trainer.global_step * batch * trainer.accumulate_grad_batches * trainer.world_size
        facts["compute/train_flops"] = float(per_image * images)
    return facts


class BestSummaries(Callback):
    """Declares the summaries on every WandbLogger before the first value is logged; at the end of the fit writes
    the best values as plain numbers and the run facts.

    Declared at the first start hook, not at set-up: starting the W&B run writes into the run folder,
    which a run may do only once it got past its start checks (vitlight.run_start)."""

    def __init__(self) -> None:
        self.best: dict[str, float] = {}
        self.facts: dict[str, float] = {}
        self._declared = False
        self.per_image: float | None = None  # training FLOPs of one image, counted before any wrapping

    def setup(self, trainer: Any, pl_module: Any, stage: str) -> None:
        # before the strategy wraps the model (an FSDP unit cannot run on shape-only weights); starts no W&B run
        if stage == "fit" and trainer.is_global_zero and wandb_loggers(trainer.loggers):
            self.per_image = training_flops_per_image(trainer, pl_module)

    def _declare(self, trainer: Any) -> None:
        if self._declared or not trainer.is_global_zero:
            return
        self._declared = True
        for logger in wandb_loggers(trainer.loggers):
            define_summaries(logger.experiment)

    def on_validation_end(self, trainer: Any, pl_module: Any) -> None:
        if trainer.sanity_checking:
            return
        for key in BEST_SUMMARIES:
            value = trainer.callback_metrics.get(key)
            if value is not None and is_better(key, float(value), self.best.get(key)):
                self.best[key] = float(value)

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
            self.facts = run_facts(trainer, pl_module, self.per_image)
            for logger in loggers:
                logger.experiment.summary.update({**self.facts, **plain_summaries(self.best)})

    def on_test_end(self, trainer: Any, pl_module: Any) -> None:
        """After the fit's test: one history row with the run facts beside the best validation and the test values,
        the row a dashboard's line plot of accuracy against training-set size or FLOPs reads."""
        loggers = wandb_loggers(trainer.loggers) if trainer.is_global_zero and self.facts else []
        tested = {k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith("test/")}
        for logger in loggers:
            logger.experiment.log({**self.facts, **self.best, **tested})
