"""Image-completion grids: built here, written as PNG by `vitlight sample`, logged to W&B during training."""

from __future__ import annotations

import logging
from pathlib import Path

import lightning as L
import numpy as np
import torch
from lightning.pytorch.callbacks import Callback
from torch import Tensor

from vitlight.errors import ConfigError

log = logging.getLogger(__name__)


def completion_grid(
    originals: Tensor, halves: Tensor, completions: Tensor, gap: int = 2, min_tile: int = 64
) -> np.ndarray:
    """One row per image: quantized original | top half | completions; uint8 (H', W', C).

    originals, halves: uint8 (B, H, W, C); completions: uint8 (B, S, H, W, C). Tiles are
    enlarged by an integer factor (nearest neighbour) to at least ``min_tile`` pixels.
    """
    b, samples, h, w, c = completions.shape
    scale = max(1, -(-min_tile // max(h, w)))
    tiles = torch.cat([originals[:, None], halves[:, None], completions], dim=1)  # (B, 2+S, H, W, C)
    tiles = tiles.repeat_interleave(scale, dim=2).repeat_interleave(scale, dim=3)
    th, tw, columns = h * scale, w * scale, 2 + samples
    grid = torch.full((b * (th + gap) + gap, columns * (tw + gap) + gap + gap, c), 255, dtype=torch.uint8)
    for row in range(b):
        for column in range(columns):
            top = gap + row * (th + gap)
            left = gap + column * (tw + gap) + (gap if column >= 2 else 0)  # a wider gap before the completions
            grid[top : top + th, left : left + tw] = tiles[row, column]
    return grid.numpy()


def save_png(grid: np.ndarray, path: str | Path) -> Path:
    from PIL import Image

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(grid[..., 0] if grid.shape[-1] == 1 else grid).save(path)
    return path


class CompletionGrid(Callback):
    """Every ``every_n_epochs`` validation epochs, completes the bottom half of ``n``
    validation images and logs the grid to W&B (key ``samples/completions``) and as
    ``<run>/samples/epoch=NNN.png``. Skipped for BERT models, which cannot sample."""

    def __init__(
        self,
        every_n_epochs: int = 5,
        n: int = 8,
        samples: int = 2,
        temperature: float = 1.0,
        top_k: int | None = None,
        seed: int = 0,
    ) -> None:
        """
        Args:
            every_n_epochs: log a grid after every this many validation epochs (and after the last).
            n: images (rows) in the grid, spread evenly over the validation split.
            samples: completions per image.
            temperature: sampling temperature (0: the most likely colour).
            top_k: sample among the k most likely colours only (None: all).
            seed: seed of the sampling draws, the same every epoch.
        """
        if every_n_epochs < 1 or n < 1 or samples < 1:
            raise ConfigError(
                f"CompletionGrid: every_n_epochs ({every_n_epochs}), n ({n}) and samples ({samples}) must be >= 1"
            )
        self.every_n_epochs = every_n_epochs
        self.n = n
        self.samples = samples
        self.temperature = temperature
        self.top_k = top_k
        self.seed = seed
        self._pixels: Tensor | None = None

    def _due(self, trainer: L.Trainer) -> bool:
        epoch = trainer.current_epoch + 1
        last = trainer.max_epochs is not None and epoch >= trainer.max_epochs
        return epoch % self.every_n_epochs == 0 or last

    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking or not trainer.is_global_zero or not self._due(trainer):
            return
        if not hasattr(pl_module, "complete") or not pl_module.model.cfg.causal:
            return
        if self._pixels is None:
            from vitlight.tasks.pixels import split_pixels

            self._pixels, _ = split_pixels(trainer.datamodule, "val", count=self.n)
        generator = torch.Generator(device=pl_module.device).manual_seed(self.seed)
        grid = completion_grid(
            *pl_module.complete(
                self._pixels,
                samples=self.samples,
                temperature=self.temperature,
                top_k=self.top_k,
                generator=generator,
            )
        )
        epoch = trainer.current_epoch
        path = save_png(grid, Path(trainer.log_dir or ".") / "samples" / f"epoch={epoch:03d}.png")
        from vitlight.logging_wandb import wandb_loggers

        for logger in wandb_loggers(trainer.loggers):
            caption = f"epoch {epoch}: original | top half | {self.samples} completion(s)"
            logger.log_image("samples/completions", [str(path)], caption=[caption], step=trainer.global_step)
        log.info("completion grid of epoch %d written to %s", epoch, path)
