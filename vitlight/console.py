"""A quiet console: vitlight's own lines, the progress bar and the tables, nothing a user cannot act on.

Lightning announces what it does by itself (accelerators found, seeds set, checkpoints restored,
an advertisement), torch and W&B print deprecations meant for library authors; vitlight says
what matters in its own lines instead (the run folder, what is resumed, which checkpoint is
tested). Warnings that a user can act on still come through.
"""

from __future__ import annotations

import logging
import warnings
from typing import Any

import lightning as L
from lightning.pytorch.callbacks import ModelSummary, RichModelSummary
from lightning.pytorch.loggers import WandbLogger

# Lightning's info lines (by their start) that describe only what it does by itself
LIGHTNING_CHATTER = (
    "GPU available:",
    "TPU available:",
    "HPU available:",
    "💡 Tip:",
    "Seed set to",
    "`Trainer.fit` stopped:",
    "Restoring states from the checkpoint path",
    "Loaded model weights from the checkpoint",
    "Restored all states from the checkpoint",
    "`weights_only` was not set",
    "LOCAL_RANK:",
)
CHATTER_CONTAINS = ("was configured so",)  # `Trainer(limit_val_batches=1)` was configured so 1 batch will be used.
CHATTY_LOGGERS = (
    "lightning.pytorch.utilities.rank_zero",
    "lightning.fabric.utilities.rank_zero",
    "lightning.fabric.utilities.seed",
    "lightning.pytorch.trainer.connectors.checkpoint_connector",
)


class _DropChatter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno > logging.INFO:
            return True
        message = record.getMessage()
        return not (message.startswith(LIGHTNING_CHATTER) or any(part in message for part in CHATTER_CONTAINS))


_FILTER = _DropChatter()


def quiet_console() -> None:
    """Silences what the libraries print for their own authors (idempotent)."""
    for name in CHATTY_LOGGERS:
        logger = logging.getLogger(name)
        if _FILTER not in logger.filters:
            logger.addFilter(_FILTER)
    warnings.filterwarnings("ignore", message=".*set_vital.*")  # torchdata's own deprecation
    warnings.filterwarnings(
        "ignore", message=r".*isinstance\(treespec, LeafSpec\)", category=FutureWarning
    )  # Lightning on torch's pytree
    # vitlight's tasks finish batches in on_after_batch_transfer on purpose (the data module's batch stage)
    warnings.filterwarnings("ignore", message=".*overridden `on_after_batch_transfer` in `LightningModule`.*")


class ParameterSummary(RichModelSummary):
    """Lightning's model summary without its FLOPs column, which reads 0 for every layer unless the
    model carries an example input (vitlight counts a training step's FLOPs itself: vitlight.analysis.flops)."""

    @staticmethod
    def summarize(
        summary_data: list[tuple[str, list[str]]],
        total_parameters: int,
        trainable_parameters: int,
        model_size: float,
        total_training_modes: dict[str, int],
        total_flops: int,
        **kwargs: Any,
    ) -> None:
        from lightning.pytorch.utilities.model_summary.model_summary import (
            get_formatted_model_size,
            get_human_readable_count,
        )
        from rich import get_console
        from rich.table import Table

        columns = [(name, values) for name, values in summary_data if name != "FLOPs"]
        table = Table(header_style="bold magenta")
        table.add_column(" ", style="dim")
        for name, _ in columns[1:]:
            table.add_column(name, justify="right" if name == "Params" else "left")
        for row in zip(*(values for _, values in columns)):
            table.add_row(*row)
        console = get_console()
        console.print(table)
        console.print(
            f"Parameters: {get_human_readable_count(int(total_parameters))} "
            f"({get_human_readable_count(int(trainable_parameters))} trainable), "
            f"{get_formatted_model_size(model_size)} MB"
        )


def quiet_trainer(trainer: L.Trainer) -> None:
    """Swaps Lightning's default model summary for ParameterSummary; keeps W&B from warning about an unset option."""
    for index, callback in enumerate(trainer.callbacks):
        if type(callback) in (ModelSummary, RichModelSummary):
            trainer.callbacks[index] = ParameterSummary(max_depth=callback._max_depth)
    for logger in trainer.loggers:
        if isinstance(logger, WandbLogger):
            # WandbLogger passes anonymous=None, and W&B warns about any value of that retired setting
            logger._wandb_init.pop("anonymous", None)
