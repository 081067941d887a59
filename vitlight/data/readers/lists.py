"""Datasets stored as one image folder plus split lists, as torchvision downloads them.

Oxford-IIIT Pets: `images/<Name>_<n>.jpg` with `annotations/trainval.txt` and `annotations/test.txt`
(lines "<Name>_<n> <class id 1..37> <species> <breed id>").
Oxford Flowers-102: `jpg/image_<nnnnn>.jpg` with `imagelabels.mat` (labels 1..102) and `setid.mat`
(trnid, valid, tstid: 1-based image numbers), so it has a stored validation split.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from vitlight.data.base import SplitData
from vitlight.data.readers import SourceSplit
from vitlight.errors import DataError


def _split(origin: str, paths: list[str], labels: np.ndarray, num_classes: int, listed_in: Path) -> SourceSplit:
    bad = np.flatnonzero((labels < 0) | (labels >= num_classes))
    if len(bad):
        raise DataError(
            f"{listed_in}: label {labels[bad[0]] + 1} of {paths[bad[0]]} is outside 1..{num_classes} (num_classes={num_classes})"
        )
    missing = next((path for path in paths if not Path(path).is_file()), None)
    if missing is not None:
        raise DataError(f"{missing}, listed in {listed_in}, does not exist")
    return SourceSplit(origin=origin, files=paths, load=lambda: SplitData(labels=labels, paths=paths, origin=origin))


def find_pets(root: Path, num_classes: int) -> dict[str, SourceSplit] | None:
    folder = next((f for f in (root, root / "oxford-iiit-pet") if (f / "annotations" / "trainval.txt").is_file()), None)
    if folder is None:
        return None
    folder = folder.resolve()
    sources = {}
    for split, name in (("train", "trainval.txt"), ("test", "test.txt")):
        listing = folder / "annotations" / name
        if not listing.is_file():
            raise DataError(f"OxfordPets: {listing} is missing")
        rows = [line.split() for line in listing.read_text().splitlines() if line.strip() and not line.startswith("#")]
        if any(len(row) < 2 or not row[1].isdigit() for row in rows):
            raise DataError(f"OxfordPets: {listing} has a line that is not '<image> <class id> ...'")
        paths = [str(folder / "images" / f"{row[0]}.jpg") for row in rows]
        labels = np.asarray([int(row[1]) - 1 for row in rows], dtype=np.int64)
        sources[split] = _split(str(listing), paths, labels, num_classes, listing)
    return sources


def find_flowers(root: Path, num_classes: int) -> dict[str, SourceSplit] | None:
    folder = next((f for f in (root, root / "flowers-102") if (f / "setid.mat").is_file()), None)
    if folder is None:
        return None
    folder = folder.resolve()
    try:
        from scipy.io import loadmat

        labels = np.asarray(loadmat(folder / "imagelabels.mat")["labels"], dtype=np.int64).reshape(-1) - 1
        sets = loadmat(folder / "setid.mat")
        ids = {
            split: np.asarray(sets[key], dtype=np.int64).reshape(-1)
            for split, key in (("train", "trnid"), ("val", "valid"), ("test", "tstid"))
        }
    except ImportError:
        raise DataError(
            f"Flowers102: reading {folder}/*.mat needs scipy (pip install scipy), or use an image folder"
        ) from None
    except (OSError, ValueError, KeyError) as error:
        raise DataError(
            f"Flowers102: {folder}/imagelabels.mat or setid.mat cannot be read ({type(error).__name__}: {error})"
        ) from None
    sources = {}
    for split, numbers in ids.items():
        if numbers.min() < 1 or numbers.max() > len(labels):
            raise DataError(f"Flowers102: {folder / 'setid.mat'} lists image numbers outside 1..{len(labels)}")
        paths = [str(folder / "jpg" / f"image_{number:05d}.jpg") for number in numbers]
        sources[split] = _split(
            f"{folder / 'setid.mat'} [{split}]", paths, labels[numbers - 1], num_classes, folder / "imagelabels.mat"
        )
    return sources
