"""Hugging Face `datasets`: hub datasets (optionally pinned to a revision) and save_to_disk folders.

The hub is only contacted in `setup` (and, for HubImageDataset, to read the class names at
construction). HF_HUB_OFFLINE / HF_DATASETS_OFFLINE, HF_HOME and HF_DATASETS_CACHE are read
when the call is made, not only when `datasets` was imported; without them, a 3-second probe
of the hub's host decides whether to try the network at all, so that an offline machine gets
the clear error at once instead of after the hub client's retries. A token comes from
HF_TOKEN or `hf auth login`, as usual for the hub client.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from vitlight.data.base import SplitData
from vitlight.data.readers import SourceSplit, assign_splits
from vitlight.errors import DataError
from vitlight.hub import offline_when_unreachable


def is_saved_dataset(root: Path) -> bool:
    """Whether `root` is a `datasets` save_to_disk folder (a DatasetDict or a single Dataset)."""
    return (root / "dataset_dict.json").is_file() or (root / "state.json").is_file()


def hf_datasets_cache() -> str:
    if os.environ.get("HF_DATASETS_CACHE"):
        return os.path.expanduser(os.environ["HF_DATASETS_CACHE"])
    home = os.environ.get("HF_HOME") or os.path.join(os.environ.get("XDG_CACHE_HOME") or "~/.cache", "huggingface")
    return os.path.join(os.path.expanduser(home), "datasets")


def _why(error: Exception) -> str | None:
    """A short reason for a hub failure, or None when the failure is not about reaching the hub."""
    text = f"{type(error).__name__}: {error}"
    first = text.splitlines()[0][:200]
    if "gated" in text.lower() or re.search(r"\b40[13] Client Error\b|\bUnauthorized\b", text):
        return "gated: accept its terms on huggingface.co, then log in with `hf auth login` or set HF_TOKEN"
    if type(error).__name__ in ("DatasetNotFoundError", "RepositoryNotFoundError", "RevisionNotFoundError"):
        return f"not found, or not accessible with the current token ({first})"
    if isinstance(error, (ConnectionError, TimeoutError)) or "connect" in text.lower() or "timeout" in text.lower():
        return f"connection failed ({first})"
    return None


@contextmanager
def hub_session(owner: str, dataset_id: str, hint: str) -> Iterator[None]:
    """Runs a hub call and turns a failure to reach the dataset into one clear DataError."""
    with offline_when_unreachable() as reason:
        try:
            yield
        except Exception as error:
            why = reason or _why(error)
            if why is None:
                raise DataError(
                    f"{owner}: loading {dataset_id!r} from the Hugging Face hub failed ({type(error).__name__}: "
                    f"{str(error).splitlines()[0][:300]})"
                ) from error
            raise DataError(
                f"{owner}: cannot reach the Hugging Face hub for {dataset_id!r} ({why}); download it on a "
                f"connected machine or set data.data_dir to local files ({hint})"
            ) from error


def load_hub(owner: str, dataset_id: str, config: str | None, revision: str | None, hint: str) -> Mapping:
    """All splits of a hub dataset (downloaded into the HF cache on first use)."""
    import datasets

    with hub_session(owner, dataset_id, hint):
        return datasets.load_dataset(dataset_id, config, revision=revision, cache_dir=hf_datasets_cache())


def hub_features(owner: str, dataset_id: str, config: str | None, revision: str | None, hint: str):
    """The features of a hub dataset from its metadata only (nothing large is downloaded); may be None."""
    import datasets

    with hub_session(owner, dataset_id, hint):
        builder = datasets.load_dataset_builder(dataset_id, config, revision=revision, cache_dir=hf_datasets_cache())
    return builder.info.features


def load_saved(owner: str, root: Path) -> Mapping:
    """A save_to_disk folder as {split: Dataset}; the Arrow files are memory-mapped, nothing is written."""
    import datasets

    try:
        loaded = datasets.load_from_disk(str(root))
    except Exception as error:
        raise DataError(
            f"{owner}: {root} is not a readable save_to_disk folder ({type(error).__name__}: {error})"
        ) from None
    return {"train": loaded} if isinstance(loaded, datasets.Dataset) else loaded


def pick_columns(owner: str, dataset, image_column: str, label_column: str, where: str) -> tuple[str, str]:
    """The image and label columns: the named ones, else the first Image / ClassLabel feature."""
    features = dataset.features
    kinds = {name: type(feature).__name__ for name, feature in features.items()}
    image = image_column if image_column in features else next((n for n, k in kinds.items() if k == "Image"), None)
    label = label_column if label_column in features else next((n for n, k in kinds.items() if k == "ClassLabel"), None)
    if image is None or label is None:
        missing = f"image column {image_column!r}" if image is None else f"label column {label_column!r}"
        raise DataError(f"{owner}: {where} has no {missing} (its columns: {', '.join(features)})")
    return image, label


def class_names(features, label_column: str) -> list[str] | None:
    feature = (features or {}).get(label_column)
    return list(feature.names) if type(feature).__name__ == "ClassLabel" else None


class ArrowImages:
    """Lazy random access to a `datasets.Dataset` image column: each item is the encoded bytes (or a path).

    Pickles as the dataset and the chosen rows; memory-mapped Arrow files are reopened, not copied.
    """

    def __init__(self, dataset, column: str, rows: np.ndarray | None = None) -> None:
        self.dataset = dataset
        self.column = column
        if rows is None and dataset._indices is not None:
            rows = np.asarray(dataset._indices.column(0).to_numpy(), dtype=np.int64)
        self.rows = rows
        self._values = None

    def __len__(self) -> int:
        return len(self.rows) if self.rows is not None else self.dataset.data.num_rows

    def _row(self, index: int) -> int:
        return int(self.rows[index]) if self.rows is not None else int(index)

    def __getitem__(self, index: int) -> bytes | str:
        if self._values is None:
            self._values = self.dataset.data.table.column(self.column)
        value = self._values[self._row(index)].as_py()
        if isinstance(value, dict):
            return value.get("bytes") or value.get("path")
        return value

    def take(self, indices: np.ndarray) -> ArrowImages:
        indices = np.asarray(indices, dtype=np.int64)
        return ArrowImages(self.dataset, self.column, indices if self.rows is None else self.rows[indices])

    def column_values(self, column: str) -> np.ndarray:
        values = np.asarray(self.dataset.data.table.column(column).to_numpy(), dtype=np.int64)
        return values if self.rows is None else values[self.rows]

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_values": None}


def dataset_dict_sources(
    owner: str,
    splits: Mapping,
    names: dict[str, tuple[str, ...]],
    image_column: str,
    label_column: str,
    where: str,
) -> dict[str, SourceSplit]:
    """{our split: SourceSplit} for a {split: Dataset} mapping (a hub download or a save_to_disk folder)."""
    sources = {}
    for ours, theirs in assign_splits(owner, splits.keys(), names, where).items():
        dataset = splits[theirs]
        image, label = pick_columns(owner, dataset, image_column, label_column, f"{where} [{theirs}]")
        origin = f"{where} [{theirs}]"

        def load(dataset=dataset, image=image, label=label, origin=origin) -> SplitData:
            images = ArrowImages(dataset, image)
            return SplitData(labels=images.column_values(label), paths=images, origin=origin)

        files = sorted({entry["filename"] for entry in dataset.cache_files})
        key = f"{image}|{label}|{getattr(dataset, '_fingerprint', '')}"
        sources[ours] = SourceSplit(origin=origin, files=files, load=load, key=key)
    return sources
