"""The binary forms torchvision downloads for STL-10 (`stl10_binary/*.bin`) and SVHN (`*_32x32.mat`)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from vitlight.data.base import SplitData
from vitlight.data.readers import SourceSplit
from vitlight.errors import DataError

STL10_SIDE = 96


def _check(labels: np.ndarray, num_classes: int, path: Path) -> np.ndarray:
    bad = np.flatnonzero((labels < 0) | (labels >= num_classes))
    if len(bad):
        raise DataError(
            f"{path}: label {labels[bad[0]]} (image {bad[0]}) is outside 0..{num_classes - 1} (num_classes={num_classes})"
        )
    return labels


def read_stl10(images_path: Path, labels_path: Path, num_classes: int) -> SplitData:
    """uint8 images stored (N, 3, 96, 96) column-major, labels 1..10 as uint8."""
    raw = np.fromfile(images_path, dtype=np.uint8)
    if raw.size % (3 * STL10_SIDE * STL10_SIDE):
        raise DataError(f"{images_path} is truncated: {raw.size} bytes is not a whole number of 3x96x96 images")
    images = raw.reshape(-1, 3, STL10_SIDE, STL10_SIDE).transpose(0, 3, 2, 1)  # -> (N, H, W, C)
    labels = np.fromfile(labels_path, dtype=np.uint8).astype(np.int64) - 1
    if len(labels) != len(images):
        raise DataError(f"{images_path} has {len(images)} images but {labels_path} has {len(labels)} labels")
    return SplitData(labels=_check(labels, num_classes, labels_path), images=images, origin=str(images_path))


def find_stl10(root: Path, num_classes: int) -> dict[str, SourceSplit] | None:
    folder = next((f for f in (root, root / "stl10_binary") if (f / "train_X.bin").is_file()), None)
    if folder is None:
        return None
    folder = folder.resolve()
    sources = {}
    for split in ("train", "test"):
        images_path, labels_path = folder / f"{split}_X.bin", folder / f"{split}_y.bin"
        for path in (images_path, labels_path):
            if not path.is_file():
                raise DataError(f"STL10 file {path} is missing")
        sources[split] = SourceSplit(
            origin=str(images_path),
            files=[str(images_path), str(labels_path)],
            load=lambda i=images_path, l=labels_path: read_stl10(i, l, num_classes),
            decoded=True,
        )
    return sources


def read_svhn(path: Path, num_classes: int) -> SplitData:
    """X uint8 (32, 32, 3, N), y (N, 1) with the digit 0 stored as 10."""
    try:
        from scipy.io import loadmat

        mat = loadmat(path)
        images = np.ascontiguousarray(np.asarray(mat["X"], dtype=np.uint8).transpose(3, 0, 1, 2))
        labels = np.asarray(mat["y"], dtype=np.int64).reshape(-1)
        labels = np.where(labels == 10, 0, labels)
    except ImportError:
        raise DataError(
            f"reading {path} needs scipy (pip install scipy), or use an image folder or save_to_disk folder"
        ) from None
    except (OSError, ValueError, KeyError) as error:
        raise DataError(f"{path} is not a readable SVHN .mat file ({type(error).__name__}: {error})") from None
    if len(labels) != len(images):
        raise DataError(f"{path} has {len(images)} images but {len(labels)} labels")
    return SplitData(labels=_check(labels, num_classes, path), images=images, origin=str(path))


def find_svhn(root: Path, num_classes: int) -> dict[str, SourceSplit] | None:
    if not (root / "train_32x32.mat").is_file():
        return None
    root = root.resolve()
    sources = {}
    for split in ("train", "test"):
        path = root / f"{split}_32x32.mat"
        if not path.is_file():
            raise DataError(f"SVHN file {path} is missing")
        sources[split] = SourceSplit(
            origin=str(path), files=[str(path)], load=lambda p=path: read_svhn(p, num_classes), decoded=True
        )
    return sources
