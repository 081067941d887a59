"""Pixels for ImageGPT: palettes fitted once per dataset, and fast tokens from uint8 pixels.

The data modules serve uint8 images, which iGPT tokenizes as they are. `data_palette` fits a
k-means palette on pixels sampled from a data module's training pool (independent of
train_size), caches it under the vitlight cache folder and returns the cached copy on later
runs. `Tokenizer` quantizes pixels through a table indexed by colour, so a batch costs one lookup.
"""

from __future__ import annotations

import hashlib
import logging
import math
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from vitlight.errors import ConfigError, DataError
from vitlight.models.palette import Palette

log = logging.getLogger(__name__)

PALETTE_KINDS = ("kmeans", "uniform")
PALETTE_FOLDER = "palettes"


def build_palette(kind: str, size: int, channels: int, pixels: Tensor | None = None, seed: int = 0) -> Palette:
    """A palette of exactly ``size`` entries: k-means on ``pixels`` (P, C) or uniform bins."""
    check_palette_settings(kind, size, channels)
    if kind == "uniform":
        if channels == 1:
            return Palette.grey(size)
        return Palette.uniform(round(size ** (1 / 3)))
    palette = Palette.fit_kmeans(pixels, k=size, seed=seed)
    if palette.size < size:
        # Fewer distinct colours than entries: repeat the last centre. Ties go to the first index,
        # so the copies are never chosen, and the model's vocabulary keeps its configured size.
        log.info("palette: only %d distinct colours for %d entries; padding", palette.size, size)
        pad = palette.centers[-1:].expand(size - palette.size, -1)
        palette = Palette(torch.cat([palette.centers, pad]), kind="kmeans")
    return palette


def check_palette_settings(kind: str, size: int, channels: int) -> None:
    if kind not in PALETTE_KINDS:
        raise ConfigError(f"model.palette must be one of {', '.join(PALETTE_KINDS)}, got {kind!r}")
    if size < 2:
        raise ConfigError(f"model.palette_size must be at least 2, got {size}")
    if channels == 1 and size > 256:
        raise ConfigError(
            f"model.palette_size={size} is more than the 256 grey levels of 1-channel data; use at most 256"
        )
    if kind == "uniform" and channels == 3 and round(size ** (1 / 3)) ** 3 != size:
        levels = max(round(size ** (1 / 3)), 2)
        raise ConfigError(
            f"a uniform RGB palette has levels**3 entries; palette_size={size} is not a cube "
            f"(e.g. {(levels - 1) ** 3}, {levels**3} or {(levels + 1) ** 3})"
        )


# ----- pixels of a data module ------------------------------------------------------------


def channels_last(images: Tensor) -> Tensor:
    """uint8 (B, C, H, W) as the loaders serve them -> (B, H, W, C) as palettes take them."""
    return images.permute(0, 2, 3, 1)


def split_pixels(
    datamodule: Any, split: str, indices: np.ndarray | None = None, count: int | None = None
) -> tuple[Tensor, Tensor]:
    """uint8 pixels (n, S, S, C) and labels (n,) of a data module's split, as the model sees them at eval
    (the eval transform: resized to image_size, channels matched)."""
    datamodule.setup()
    dataset = datamodule.dataset(split, train_transform=False)
    if indices is None:
        # ``count`` images spread evenly over the split (splits are often sorted by class)
        total = len(dataset)
        indices = (
            np.arange(total)
            if count is None or count >= total
            else np.linspace(0, total - 1, count).round().astype(np.int64)
        )
    pixels, labels = [], []
    for start in range(0, len(indices), 512):
        items = dataset.__getitems__([int(i) for i in indices[start : start + 512]])
        pixels.append(channels_last(torch.stack([image for image, _ in items])))
        labels.append(torch.tensor([label for _, label in items], dtype=torch.long))
    if not pixels:
        raise DataError(f"the {split} split has no images")
    return torch.cat(pixels), torch.cat(labels)


def _pool_pixels(datamodule: Any, n_images: int, seed: int) -> Tensor:
    """uint8 (n, S, S, C): up to ``n_images`` images drawn (seeded) from the whole training pool."""
    from vitlight.data.base import SplitDataset
    from vitlight.data.transforms import Pipeline

    pool = datamodule.load_split("train")
    if pool is None or len(pool) == 0:
        raise DataError(f"{type(datamodule).__name__}: no training images to fit a palette on")
    rng = np.random.default_rng(seed)
    chosen = np.sort(rng.choice(len(pool), size=min(n_images, len(pool)), replace=False))
    dataset = SplitDataset(pool, Pipeline(datamodule.transform_settings, train=False), datamodule.channels)
    blocks = []
    for start in range(0, len(chosen), 512):
        items = dataset.__getitems__([int(i) for i in chosen[start : start + 512]])
        blocks.append(channels_last(torch.stack([image for image, _ in items])))
    return torch.cat(blocks)


def palette_cache_name(datamodule: Any, kind: str, size: int, seed: int, n_images: int, n_pixels: int) -> str:
    """`<Dataset>-<kind><size>-seed<seed>-<digest>.pt`; the digest covers where the data is and its shape."""
    data_dir = getattr(datamodule, "data_dir", None)
    where = str(Path(data_dir).expanduser().resolve()) if data_dir else ""
    parts = [type(datamodule).__name__, where, datamodule.image_size, datamodule.channels, n_images, n_pixels, 1]
    digest = hashlib.sha256("|".join(map(str, parts)).encode()).hexdigest()[:12]
    return f"{type(datamodule).__name__}-{kind}{size}-seed{seed}-{digest}.pt"


def data_palette(
    datamodule: Any,
    kind: str = "kmeans",
    size: int = 512,
    seed: int = 0,
    n_images: int = 5000,
    n_pixels: int = 200_000,
) -> Palette:
    """The palette of a data module: uniform bins, or k-means fitted once and cached.

    k-means sees ``n_pixels`` pixels drawn from ``n_images`` training-pool images (both seeded),
    at the model's image_size and channels. The cache key is the dataset, its folder, image
    size, channels, kind, size, seed and sample sizes -- not train_size, so every subset of one
    dataset shares one palette.
    """
    channels = datamodule.channels
    if kind == "uniform":
        return build_palette(kind, size, channels)
    check_palette_settings(kind, size, channels)
    from vitlight.data.cache import cache_root

    path = cache_root() / PALETTE_FOLDER / palette_cache_name(datamodule, kind, size, seed, n_images, n_pixels)
    if path.is_file():
        try:
            return Palette.load(path)
        except (OSError, ValueError, RuntimeError) as error:
            log.info("palette cache %s is unreadable (%s); fitting again", path, error)
    pixels = Palette.sample_pixels(_pool_pixels(datamodule, n_images, seed), n_pixels, seed=seed)
    log.info(
        "fitting a %d-colour k-means palette on %d pixels of %s (cached in %s)",
        size,
        len(pixels),
        type(datamodule).__name__,
        path,
    )
    palette = build_palette(kind, size, channels, pixels, seed)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".tmp{torch.randint(10**9, ()).item()}")
        palette.save(tmp)
        tmp.replace(path)
    except OSError as error:
        log.info("cannot cache the palette in %s (%s)", path, error)
    return palette


# ----- quantization with a memo table ------------------------------------------------------


class Tokenizer:
    """uint8 pixels -> palette tokens, exact, through a table of 256**C entries indexed by colour.

    On a GPU, and for grey pixels anywhere, the table is complete: every colour is quantized once
    when the tokenizer first meets the device (16.7M colours for RGB: milliseconds on a GPU), so a
    batch is one lookup and the step never waits for the device. RGB on the CPU fills the table
    as colours appear (quantizing 16.7M colours there takes seconds; nothing waits on a CPU).
    The table takes 32 MiB (int16) for RGB and lives on the device of the pixels it last saw.
    """

    def __init__(self, palette: Palette) -> None:
        self.palette = palette
        self.table: Tensor | None = None
        self.complete = False

    def _new_table(self, channels: int, device: torch.device) -> None:
        dtype = torch.int16 if self.palette.size <= 2**15 else torch.int32
        self.complete = channels == 1 or device.type != "cpu"
        if not self.complete:
            self.table = torch.full((256**channels,), -1, dtype=dtype, device=device)
            return
        codes = torch.arange(256**channels, device=device)
        colours = torch.stack([(codes // 256 ** (channels - 1 - i)) % 256 for i in range(channels)], dim=1)
        self.table = self.palette.quantize(colours.to(torch.uint8).view(1, -1, 1, channels)).view(-1).to(dtype)

    def __call__(self, pixels: Tensor) -> Tensor:
        """uint8 (B, H, W, C) -> int64 tokens (B, H*W)."""
        pixels = self.palette.check_fits(pixels)
        b, h, w, c = pixels.shape
        if self.table is None or self.table.device != pixels.device:
            self._new_table(c, pixels.device)
        flat = pixels.reshape(-1, c).long()
        codes = flat[:, 0]
        for channel in range(1, c):
            codes = codes * 256 + flat[:, channel]  # (P,) packed colour
        tokens = self.table[codes]
        if not self.complete:
            missing = tokens < 0
            if missing.any():
                new = torch.unique(codes[missing])
                colours = torch.stack([(new // 256 ** (c - 1 - i)) % 256 for i in range(c)], dim=1)
                found = self.palette.quantize(colours.to(torch.uint8).view(1, -1, 1, c)).view(-1)
                self.table[new] = found.to(self.table.dtype)
                tokens = self.table[codes]
        return tokens.long().view(b, h * w)


def bits_per_token(nats_per_token: Tensor | float) -> Tensor | float:
    """Bits per token from a mean negative log-likelihood in nats per token: nats / ln 2.

    One token is one pixel's palette colour (3 sub-pixels), so this is not bits per sub-pixel
    dimension of the 8-bit image (see docs/imagegpt.md).
    """
    return nats_per_token / math.log(2.0)
