"""The ViT paper's Fig. 7 analyses logged to W&B during training, so a dashboard shows them form.

List it in a Trainer config like any callback (experiments/vit_ti4_cifar10_fig7.yaml does):

    trainer:
      callbacks:
        - class_path: vitlight.analysis.fig7_callback.Fig7Logger
          init_args: {every_n_epochs: 1, num_images: 32}

Every n-th epoch, after validation, it logs the principal components of the patch-embedding
filters, the position-embedding similarity grid and the mean attention distance of every
head (on the first ``num_images`` validation images) as images, plus the distances as a
table. Without a WandbLogger it does nothing.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import lightning as L
import numpy as np
import torch
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.utilities import rank_zero_warn
from PIL import Image
from torch import Tensor

from vitlight.analysis.attention_distance import mean_attention_distance
from vitlight.analysis.embeddings import patch_embedding_pca, patch_grid, position_embedding_similarity, vit_of
from vitlight.analysis.figure_plots import plot_attention_distance, plot_components, plot_position_similarity
from vitlight.analysis.model_input import model_input
from vitlight.errors import ConfigError

PREFIX = "fig7"
KEYS = (
    f"{PREFIX}/patch_embedding_components",
    f"{PREFIX}/position_embedding_similarity",
    f"{PREFIX}/mean_attention_distance",
    f"{PREFIX}/attention_distance_table",
)

__all__ = ["Fig7Logger", "KEYS"]


def _pixels(path: Path) -> np.ndarray:
    with Image.open(path) as image:
        return np.asarray(image.convert("RGB"))


class Fig7Logger(Callback):
    """Logs Fig. 7 (left, centre, right) of the current weights to every WandbLogger.

    A model the analyses do not fit (a CNN, a ViT without learned position embeddings) gets one
    warning and the callback turns off; training goes on.
    """

    def __init__(self, every_n_epochs: int = 1, num_images: int = 32, components: int = 28) -> None:
        """
        Args:
            every_n_epochs: log after the validation of every n-th epoch (epochs n, 2n, ...).
            num_images: validation images the attention distances are averaged over (fewer if the split is smaller).
            components: how many principal components of the patch-embedding filters to show.
        """
        super().__init__()
        for name, value in (("every_n_epochs", every_n_epochs), ("num_images", num_images), ("components", components)):
            if value < 1:
                raise ConfigError(f"Fig7Logger {name} must be at least 1, got {value}")
        self.every_n_epochs = every_n_epochs
        self.num_images = num_images
        self.components = components
        self.disabled = False
        self._images: Tensor | None = None  # (N, C, H, W) as the dataset gives them, on the CPU

    def _disable(self, reason: str) -> None:
        self.disabled = True
        rank_zero_warn(f"Fig7Logger is off: {reason}")

    def _due(self, trainer: L.Trainer) -> bool:
        if self.disabled or trainer.sanity_checking or not trainer.is_global_zero:
            return False
        return (trainer.current_epoch + 1) % self.every_n_epochs == 0

    def _pick_images(self, trainer: L.Trainer) -> bool:
        if self._images is not None:
            return True
        loaders = trainer.val_dataloaders
        loaders = (loaders[0] if loaders else None) if isinstance(loaders, (list, tuple)) else loaders
        dataset = getattr(loaders, "dataset", None)
        if dataset is None or len(dataset) == 0:
            self._disable("no validation images to measure attention distances on")
            return False
        items = [dataset[index] for index in range(min(self.num_images, len(dataset)))]
        if not all(
            isinstance(item, (tuple, list)) and isinstance(item[0], Tensor) and item[0].dim() == 3 for item in items
        ):
            self._disable("validation items must be (image (C, H, W), label)")
            return False
        self._images = torch.stack([item[0] for item in items]).cpu()
        return True

    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        from vitlight.logging_wandb import wandb_loggers

        if not self._due(trainer):
            return
        loggers = wandb_loggers(trainer.loggers)
        if not loggers or not self._pick_images(trainer):
            return
        model = vit_of(pl_module)
        settings = getattr(trainer.datamodule, "transform_settings", None) if trainer.datamodule is not None else None
        images = model_input(self._images, getattr(settings, "mean", (0.0,)), getattr(settings, "std", (1.0,)))
        parameter = next(model.parameters())
        try:
            components, explained = patch_embedding_pca(model, self.components)
            similarity = position_embedding_similarity(model)
            distance = mean_attention_distance(model, images.to(parameter.device, parameter.dtype))
        except (ValueError, AttributeError) as error:
            self._disable(str(error))
            return
        metrics = self._media(trainer, model, components, explained, similarity, distance, tuple(images.shape[-2:]))
        for logger in loggers:
            logger.log_metrics(metrics, step=trainer.global_step)

    def _media(
        self,
        trainer: L.Trainer,
        model,
        components: Tensor,
        explained: Tensor,
        similarity: Tensor,
        distance: Tensor,
        image_size: tuple[int, int],
    ) -> dict:
        import wandb

        epoch = trainer.current_epoch
        with tempfile.TemporaryDirectory() as folder:
            where = Path(folder)
            paths = (
                plot_components(components, explained, f"patch-embedding PCA, epoch {epoch}", where / "components.png"),
                plot_position_similarity(
                    similarity,
                    patch_grid(model),
                    f"position embedding similarity, epoch {epoch}",
                    where / "similarity.png",
                ),
                plot_attention_distance(
                    distance, image_size, f"mean attention distance, epoch {epoch}", where / "distance.png"
                ),
            )
            # pixels, not paths: W&B copies a file only when the run logs it, after the folder is gone
            images = [wandb.Image(_pixels(path)) for path in paths]
        table = wandb.Table(columns=["layer", "head", "mean_attention_distance_px"])
        for layer, row in enumerate(distance.tolist()):
            for head, value in enumerate(row):
                table.add_data(layer, head, value)
        return dict(zip(KEYS, [*images, table]))
