"""The one place where vitlight's figure code turns images into what a model eats.

Data modules hand over either uint8 pixels or images already normalised for the model;
everything in `vitlight figures` and the Fig. 7 callback goes through :func:`model_input`,
so a change of who normalises (the loader or the device) is adapted here alone.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

__all__ = ["model_input"]


def model_input(images: Tensor, mean: Sequence[float], std: Sequence[float], channels_last: bool = False) -> Tensor:
    """Images -> normalised float32 (B, C, H, W) for the model.

    Args:
        images: uint8 pixels in [0, 255], (B, C, H, W), or (B, H, W, C) with ``channels_last``;
            float images are taken as already normalised and returned as float32 (B, C, H, W).
        mean, std: per-channel statistics on the [0, 1] scale, as the data module normalises with.
    """
    if channels_last:
        images = images.permute(0, 3, 1, 2)  # (B, H, W, C) -> (B, C, H, W)
    if images.dtype != torch.uint8:
        return images.float().contiguous()
    m = torch.tensor(tuple(mean), dtype=torch.float32, device=images.device).view(1, -1, 1, 1)
    s = torch.tensor(tuple(std), dtype=torch.float32, device=images.device).view(1, -1, 1, 1)
    return ((images.float() / 255.0 - m) / s).contiguous()
