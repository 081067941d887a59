"""Image folders: `<root>/<split>/<class>/<image files>` (files may sit deeper, e.g. `<class>/images/`).

Also the original Tiny-ImageNet layout (wnids.txt, train/<wnid>/images/, val/images/ with
val/val_annotations.txt), whose labelled val/ serves as the test split.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from vitlight.data.base import SplitData
from vitlight.data.decode import IMAGE_EXTENSIONS
from vitlight.data.readers import SourceSplit, assign_splits
from vitlight.errors import DataError

# folder -> its class-folder names -> {class folder name: label}
ClassIndex = Callable[[Path, list[str]], dict[str, int]]


def _normalized(name: str) -> str:
    return re.sub(r"[\s\-]+", "_", name.strip().lower())


def class_folders(folder: Path) -> list[str]:
    """The sorted class-folder names in `folder` (hidden folders ignored)."""
    try:
        if not folder.is_dir():
            raise DataError(f"{folder} is not a folder")
        return sorted(entry.name for entry in os.scandir(folder) if entry.is_dir() and not entry.name.startswith("."))
    except PermissionError:
        raise DataError(
            f"cannot read the folder {str(folder)!r}: permission denied (check its owner and mode)"
        ) from None


def match_class_folders(owner: str, classes: Sequence[str], wnids: Sequence[str] = ()) -> ClassIndex:
    """Labels class folders of a named dataset by class name, WordNet id or index (0..n-1).

    When no folder name matches and there are exactly as many folders as classes, the
    folders are labelled in sorted order (the torchvision ImageFolder convention).
    """
    lookup = {_normalized(name): index for index, name in enumerate(classes)}
    lookup.update({wnid: index for index, wnid in enumerate(wnids)})

    def index(folder: Path, names: list[str]) -> dict[str, int]:
        mapping: dict[str, int] = {}
        for name in names:
            if _normalized(name) in lookup:
                mapping[name] = lookup[_normalized(name)]
            elif name.isdigit():
                if int(name) >= len(classes):
                    raise DataError(
                        f"{owner}: class folder {folder / name} is label {int(name)}, outside 0..{len(classes) - 1} "
                        f"(num_classes={len(classes)})"
                    )
                mapping[name] = int(name)
        unmatched = [name for name in names if name not in mapping]
        if unmatched and not mapping and len(names) == len(classes):
            return {name: position for position, name in enumerate(sorted(names))}
        if unmatched:
            examples = ", ".join(list(classes)[:3])
            raise DataError(
                f"{owner}: class folder {folder / unmatched[0]} is not a {owner} class (expected names such as "
                f"{examples}, WordNet ids, or indices 0..{len(classes) - 1})"
            )
        return mapping

    return index


def _cannot_read(error: OSError) -> None:
    """os.walk skips a folder it cannot read; that folder would then look empty."""
    raise DataError(f"cannot read the folder {error.filename!r}: {error.strerror} (check its owner and mode)")


def list_images(folder: Path) -> list[str]:
    """Image files anywhere under `folder`, sorted."""
    found = []
    for directory, subdirs, files in os.walk(folder, onerror=_cannot_read):
        subdirs[:] = sorted(d for d in subdirs if not d.startswith("."))
        found.extend(
            os.path.join(directory, f) for f in sorted(files) if os.path.splitext(f)[1].lower() in IMAGE_EXTENSIONS
        )
    return found


def list_split_folder(owner: str, folder: Path, index: ClassIndex) -> tuple[list[str], np.ndarray, dict[str, int]]:
    """(image paths, labels, class-folder mapping) of one split folder, in a fixed shuffled order.

    An empty class folder is an error.
    """
    names = class_folders(folder)
    if not names:
        raise DataError(f"{owner}: {folder} has no class folders (expected {folder}/<class>/<image files>)")
    mapping = index(folder, names)
    paths: list[str] = []
    labels: list[int] = []
    for name in names:
        files = list_images(folder / name)
        if not files:
            raise DataError(f"{owner}: class folder {folder / name} is empty (no image files)")
        paths.extend(files)
        labels.extend([mapping[name]] * len(files))
    # A fixed shuffle interleaves the classes, so that a partial evaluation pass (limit_val_batches,
    # an unshuffled loader stopped early) sees every class; the order is the same on every run.
    order = np.random.default_rng(0).permutation(len(paths))
    return [paths[i] for i in order], np.asarray(labels, dtype=np.int64)[order], mapping


def _mapping_key(mapping: dict[str, int]) -> str:
    return hashlib.sha256(repr(sorted(mapping.items())).encode()).hexdigest()[:16]


def _split(origin: str, paths: list[str], labels: np.ndarray, key: str) -> SourceSplit:
    return SourceSplit(
        origin=origin, files=paths, load=lambda: SplitData(labels=labels, paths=paths, origin=origin), key=key
    )


def find_image_folder(
    owner: str, root: Path, names: dict[str, tuple[str, ...]], index: ClassIndex
) -> dict[str, SourceSplit] | None:
    """The splits of an image folder at `root`, or None when `root` has no train/ folder."""
    if not (root / names["train"][0]).is_dir():
        return None
    root = root.resolve()
    available = [entry.name for entry in os.scandir(root) if entry.is_dir()]
    sources = {}
    for ours, theirs in assign_splits(owner, available, names, str(root)).items():
        paths, labels, mapping = list_split_folder(owner, root / theirs, index)
        sources[ours] = _split(str(root / theirs), paths, labels, _mapping_key(mapping))
    return sources


def tiny_imagenet_wnids(root: Path) -> list[str] | None:
    """Sorted WordNet ids from an original Tiny-ImageNet folder's wnids.txt, or None."""
    path = root / "wnids.txt"
    return sorted(line.strip() for line in path.read_text().splitlines() if line.strip()) if path.is_file() else None


def find_tiny_imagenet(owner: str, root: Path, index: ClassIndex) -> dict[str, SourceSplit] | None:
    """The original Tiny-ImageNet layout: train/ as train, the labelled val/ as test (test/ has no labels)."""
    annotations = root / "val" / "val_annotations.txt"
    if not ((root / "wnids.txt").is_file() and annotations.is_file()):
        return None
    root = root.resolve()
    annotations = root / "val" / "val_annotations.txt"
    paths, labels, mapping = list_split_folder(owner, root / "train", index)
    sources = {"train": _split(str(root / "train"), paths, labels, _mapping_key(mapping))}
    rows = [line.split("\t") for line in annotations.read_text().splitlines() if line.strip()]
    if any(len(row) < 2 for row in rows):
        raise DataError(f"{owner}: {annotations} has a line without '<file>\\t<wnid>'")
    wnid_index = index(root / "val", sorted({row[1] for row in rows}))
    test_paths = [str(root / "val" / "images" / row[0]) for row in rows]
    missing = next((p for p in test_paths if not os.path.isfile(p)), None)
    if missing is not None:
        raise DataError(f"{owner}: {missing}, listed in {annotations}, does not exist")
    test_labels = np.asarray([wnid_index[row[1]] for row in rows], dtype=np.int64)
    sources["test"] = _split(str(root / "val"), test_paths, test_labels, _mapping_key(wnid_index))
    return sources
