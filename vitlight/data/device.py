"""The batch stage of the transforms, run on the device after the loader's uint8 batch arrives.

A task calls it from `on_after_batch_transfer`: classifiers take `finish(images)` (augment, then
normalized float32, then random erasing); ImageGPT takes `augment(images)` alone and tokenizes the
uint8 pixels. Random draws come from the device's global generator (saved in checkpoints by
vitlight.reliability.RandomStates, offset per rank), and nothing here waits for the device.
"""

from __future__ import annotations

import torch
from torch import Tensor

from vitlight.data.transforms import TransformSettings, random_crop_batch, random_flip_batch


class DeviceFinish:
    """uint8 (B, C, S, S) on any device -> augmented uint8, or normalized float32 (B, C, S, S)."""

    def __init__(self, settings: TransformSettings, train: bool) -> None:
        self.padding = settings.random_crop_padding if train and not settings.random_resized_crop else 0
        self.flip = train and settings.horizontal_flip
        self.erasing_probability = settings.random_erasing if train else 0.0
        mean = torch.tensor(settings.mean, dtype=torch.float32).view(1, -1, 1, 1)
        std = torch.tensor(settings.std, dtype=torch.float32).view(1, -1, 1, 1)
        self._affine = {torch.device("cpu"): (1.0 / (255.0 * std), mean / std)}  # x/255 - mean)/std = x*scale - shift
        self._erasing = {}

    def _constants(self, device: torch.device) -> tuple[Tensor, Tensor]:
        # copied to each device once, not every step (a host-to-device copy makes the host wait)
        if device not in self._affine:
            scale, shift = self._affine[torch.device("cpu")]
            self._affine[device] = (scale.to(device), shift.to(device))
        return self._affine[device]

    def augment(self, images: Tensor) -> Tensor:
        """Train-time pad-and-crop and horizontal flip of uint8 images; eval: unchanged."""
        if self.padding > 0:
            images = random_crop_batch(images, self.padding)
        if self.flip:
            images = random_flip_batch(images)
        return images

    def normalize(self, images: Tensor) -> Tensor:
        """uint8 (B, C, S, S) -> normalized float32 on the same device."""
        scale, shift = self._constants(images.device)
        return torch.addcmul(-shift, images.float(), scale)

    def erase(self, images: Tensor) -> Tensor:
        """timm's RandomErasing (per-pixel normal noise) on normalized images, as its prefetcher does."""
        if self.erasing_probability <= 0:
            return images
        if images.device not in self._erasing:
            from timm.data.random_erasing import RandomErasing

            self._erasing[images.device] = RandomErasing(
                self.erasing_probability, mode="pixel", device=str(images.device)
            )
        return self._erasing[images.device](images)

    def __call__(self, images: Tensor) -> Tensor:
        return self.erase(self.normalize(self.augment(images)))
