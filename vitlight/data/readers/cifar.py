"""The CIFAR python batches that torchvision downloads: `cifar-10-batches-py/`, `cifar-100-python/`.

Each batch is a pickle of {b"data": uint8 (N, 3072) in CHW order, b"labels" or b"fine_labels"}.
The unpickler only accepts numpy arrays and plain containers, so a crafted file cannot run code.
"""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np

from vitlight.data.base import SplitData
from vitlight.data.readers import SourceSplit
from vitlight.errors import DataError

LAYOUTS = {
    # variant: (folder name, {split: batch files}, label key)
    "cifar10": (
        "cifar-10-batches-py",
        {"train": [f"data_batch_{i}" for i in range(1, 6)], "test": ["test_batch"]},
        b"labels",
    ),
    "cifar100": ("cifar-100-python", {"train": ["train"], "test": ["test"]}, b"fine_labels"),
}
ALLOWED_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "scalar"),
    ("numpy.core.numeric", "_frombuffer"),
    ("numpy._core.numeric", "_frombuffer"),  # pickle protocol 5
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("_codecs", "encode"),  # how protocol 2 stores bytes when written by Python 3
}


class _ArraysOnly(pickle.Unpickler):
    def find_class(self, module: str, name: str):
        if (module, name) not in ALLOWED_GLOBALS:
            raise pickle.UnpicklingError(f"unexpected object {module}.{name}")
        return super().find_class(module, name)


def read_batch(path: Path, label_key: bytes, num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """One batch file -> uint8 (N, 32, 32, 3) images and int64 labels."""
    try:
        with open(path, "rb") as file:
            batch = _ArraysOnly(file, encoding="bytes").load()
        data = np.asarray(batch[b"data"], dtype=np.uint8)
        labels = np.asarray(batch[label_key], dtype=np.int64)
        images = data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
    except (OSError, EOFError, pickle.UnpicklingError, KeyError, ValueError, TypeError, AttributeError) as error:
        raise DataError(f"{path} is not a readable CIFAR batch ({type(error).__name__}: {error})") from None
    if len(labels) != len(images):
        raise DataError(f"{path} has {len(images)} images but {len(labels)} labels")
    bad = np.flatnonzero((labels < 0) | (labels >= num_classes))
    if len(bad):
        raise DataError(
            f"{path}: label {labels[bad[0]]} (image {bad[0]}) is outside 0..{num_classes - 1} (num_classes={num_classes})"
        )
    return images, labels


def find_cifar(root: Path, variant: str, num_classes: int) -> dict[str, SourceSplit] | None:
    """The batches in `root` or `root/<folder name>`, or None when neither holds them."""
    folder_name, files, label_key = LAYOUTS[variant]
    folder = next((f for f in (root, root / folder_name) if (f / files["train"][0]).is_file()), None)
    if folder is None:
        return None
    folder = folder.resolve()
    sources = {}
    for split, names in files.items():
        paths = [folder / name for name in names]
        missing = [p for p in paths if not p.is_file()]
        if missing:
            raise DataError(f"CIFAR batch file {missing[0]} is missing (the {split} split needs {', '.join(names)})")
        origin = str(paths[0]) if len(paths) == 1 else f"{folder}/{names[0][:-1]}*"

        def load(paths=paths, origin=origin) -> SplitData:
            parts = [read_batch(p, label_key, num_classes) for p in paths]
            images = np.concatenate([p[0] for p in parts])
            labels = np.concatenate([p[1] for p in parts])
            return SplitData(labels=labels, images=images, origin=origin)

        sources[split] = SourceSplit(origin=origin, files=[str(p) for p in paths], load=load, decoded=True)
    return sources
