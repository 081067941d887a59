"""IDX files of MNIST and Fashion-MNIST (gzipped or not), e.g. Debian's /usr/share/datasets/fashion-mnist.

File names: train-images-idx3-ubyte, train-labels-idx1-ubyte, t10k-images-idx3-ubyte,
t10k-labels-idx1-ubyte, each optionally ending in .gz (a "." before "idx" is accepted too).
Searched in the folder itself, its raw/ and torchvision's <Name>/raw/.
"""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np

from vitlight.data.base import SplitData
from vitlight.data.readers import SourceSplit
from vitlight.errors import DataError

STEMS = {"train": ("train-images", "train-labels"), "test": ("t10k-images", "t10k-labels")}
SUBFOLDERS = ("", "raw", "MNIST/raw", "FashionMNIST/raw")


def read_idx(path: Path) -> np.ndarray:
    """An IDX file of unsigned bytes -> uint8 array of the shape its header gives."""
    try:
        with (gzip.open if path.suffix == ".gz" else open)(path, "rb") as file:
            data = file.read()
    except (OSError, EOFError) as error:
        raise DataError(f"{path} cannot be read ({type(error).__name__}: {error})") from None
    if len(data) < 4 or data[:3] != b"\x00\x00\x08":
        raise DataError(f"{path} is not an IDX file of unsigned bytes (its header is {data[:4].hex() or 'empty'})")
    ndim = data[3]
    if len(data) < 4 + 4 * ndim:
        raise DataError(f"{path} is truncated inside its header")
    dims = struct.unpack(f">{ndim}I", data[4 : 4 + 4 * ndim])
    body = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim)
    if body.size != int(np.prod(dims)):
        raise DataError(
            f"{path} is truncated: it holds {body.size} bytes of data, its header promises {int(np.prod(dims))}"
        )
    return body.reshape(dims)


def _find(folder: Path, stem: str, rank: int) -> Path | None:
    for name in (f"{stem}-idx{rank}-ubyte", f"{stem}.idx{rank}-ubyte"):
        for suffix in ("", ".gz"):
            if (folder / (name + suffix)).is_file():
                return folder / (name + suffix)
    return None


def find_idx(root: Path, num_classes: int) -> dict[str, SourceSplit] | None:
    """The train and test IDX pairs under `root`, or None when there are no training images there."""
    folder = next((root / sub for sub in SUBFOLDERS if _find(root / sub, STEMS["train"][0], 3)), None)
    if folder is None:
        return None
    folder = folder.resolve()
    sources = {}
    for split, (image_stem, label_stem) in STEMS.items():
        images_path, labels_path = _find(folder, image_stem, 3), _find(folder, label_stem, 1)
        if images_path is None or labels_path is None:
            missing = f"{image_stem}-idx3-ubyte" if images_path is None else f"{label_stem}-idx1-ubyte"
            raise DataError(f"{folder / missing}[.gz] is missing (the {split} split of the IDX files in {folder})")

        def load(images_path=images_path, labels_path=labels_path) -> SplitData:
            images, labels = read_idx(images_path), read_idx(labels_path).astype(np.int64)
            if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
                raise DataError(
                    f"{images_path} ({images.shape}) and {labels_path} ({labels.shape}) do not pair up as images and labels"
                )
            bad = np.flatnonzero(labels >= num_classes)
            if len(bad):
                raise DataError(
                    f"{labels_path}: label {labels[bad[0]]} (image {bad[0]}) is outside 0..{num_classes - 1} (num_classes={num_classes})"
                )
            return SplitData(labels=labels, images=images[:, :, :, None], origin=str(images_path))

        sources[split] = SourceSplit(
            origin=str(images_path), files=[str(images_path), str(labels_path)], load=load, decoded=True
        )
    return sources
