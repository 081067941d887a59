"""The base of the callbacks that draw figures of a fixed set of validation images for W&B
(AttentionRolloutLogger, Fig7Logger): when to draw, which images, and turning off with one warning."""

from __future__ import annotations

from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.utilities import rank_zero_warn
from torch import Tensor

from vitlight.errors import ConfigError


class ValidationImagesLogger(Callback):
    """Every `every_n_epochs`-th epoch, after validation, on rank 0 and only with a WandbLogger,
    calls `log_figures` with the first `num_images` validation images (eval transform), picked
    once and reused, so the figures of different epochs show the same images. A model or data
    the figures do not fit turns the callback off with one warning; training goes on."""

    def __init__(self, every_n_epochs: int, num_images: int) -> None:
        super().__init__()
        for name, value in (("every_n_epochs", every_n_epochs), ("num_images", num_images)):
            if value < 1:
                raise ConfigError(f"{type(self).__name__} {name} must be at least 1, got {value}")
        self.every_n_epochs = every_n_epochs
        self.num_images = num_images
        self.disabled = False
        self._images: Tensor | None = None  # (N, C, H, W) as the dataset serves them, on the CPU
        self._labels: list[int] = []

    def log_figures(self, trainer: L.Trainer, pl_module: L.LightningModule, loggers: list[Any]) -> None:
        raise NotImplementedError

    def _disable(self, reason: str) -> None:
        self.disabled = True
        rank_zero_warn(f"{type(self).__name__} is off: {reason}")

    def _due(self, trainer: L.Trainer) -> bool:
        if self.disabled or trainer.sanity_checking or not trainer.is_global_zero:
            return False
        return (trainer.current_epoch + 1) % self.every_n_epochs == 0

    def _pick_images(self, trainer: L.Trainer) -> bool:
        """Takes the first num_images items of the validation dataset once; False (and off) when it cannot."""
        if self._images is not None:
            return True
        loaders = trainer.val_dataloaders
        if isinstance(loaders, (list, tuple)):
            loaders = loaders[0] if loaders else None
        dataset = getattr(loaders, "dataset", None)
        if dataset is None or len(dataset) == 0:
            self._disable("no validation images to draw")
            return False
        images, labels = [], []
        for index in range(min(self.num_images, len(dataset))):
            item = dataset[index]
            if not isinstance(item, (tuple, list)) or not isinstance(item[0], Tensor) or item[0].dim() != 3:
                self._disable(
                    f"validation items must be (image (C, H, W), label); item {index} is {type(item).__name__}"
                )
                return False
            images.append(item[0])
            labels.append(int(item[1]) if len(item) > 1 else -1)
        self._images = torch.stack(images).cpu()
        self._labels = labels
        return True

    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        from vitlight.logging_wandb import wandb_loggers

        if not self._due(trainer):
            return
        loggers = wandb_loggers(trainer.loggers)
        if loggers and self._pick_images(trainer):
            self.log_figures(trainer, pl_module, loggers)
