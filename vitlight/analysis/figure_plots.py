"""Matplotlib renderings of the ViT paper's Fig. 7 panels, from the tensors of `vitlight.analysis`.

Each function writes one PNG and returns its path; none computes anything about the model.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from torch import Tensor

__all__ = ["plot_attention_distance", "plot_components", "plot_position_similarity", "tile_images"]


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(figure, path: Path, dpi: int) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=dpi)
    _pyplot().close(figure)
    return path


def _component_image(component: np.ndarray) -> np.ndarray:
    """(C, P, P) filter weights -> (P, P, 3) or (P, P) in [0, 1], scaled to the filter's own range."""
    low, high = component.min(), component.max()
    scaled = (component - low) / max(high - low, 1e-12)
    return scaled[0] if scaled.shape[0] == 1 else np.moveaxis(scaled[:3], 0, -1)


def plot_components(components: Tensor, explained: Tensor, title: str, path: Path, columns: int = 7) -> Path:
    """Fig. 7 left: the principal components of the patch-embedding filters, a grid of small images."""
    plt = _pyplot()
    count = components.shape[0]
    rows = math.ceil(count / columns)
    figure, axes = plt.subplots(rows, columns, figsize=(columns * 0.9, rows * 0.9 + 0.5), squeeze=False)
    for index, axis in enumerate(axes.flat):
        axis.axis("off")
        if index < count:
            image = _component_image(components[index].numpy())
            axis.imshow(image, cmap="gray" if image.ndim == 2 else None, interpolation="nearest")
            axis.set_title(f"{100 * float(explained[index]):.0f}%", fontsize=6, pad=1)
    figure.suptitle(title, fontsize=8)
    figure.tight_layout(rect=(0, 0, 1, 0.95), pad=0.2)
    return _save(figure, path, dpi=100)


def plot_position_similarity(similarity: Tensor, grid: tuple[int, int], title: str, path: Path) -> Path:
    """Fig. 7 centre: for each patch position (row, column), the similarity of its embedding to every other's."""
    plt = _pyplot()
    rows, cols = grid
    size = min(0.5, 8.0 / max(rows, cols))
    figure, axes = plt.subplots(rows, cols, figsize=(cols * size + 1.2, rows * size + 0.8), squeeze=False)
    maps = similarity.numpy().reshape(rows * cols, rows, cols)
    image = None
    for index, axis in enumerate(axes.flat):
        image = axis.imshow(maps[index], vmin=-1, vmax=1, cmap="viridis", interpolation="nearest")
        axis.set_xticks([])
        axis.set_yticks([])
    for r in range(rows):
        axes[r, 0].set_ylabel(str(r + 1), fontsize=6, rotation=0, labelpad=6)
    for c in range(cols):
        axes[-1, c].set_xlabel(str(c + 1), fontsize=6)
    figure.supxlabel("Input patch column", fontsize=8)
    figure.supylabel("Input patch row", fontsize=8)
    figure.suptitle(title, fontsize=8)
    figure.subplots_adjust(left=0.08, right=0.86, bottom=0.08, top=0.92, wspace=0.08, hspace=0.08)
    bar = figure.add_axes((0.89, 0.2, 0.02, 0.6))
    figure.colorbar(image, cax=bar).set_label("cosine similarity", fontsize=7)
    return _save(figure, path, dpi=100)


def plot_attention_distance(distance: Tensor, image_size: tuple[int, int], title: str, path: Path) -> Path:
    """Fig. 7 right: mean attention distance (pixels) against block index, one dot per head."""
    plt = _pyplot()
    depth, heads = distance.shape
    figure, axis = plt.subplots(figsize=(4.5, 3.6))
    layers = np.arange(depth).repeat(heads)
    colours = np.tile(np.arange(heads), depth)
    axis.scatter(layers, distance.numpy().reshape(-1), c=colours, cmap="tab20", s=16, alpha=0.85)
    axis.set_xlabel("Network depth (layer)")
    axis.set_ylabel("Mean attention distance (pixels)")
    axis.set_xticks(range(depth))
    axis.set_ylim(0, math.hypot(*image_size) / 2)
    axis.grid(alpha=0.3)
    axis.set_title(title, fontsize=8)
    figure.tight_layout()
    return _save(figure, path, dpi=100)


def tile_images(images: list[np.ndarray], columns: int, gap: int = 2) -> np.ndarray:
    """uint8 (H, W, 3) images of one size laid out in rows of ``columns`` on white."""
    height, width = images[0].shape[:2]
    rows = math.ceil(len(images) / columns)
    canvas = np.full((rows * (height + gap) + gap, columns * (width + gap) + gap, 3), 255, np.uint8)
    for index, image in enumerate(images):
        top, left = gap + (index // columns) * (height + gap), gap + (index % columns) * (width + gap)
        canvas[top : top + height, left : left + width] = image
    return canvas
