"""Attention-rollout overlays of a fixed set of validation images, logged to W&B during training.

List it in a Trainer config like any callback:

    trainer:
      callbacks:
        - class_path: vitlight.analysis.attention_callback.AttentionRolloutLogger
          init_args: {every_n_epochs: 5, num_images: 8}

Also holds the small display helpers the callback and `vitlight attention` share: turning a
normalized image back into uint8 RGB, and enlarging tiny images so an overlay stays readable.
"""

from __future__ import annotations

from collections.abc import Sequence

import lightning as L
import numpy as np
import torch
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.utilities import rank_zero_warn
from PIL import Image
from torch import Tensor, nn

from vitlight.analysis.attention_rollout import HEAD_FUSIONS, attention_rollout
from vitlight.analysis.overlay import overlay_heatmap
from vitlight.errors import ConfigError

LOG_KEY = "val/attention_rollout"
DISPLAY_MIN_SIDE = 128

__all__ = ["AttentionRolloutLogger", "DISPLAY_MIN_SIDE", "denormalize", "enlarge", "rollout_backbone"]


# ----- display helpers -----------------------------------------------------------------
def denormalize(images: Tensor, mean: Sequence[float] | None = None, std: Sequence[float] | None = None) -> np.ndarray:
    """Normalized float (B, C, H, W) -> uint8 (B, H, W, 3) RGB; grey is repeated to 3 channels.

    With ``mean`` and ``std`` the normalization ``(x / 255 - mean) / std`` is undone; without
    them each image is stretched to its own [min, max].
    """
    x = images.detach().float().cpu()
    if mean is not None and std is not None:
        m = torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1)
        s = torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1)
        x = (x * s + m) * 255.0
    else:
        low = x.flatten(1).amin(dim=1).view(-1, 1, 1, 1)
        high = x.flatten(1).amax(dim=1).view(-1, 1, 1, 1)
        x = (x - low) / (high - low).clamp_min(1e-12) * 255.0
    if x.shape[1] == 1:
        x = x.expand(-1, 3, -1, -1)
    # (B, C, H, W) -> (B, H, W, C)
    return x.round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).contiguous().numpy()


def enlarge(image: np.ndarray, min_side: int = DISPLAY_MIN_SIDE) -> np.ndarray:
    """uint8 (H, W, 3) enlarged by the smallest whole factor that makes its shorter side >= min_side.

    Nearest-neighbour, so pixels stay crisp squares; images already that large are returned as they are.
    """
    short = min(image.shape[:2])
    if min_side <= 0 or short >= min_side:
        return image
    factor = -(-min_side // short)  # ceil
    height, width = image.shape[:2]
    return np.asarray(Image.fromarray(image).resize((width * factor, height * factor), Image.NEAREST))


def rollout_backbone(module: nn.Module) -> nn.Module:
    """The timm model inside a vitlight task (``.backbone``), unwrapped from torch.compile."""
    model = getattr(module, "backbone", module)
    return getattr(model, "_orig_mod", model)


# ----- the callback ----------------------------------------------------------------------
class AttentionRolloutLogger(Callback):
    """Logs attention-rollout overlays of fixed validation images to every WandbLogger.

    The images are the first ``num_images`` of the validation dataset (eval transform), picked
    once and reused every time, so the overlays of different epochs show the same images.
    Without a WandbLogger it does nothing. A model that rollout cannot explain (no class
    token: ResNet, a ViT with global pooling only) gets one warning and the callback turns off;
    training goes on.
    """

    def __init__(self, every_n_epochs: int = 1, num_images: int = 8, head_fusion: str = "mean") -> None:
        """
        Args:
            every_n_epochs: log after the validation of every n-th epoch (epochs n, 2n, ...).
            num_images: how many validation images to show (fewer if the split is smaller).
            head_fusion: how attention heads are combined: mean, max or min.
        """
        super().__init__()
        if every_n_epochs < 1:
            raise ConfigError(f"AttentionRolloutLogger every_n_epochs must be at least 1, got {every_n_epochs}")
        if num_images < 1:
            raise ConfigError(f"AttentionRolloutLogger num_images must be at least 1, got {num_images}")
        if head_fusion not in HEAD_FUSIONS:
            raise ConfigError(
                f"AttentionRolloutLogger head_fusion must be one of {', '.join(HEAD_FUSIONS)}, got {head_fusion!r}"
            )
        self.every_n_epochs = every_n_epochs
        self.num_images = num_images
        self.head_fusion = head_fusion
        self.disabled = False
        self._images: Tensor | None = None  # (N, C, H, W) as the dataset serves them (uint8), on the CPU
        self._labels: list[int] = []

    # ----- which images --------------------------------------------------------------
    def _disable(self, reason: str) -> None:
        self.disabled = True
        rank_zero_warn(f"AttentionRolloutLogger is off: {reason}")

    def _pick_images(self, trainer: L.Trainer) -> bool:
        """Takes the first num_images items of the validation dataset once; False (and off) when it cannot."""
        if self._images is not None:
            return True
        loaders = trainer.val_dataloaders
        if isinstance(loaders, (list, tuple)):
            loaders = loaders[0] if loaders else None
        dataset = getattr(loaders, "dataset", None)
        if dataset is None:
            self._disable("no validation dataset to take images from")
            return False
        count = min(self.num_images, len(dataset))
        images, labels = [], []
        for index in range(count):
            item = dataset[index]
            if not isinstance(item, (tuple, list)) or not isinstance(item[0], Tensor) or item[0].dim() != 3:
                self._disable(f"validation items must be (image (C, H, W), label); item 0 is {type(item).__name__}")
                return False
            images.append(item[0])
            labels.append(int(item[1]) if len(item) > 1 else -1)
        if not images:
            self._disable("the validation dataset is empty")
            return False
        self._images = torch.stack(images).cpu()
        self._labels = labels
        return True

    # ----- when ---------------------------------------------------------------------
    def _due(self, trainer: L.Trainer) -> bool:
        if self.disabled or trainer.sanity_checking or not trainer.is_global_zero:
            return False
        return (trainer.current_epoch + 1) % self.every_n_epochs == 0

    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        from vitlight.logging_wandb import wandb_loggers

        if not self._due(trainer):
            return
        loggers = wandb_loggers(trainer.loggers)
        if not loggers or not self._pick_images(trainer):
            return
        model = rollout_backbone(pl_module)
        parameter = next(model.parameters(), None)
        images = self._images
        finish = getattr(trainer.datamodule, "device_finish", None)
        if images.dtype == torch.uint8:  # the model's input: the data module's eval normalization
            images = finish(False).normalize(images) if finish is not None else images.float() / 255.0
        images = images.to(
            device=parameter.device if parameter is not None else pl_module.device,
            dtype=parameter.dtype if parameter is not None and parameter.is_floating_point() else torch.float32,
        )
        try:
            maps = attention_rollout(model, images, head_fusion=self.head_fusion)
        except ValueError as error:
            self._disable(str(error))
            return
        overlays = self._overlays(trainer, model, images, maps)
        for logger in loggers:
            logger.log_metrics({LOG_KEY: overlays}, step=trainer.global_step)

    def _overlays(self, trainer: L.Trainer, model: nn.Module, images: Tensor, maps: Tensor) -> list:
        import wandb

        settings = getattr(trainer.datamodule, "transform_settings", None) if trainer.datamodule is not None else None
        pixels = denormalize(images, getattr(settings, "mean", None), getattr(settings, "std", None))
        captions = self._captions(trainer, model, images)
        return [
            wandb.Image(overlay_heatmap(enlarge(rgb), heat), caption=caption)
            for rgb, heat, caption in zip(pixels, maps.cpu(), captions)
        ]

    def _captions(self, trainer: L.Trainer, model: nn.Module, images: Tensor) -> list[str]:
        """`#i true <class> / pred <class> <probability>` per image (the prediction of the current weights)."""
        modes = {m: m.training for m in model.modules()}
        model.eval()
        try:
            with torch.no_grad():
                probabilities = model(images).float().softmax(dim=-1).cpu()
        finally:
            for module, training in modes.items():
                module.training = training
        classes = list(getattr(trainer.datamodule, "classes", None) or []) if trainer.datamodule is not None else []

        def name(index: int) -> str:
            return classes[index] if 0 <= index < len(classes) else str(index)

        captions = []
        for position, (label, row) in enumerate(zip(self._labels, probabilities)):
            top = int(row.argmax())
            truth = f"true {name(label)} / " if label >= 0 else ""
            captions.append(f"#{position} {truth}pred {name(top)} {float(row[top]):.2f}")
        return captions
