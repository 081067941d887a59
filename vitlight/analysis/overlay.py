"""Blend heatmaps (e.g. attention rollout maps) onto images and save them as PNGs.

Uses ``matplotlib.colormaps`` only, never pyplot, so it runs headless with no backend.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib
import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import Tensor

__all__ = ["overlay_heatmap", "save_overlays"]


def _as_uint8_hwc(image: np.ndarray | Tensor) -> np.ndarray:
    array = image.detach().cpu().numpy() if isinstance(image, Tensor) else np.asarray(image)
    if array.ndim != 3 or array.shape[-1] != 3:
        raise ValueError(f"image must be (H, W, 3); got shape {array.shape}")
    if array.dtype != np.uint8:
        raise ValueError(f"image must be uint8 in [0, 255]; got dtype {array.dtype}")
    return array


def overlay_heatmap(
    image: np.ndarray | Tensor,
    heatmap: Tensor | np.ndarray,
    alpha: float = 0.5,
    cmap: str = "jet",
) -> np.ndarray:
    """Colour ``heatmap`` and blend it onto ``image``.

    Args:
        image: ``(H, W, 3)`` uint8 RGB, numpy array or tensor.
        heatmap: ``(gh, gw)`` map, e.g. one attention-rollout map. It is upsampled
            bilinearly to ``(H, W)``, divided by its maximum (so 0 stays 0) and clipped
            to ``[0, 1]`` before the colormap is applied.
        alpha: weight of the coloured heatmap; 0 returns the image, 1 only the heatmap.
        cmap: any name in ``matplotlib.colormaps``.

    Returns:
        ``(H, W, 3)`` uint8 RGB numpy array.
    """
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1]; got {alpha!r}")
    if cmap not in matplotlib.colormaps:
        raise ValueError(f"cmap must be a matplotlib colormap name; got {cmap!r}")
    rgb = _as_uint8_hwc(image)
    heat = torch.as_tensor(heatmap).detach().float().cpu()
    if heat.dim() != 2:
        raise ValueError(f"heatmap must be (gh, gw); got shape {tuple(heat.shape)}")

    height, width = rgb.shape[:2]
    # (gh, gw) -> (1, 1, gh, gw) -> (H, W)
    heat = F.interpolate(heat[None, None], size=(height, width), mode="bilinear", align_corners=False)[0, 0]
    peak = heat.max()
    if peak > 0:
        heat = heat / peak
    heat = heat.clamp(0.0, 1.0).numpy()

    colored = matplotlib.colormaps[cmap](heat)[..., :3] * 255.0  # (H, W, 4) RGBA in [0, 1] -> RGB
    blended = (1.0 - alpha) * rgb.astype(np.float64) + alpha * colored
    return np.clip(np.rint(blended), 0, 255).astype(np.uint8)


def save_overlays(
    images: Sequence[np.ndarray | Tensor] | Tensor,
    maps: Sequence[Tensor | np.ndarray] | Tensor,
    out_dir: str | Path,
    names: Sequence[str],
    alpha: float = 0.5,
    cmap: str = "jet",
) -> list[Path]:
    """Write one ``<name>.png`` overlay per (image, map) pair into ``out_dir``.

    Args:
        images: ``(H, W, 3)`` uint8 images, or a ``(B, H, W, 3)`` uint8 tensor.
        maps: ``(gh, gw)`` heatmaps, or a ``(B, gh, gw)`` tensor such as
            :func:`vitlight.analysis.attention_rollout.attention_rollout` returns.
        out_dir: created if missing.
        names: file names; ``.png`` is appended when missing.

    Returns:
        The written paths, in input order.
    """
    if not (len(images) == len(maps) == len(names)):
        raise ValueError(
            f"images, maps and names must have the same length; got {len(images)}, {len(maps)}, {len(names)}"
        )
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for image, heatmap, name in zip(images, maps, names):
        path = out / (name if name.lower().endswith(".png") else f"{name}.png")
        Image.fromarray(overlay_heatmap(image, heatmap, alpha=alpha, cmap=cmap)).save(path)
        paths.append(path)
    return paths
