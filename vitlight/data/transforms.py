"""Transforms on uint8 (C, H, W) images, in two stages: one in the loader's workers, one on the device.

The sample stage (workers) brings each image to `image_size` (a resize, train-time
RandomResizedCrop, or timm's eval transform: resize to image_size / eval_crop_pct, centre crop) and
applies RandAugment, which needs PIL; when there is nothing random to do per image and the batch is
one tensor (cached pixels), it is one batched resize, or nothing at all at the stored size. Its
output stays uint8: a quarter of float32's bytes through pinned memory and PCIe. The batch stage
(vitlight.data.device, on the device after the transfer) does the CIFAR-style pad-and-crop, the
horizontal flip (each image its own random draw), the conversion to normalized float32 and random
erasing. Eval transforms are deterministic.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageOps
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as TF

from vitlight.data.crop_augment import crop_and_augment
from vitlight.errors import ConfigError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class TransformSettings:
    image_size: int
    channels: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    random_resized_crop: bool = False
    crop_scale_min: float = 0.08
    random_crop_padding: int = 0
    horizontal_flip: bool = False
    randaugment: str | None = None
    random_erasing: float = 0.0
    interpolation: str = "bilinear"
    eval_crop_pct: float | None = None


INTERPOLATIONS = ("bilinear", "bicubic")


def _interpolation_mode(name: str) -> v2.InterpolationMode:
    if name not in INTERPOLATIONS:
        raise ConfigError(f"data.interpolation must be one of {', '.join(INTERPOLATIONS)}, got {name!r}")
    return v2.InterpolationMode(name)


def _eval_crop(size: int, crop_pct: float, interpolation: str):
    """timm's eval transform (resize the short side to size / crop_pct, centre crop) on uint8 tensors:
    its prefetcher form ends in MaybePILToTensor, which passes tensors through unchanged."""
    from timm.data.transforms_factory import transforms_imagenet_eval

    if not 0.0 < crop_pct <= 1.0:
        raise ConfigError(
            f"data.eval_crop_pct must be in (0, 1] (DeiT: 0.875, i.e. resize 256 then crop 224), got {crop_pct}"
        )
    return transforms_imagenet_eval(img_size=size, crop_pct=crop_pct, interpolation=interpolation, use_prefetcher=True)


def _posterize(image: Image.Image, bits_to_keep: int, **_: object) -> Image.Image:
    """timm's posterize, where keeping 0 bits gives a black image as in timm's reference (RandAugment's
    'inc1' policies reach 0 at magnitude 10, e.g. m9 + mstd0.5): Pillow >= 12 refuses bits < 1."""
    if bits_to_keep >= 8:
        return image
    if bits_to_keep < 1:
        return Image.new(image.mode, image.size)
    return ImageOps.posterize(image, bits_to_keep)


class _RandAugmentTensor:
    """timm's RandAugment (a PIL policy) on uint8 (C, H, W) tensors: one HWC copy into PIL and one
    back (v2.ToPILImage costs about 0.2 ms more per 224 px image; the pixels are the same)."""

    def __init__(self, policy) -> None:
        self.policy = policy

    def __call__(self, image: torch.Tensor) -> torch.Tensor:
        pil = Image.fromarray(np.ascontiguousarray(image.permute(1, 2, 0).numpy()))
        return torch.from_numpy(np.array(self.policy(pil), dtype=np.uint8)).permute(2, 0, 1)


def _randaugment(config: str, channels: int) -> _RandAugmentTensor:
    from timm.data import auto_augment
    from timm.data.auto_augment import rand_augment_transform

    if channels != 3:
        raise ConfigError("data.randaugment needs 3-channel images; set data.channels: 3")
    try:
        pil_policy = rand_augment_transform(config, {"translate_const": 10, "img_mean": (124, 116, 104)})
    except Exception as error:  # timm raises AssertionError/ValueError on a malformed string
        raise ConfigError(
            f"data.randaugment {config!r} is not a timm RandAugment string such as 'rand-m9-mstd0.5' ({error})"
        ) from None
    for op in pil_policy.ops:
        if op.aug_fn is auto_augment.posterize:
            op.aug_fn = _posterize
    return _RandAugmentTensor(pil_policy)


def match_channels(images: torch.Tensor, channels: int) -> torch.Tensor:
    """uint8 (..., C, H, W) with C in (1, 3) -> `channels` channels (grey repeated, or RGB to luma)."""
    have = images.shape[-3]
    if have == channels:
        return images
    if have == 1:
        return images.expand(*images.shape[:-3], 3, *images.shape[-2:])
    weights = torch.tensor([0.299, 0.587, 0.114]).view(3, 1, 1)
    return (images.float() * weights).sum(-3, keepdim=True).round().clamp(0, 255).to(torch.uint8)


def random_crop_batch(images: torch.Tensor, padding: int) -> torch.Tensor:
    """Pads (B, C, H, W) by reflection and crops each image back to (H, W) at its own random offset.

    One gather on the images' device, offsets drawn there too: nothing waits for the device.
    """
    b, c, height, width = images.shape
    padded = F.pad(images, (padding, padding, padding, padding), mode="reflect")
    offsets = torch.randint(0, 2 * padding + 1, (b, 2), device=images.device)  # (B, 2) top, left
    rows = offsets[:, :1] + torch.arange(height, device=images.device)  # (B, H)
    cols = offsets[:, 1:] + torch.arange(width, device=images.device)  # (B, W)
    batch = torch.arange(b, device=images.device).view(b, 1, 1, 1)
    channel = torch.arange(c, device=images.device).view(1, c, 1, 1)
    return padded[batch, channel, rows.view(b, 1, height, 1), cols.view(b, 1, 1, width)]


def random_flip_batch(images: torch.Tensor) -> torch.Tensor:
    """Flips each image of (B, C, H, W) left-right with probability 1/2 (drawn on the images' device)."""
    flip = torch.rand(images.shape[0], device=images.device) < 0.5
    return torch.where(flip.view(-1, 1, 1, 1), images.flip(-1), images)


class Pipeline:
    """The workers' part of the train or eval transform (the sample stage); uint8 in, uint8 out."""

    def __init__(self, settings: TransformSettings, train: bool) -> None:
        self.size = settings.image_size
        self.interpolation = _interpolation_mode(settings.interpolation)
        self.crop = None
        if train and settings.random_resized_crop:
            self.crop = v2.RandomResizedCrop(
                self.size, scale=(settings.crop_scale_min, 1.0), interpolation=self.interpolation, antialias=True
            )
        self.eval_crop = None
        if not train and settings.eval_crop_pct is not None:
            self.eval_crop = _eval_crop(self.size, settings.eval_crop_pct, settings.interpolation)
        self.randaugment = (
            _randaugment(settings.randaugment, settings.channels) if train and settings.randaugment else None
        )

    @property
    def per_image(self) -> bool:
        """Whether the sample stage has a random step that each image must draw for itself."""
        return self.crop is not None or self.randaugment is not None

    def _fit(self, images: torch.Tensor) -> torch.Tensor:
        if self.eval_crop is not None:
            return self.eval_crop(images)
        if tuple(images.shape[-2:]) == (self.size, self.size):
            return images
        return TF.resize(images, [self.size, self.size], interpolation=self.interpolation, antialias=True)

    def sample_stage(self, images: torch.Tensor | list[torch.Tensor]) -> torch.Tensor:
        """uint8 (B, C, H, W) tensor or list of (C, h, w) -> uint8 (B, C, S, S)."""
        if isinstance(images, torch.Tensor) and not self.per_image:
            return self._fit(images)
        if self.crop is not None and isinstance(self.randaugment, _RandAugmentTensor):  # DeiT's: one pass, same pixels
            return crop_and_augment(list(images), self.crop, self.randaugment.policy, self.interpolation)
        out = []
        for image in images:
            image = self.crop(image) if self.crop is not None else self._fit(image)
            out.append(self.randaugment(image) if self.randaugment is not None else image)
        return torch.stack(out)
