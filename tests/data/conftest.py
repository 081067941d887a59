"""Real on-disk fixtures, one per format the data modules read, written into tmp_path.

Every image's pixels encode its label (value = (20 * label + 10) % 250, in every channel), so a
test can check that pixels and labels stay paired through caching, subsets and loaders.
"""

from __future__ import annotations

import gzip
import io
import os
import pickle
import struct
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

CIFAR10_FIRST = ("airplane", "automobile", "bird")


@pytest.fixture(autouse=True)
def no_standard_locations(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Standard dataset locations point at an empty folder, so only data_dir (or the hub) is found."""
    empty = tmp_path / "no-standard-data"
    empty.mkdir()
    monkeypatch.setenv("VITLIGHT_DATA", str(empty))
    return empty


def cache_root() -> Path:
    """The decode cache of this test (tests/conftest.py points VITLIGHT_CACHE into tmp_path)."""
    return Path(os.environ["VITLIGHT_CACHE"])


def label_value(label: int) -> int:
    return (20 * int(label) + 10) % 250


def pixels_of(label: int, size: int = 8, channels: int = 3) -> np.ndarray:
    return np.full((size, size, channels), label_value(label), dtype=np.uint8)


def save_image(path: Path, array: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    image = Image.fromarray(array[:, :, 0] if array.shape[2] == 1 else array)
    image.save(path, quality=95) if path.suffix.lower() in (".jpg", ".jpeg") else image.save(path)
    return path


def image_folder(
    root: Path,
    classes=CIFAR10_FIRST,
    counts: dict[str, int] | None = None,
    size: int = 8,
    suffix: str = ".png",
    channels: int = 3,
) -> Path:
    """`root/<split>/<class>/<nnn><suffix>`, `counts[split]` images per class (default train 6, test 2)."""
    for split, per_class in (counts or {"train": 6, "test": 2}).items():
        for label, name in enumerate(classes):
            for item in range(per_class):
                save_image(root / split / name / f"{item:03d}{suffix}", pixels_of(label, size, channels))
    return root


def cifar_batches(root: Path, variant: str = "cifar10", per_batch: int = 6, num_classes: int = 10, labels=None) -> Path:
    """torchvision's cifar-10-batches-py (5 train batches + test_batch) or cifar-100-python (train, test)."""
    folder_name, names, key = {
        "cifar10": ("cifar-10-batches-py", [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"], b"labels"),
        "cifar100": ("cifar-100-python", ["train", "test"], b"fine_labels"),
    }[variant]
    folder = root / folder_name
    folder.mkdir(parents=True)
    for index, name in enumerate(names):
        batch_labels = labels if labels is not None else [(index + i) % num_classes for i in range(per_batch)]
        images = np.stack([pixels_of(label, 32) for label in batch_labels])  # (N, 32, 32, 3)
        data = images.transpose(0, 3, 1, 2).reshape(len(batch_labels), 3072)  # CHW rows, as in the real files
        batch = {
            b"batch_label": name.encode(),
            key: list(batch_labels),
            b"data": data,
            b"filenames": [b"x.png"] * len(batch_labels),
        }
        (folder / name).write_bytes(pickle.dumps(batch, protocol=2))
    return folder


def idx_bytes(array: np.ndarray) -> bytes:
    return (
        b"\x00\x00\x08"
        + bytes([array.ndim])
        + struct.pack(f">{array.ndim}I", *array.shape)
        + array.astype(np.uint8).tobytes()
    )


def idx_files(folder: Path, train: int = 20, test: int = 10, gz: bool = True) -> Path:
    """MNIST-style IDX pairs for train and t10k, gzipped or not."""
    folder.mkdir(parents=True, exist_ok=True)
    for stem, count in (("train", train), ("t10k", test)):
        labels = np.arange(count) % 10
        images = np.stack([pixels_of(label, 28, 1)[:, :, 0] for label in labels])
        for kind, array, rank in (("images", images, 3), ("labels", labels, 1)):
            path = folder / f"{stem}-{kind}-idx{rank}-ubyte{'.gz' if gz else ''}"
            payload = idx_bytes(array)
            path.write_bytes(gzip.compress(payload) if gz else payload)
    return folder


def png_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


def saved_dataset(
    root: Path,
    counts: dict[str, int] | None = None,
    names=CIFAR10_FIRST,
    image_column: str = "img",
    label_column: str = "label",
    size: int = 8,
) -> Path:
    """A `datasets` DatasetDict written with save_to_disk, with an Image column and a ClassLabel column."""
    from datasets import ClassLabel, Dataset, DatasetDict, Features
    from datasets import Image as ImageFeature

    features = Features({image_column: ImageFeature(), label_column: ClassLabel(names=list(names))})
    splits = {}
    for split, count in (counts or {"train": 12, "test": 6}).items():
        labels = [i % len(names) for i in range(count)]
        images = [{"bytes": png_bytes(pixels_of(label, size)), "path": None} for label in labels]
        splits[split] = Dataset.from_dict({image_column: images, label_column: labels}, features=features)
    DatasetDict(splits).save_to_disk(str(root))
    return root


def snapshot(folder: Path) -> dict[str, tuple[int, int]]:
    """Every file under `folder` with its size and modification time (to prove nothing was written)."""
    return {str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns) for p in sorted(folder.rglob("*"))}
