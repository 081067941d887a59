"""Decoding encoded images (files or bytes) to uint8 arrays, and the bad-file policy.

An image source is a path (str) or the encoded bytes themselves (a hub dataset's image
column). Unreadable sources are skipped with one warning that counts them; more than
`MAX_BAD_FRACTION` of a split unreadable is an error.
"""

from __future__ import annotations

import io
import warnings
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch
from PIL import Image

from vitlight.errors import DataError

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm", ".pgm"})
MAX_BAD_FRACTION = 0.01
GREY_MODES = ("L", "I", "I;16", "1", "F")
JPEG_MAGIC = b"\xff\xd8\xff"


class DataWarning(UserWarning):
    """Data that was usable after skipping or fixing something (unreadable files, odd sizes)."""


def _open(source: str | bytes) -> Image.Image:
    return Image.open(io.BytesIO(source) if isinstance(source, (bytes, bytearray, memoryview)) else source)


def decode_image(source: str | bytes, channels: int | None = None) -> np.ndarray:
    """Decodes one image to uint8 (H, W, C).

    channels: 3 (RGB), 1 (grey) or None (grey images stay grey, everything else becomes RGB).
    JPEGs go to torchvision's libjpeg-turbo binding, which gives PIL's pixels for about 25 % less
    CPU time (no PIL image object, no conversion copy); other formats, and JPEGs it cannot give in
    the channels asked (CMYK, grey asked of colour), go to PIL.
    """
    data = source if isinstance(source, (bytes, bytearray, memoryview)) else _read(source)
    array = _decode_jpeg(data, channels)
    return array if array is not None else decode_image_pil(bytes(data), channels)


def _read(path: str) -> bytes:
    with open(path, "rb") as stream:
        return stream.read()


def _decode_jpeg(data: bytes | bytearray | memoryview, channels: int | None) -> np.ndarray | None:
    """uint8 (H, W, C) of a JPEG with 1 or 3 channels as asked, else None (not a JPEG, or PIL's job)."""
    if bytes(data[:3]) != JPEG_MAGIC:
        return None
    from torchvision.io import ImageReadMode, decode_jpeg

    try:
        image = decode_jpeg(torch.frombuffer(bytearray(data), dtype=torch.uint8), mode=ImageReadMode.UNCHANGED)
    except RuntimeError:  # corrupt, or a variant it does not read: PIL decides
        return None
    have = int(image.shape[0])
    if have not in (1, 3) or (channels is not None and have != channels):
        return None
    return image.permute(1, 2, 0).numpy()  # (H, W, C) view of the (C, H, W) tensor


def decode_image_pil(source: str | bytes, channels: int | None = None) -> np.ndarray:
    """decode_image by PIL alone (every format; vitlight's decoder for JPEGs before issue 24)."""
    with _open(source) as image:
        grey = image.mode in GREY_MODES if channels is None else channels == 1
        array = np.array(image.convert("L" if grey else "RGB"), dtype=np.uint8)  # a writable copy
    return array[:, :, None] if array.ndim == 2 else array


def header_size(source: str | bytes) -> tuple[int, int]:
    """(height, width) read from the header only."""
    with _open(source) as image:
        width, height = image.size
    return height, width


def describe(sources: Sequence, index: int, origin: str) -> str:
    """A name for one source in messages: its path, or its row in `origin`."""
    item = sources[index]
    return item if isinstance(item, str) else f"{origin} (row {index})"


def fit_size(array: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resizes uint8 (H, W, C) to `size` (H, W) with bicubic interpolation (a no-op at that size)."""
    if array.shape[:2] == tuple(size):
        return array
    channels = array.shape[2]
    image = Image.fromarray(array[:, :, 0] if channels == 1 else array)
    resized = np.asarray(image.resize((size[1], size[0]), Image.BICUBIC), dtype=np.uint8)
    return resized.reshape(size[0], size[1], channels)


def unreadable_headers(sources: Sequence, threads: int = 8) -> list[tuple[int, str]]:
    """Indices (with the error) of sources whose header cannot be read; threaded, since it is I/O bound."""

    def check(index: int) -> tuple[int, str] | None:
        try:
            header_size(sources[index])
        except Exception as error:
            return index, f"{type(error).__name__}: {error}"
        return None

    with ThreadPoolExecutor(max_workers=threads) as pool:
        return [bad for bad in pool.map(check, range(len(sources)), chunksize=256) if bad is not None]


def common_size(sources: Sequence, samples: int = 16) -> tuple[int, int] | None:
    """The (H, W) that a spread of sampled headers share, or None when they differ or none can be read."""
    if len(sources) == 0:
        return None
    picks = np.unique(np.linspace(0, len(sources) - 1, num=min(samples, len(sources))).round().astype(int))
    sizes = set()
    for index in picks:
        try:
            sizes.add(header_size(sources[int(index)]))
        except Exception:
            continue
    return sizes.pop() if len(sizes) == 1 else None


def report_unreadable(owner: str, origin: str, bad: list[str], total: int) -> None:
    """Warns once about skipped images; raises DataError when more than 1% of `total` are bad.

    `bad` holds one "name: error" line per unreadable image.
    """
    if not bad:
        return
    if len(bad) > MAX_BAD_FRACTION * total:
        raise DataError(
            f"{owner}: {len(bad)} of {total} images in {origin} cannot be read (more than "
            f"{MAX_BAD_FRACTION:.0%}); first: {bad[0]}"
        )
    warnings.warn(
        f"{owner}: skipped {len(bad)} unreadable image(s) of {total} in {origin}; first: {bad[0]}",
        DataWarning,
        stacklevel=2,
    )
