"""Readers of the on-disk and hub forms of image datasets.

Each reader looks at a folder (or a hub dataset) and returns `{split: SourceSplit}`, cheaply:
nothing is decoded until a split's `load` is called, and `files` lets the cache key the split
by the files' sizes and modification times before anything is read.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

from vitlight.data.base import SplitData
from vitlight.errors import DataError

# Which stored split serves as ours. A dataset whose labelled held-out split is called
# "val" (ImageNet, Imagenette, Tiny-ImageNet) uses it as the test split; validation is then
# carved from train. A split serving as test is never also used as val.
DEFAULT_SPLIT_NAMES: dict[str, tuple[str, ...]] = {
    "train": ("train",),
    "test": ("test", "val", "validation", "valid"),
    "val": ("val", "validation", "valid"),
}


@dataclass
class SourceSplit:
    """One stored split, not yet read.

    origin: the resolved location read (a file, a folder, or "hub:<id>[<split>]"), for messages.
    files: the files whose sizes and modification times key the cache.
    load: reads the split: decoded pixels, or image sources (paths, encoded bytes) to decode.
    key: anything else that changes the result (e.g. the class-folder-to-label mapping).
    decoded: whether `load` gives decoded pixels (CIFAR batches, IDX, ...) rather than encoded images.
    """

    origin: str
    files: list[str]
    load: Callable[[], SplitData]
    key: str = ""
    decoded: bool = False


def assign_splits(
    owner: str, available: Iterable[str], names: dict[str, tuple[str, ...]], where: str
) -> dict[str, str]:
    """Maps our split names to stored ones; train and test must exist, val is optional."""
    available = list(available)
    chosen: dict[str, str] = {}
    for split in ("train", "test", "val"):
        match = next((name for name in names.get(split, ()) if name in available and name not in chosen.values()), None)
        if match is not None:
            chosen[split] = match
        elif split != "val":
            looked = " or ".join(repr(name) for name in names.get(split, ())) or "nothing"
            raise DataError(
                f"{owner}: no {split} split in {where} (looked for {looked}; found {', '.join(map(repr, available)) or 'none'})"
            )
    return chosen
