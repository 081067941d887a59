"""RandomResizedCrop followed by RandAugment, image by image, with the fewest copies between layouts.

The same draws and the same pixels as torchvision's v2.RandomResizedCrop on a (C, H, W) tensor
followed by timm's RandAugment behind a ToPILImage / PILToTensor round trip (tests/data/test_crop_augment.py
checks both), for less CPU time per image:

- the crop's parameters come from the same generator calls as v2's `make_params`, without its
  input inspection;
- the crop goes to torchvision's resize in channels-last memory, so the result is an (H, W, C) image,
  which PIL takes with one packing copy (a (C, H, W) one costs a transposing copy first);
- the augmented PIL image is written band by band into the batch's (B, C, S, S) array (no HWC
  array, no transposing stack).
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as TF

BANDS = ("R", "G", "B")


def crop_params(crop: v2.RandomResizedCrop, height: int, width: int) -> tuple[int, int, int, int]:
    """(top, left, height, width) of v2.RandomResizedCrop's next crop of a `height` x `width` image:
    the generator calls of its `make_params`, in its order, so the draws and the crops are the same."""
    area = height * width
    low, high = float(crop._log_ratio[0]), float(crop._log_ratio[1])
    for _ in range(10):
        target_area = area * torch.empty(1).uniform_(crop.scale[0], crop.scale[1]).item()
        aspect_ratio = torch.exp(torch.empty(1).uniform_(low, high)).item()
        w = int(round(math.sqrt(target_area * aspect_ratio)))
        h = int(round(math.sqrt(target_area / aspect_ratio)))
        if 0 < w <= width and 0 < h <= height:
            top = torch.randint(0, height - h + 1, size=(1,)).item()
            left = torch.randint(0, width - w + 1, size=(1,)).item()
            return top, left, h, w
    in_ratio = width / height  # ten misses: the central crop, as torchvision falls back
    if in_ratio < min(crop.ratio):
        w, h = width, int(round(width / min(crop.ratio)))
    elif in_ratio > max(crop.ratio):
        w, h = int(round(height * max(crop.ratio))), height
    else:
        w, h = width, height
    return (height - h) // 2, (width - w) // 2, h, w


def resized_crop_hwc(
    image: torch.Tensor, box: tuple[int, int, int, int], size: int, interpolation: v2.InterpolationMode
) -> np.ndarray:
    """uint8 (size, size, C) of the (top, left, height, width) `box` of uint8 `image` (C, H, W): TF.resize's
    pixels. The crop goes in as a fresh channels-last copy, which the uint8 kernels take faster and answer
    in kind, so the result is already (H, W, C) in memory."""
    top, left, h, w = box
    part = image[:, top : top + h, left : left + w].unsqueeze(0).contiguous(memory_format=torch.channels_last)
    if (h, w) == (size, size):
        resized = part
    elif interpolation == v2.InterpolationMode.BICUBIC and part.stride(0) == part.numel():
        # what TF.resize runs for uint8 bicubic on the CPU (its native uint8 kernel), without its checks
        resized = F.interpolate(part, size=[size, size], mode="bicubic", align_corners=False, antialias=True)
    else:
        resized = TF.resize(part, [size, size], interpolation=interpolation, antialias=True)
    return np.ascontiguousarray(resized[0].permute(1, 2, 0).numpy())  # a view where the result is channels-last


def write_planar(image: Image.Image, out: np.ndarray) -> None:
    """Writes an RGB PIL image into uint8 `out` (3, H, W), one band at a time."""
    height, width = out.shape[1:]
    for channel, band in enumerate(BANDS):
        out[channel] = np.frombuffer(image.tobytes("raw", band), dtype=np.uint8).reshape(height, width)


def crop_and_augment(
    images: list[torch.Tensor], crop: v2.RandomResizedCrop, policy, interpolation: v2.InterpolationMode
) -> torch.Tensor:
    """uint8 (B, 3, S, S): each uint8 (3, H, W) image cropped (its own draw), resized and augmented by the
    timm PIL `policy`, in order, image by image, as v2 crop then RandAugment would draw them."""
    size = crop.size[0]
    out = np.empty((len(images), 3, size, size), dtype=np.uint8)
    for index, image in enumerate(images):
        box = crop_params(crop, int(image.shape[-2]), int(image.shape[-1]))
        pixels = resized_crop_hwc(image, box, size, interpolation)
        augmented = policy(Image.frombuffer("RGB", (size, size), pixels, "raw", "RGB", 0, 1))
        write_planar(augmented, out[index])
    return torch.from_numpy(out)
