"""The data module of a dataset read from local files or the Hugging Face hub, with the decode cache.

Where the files come from, in order: `data_dir`; else the first standard location that
exists ($VITLIGHT_DATA, else ~/data and /usr/share/datasets, each joined with one of the
dataset's usual folder names); else the hub. A local folder may hold the dataset's own
format (CIFAR batches, IDX, ...), a `datasets` save_to_disk folder, or an image folder.

Small-image datasets are decoded once into the cache (see vitlight.data.cache) and served
from a memory map; large-image ones are decoded on the fly by the loader's workers, after a
one-time header check of every file (its result is cached too; images inside a hub dataset's
Arrow files are checked as they are decoded).
"""

from __future__ import annotations

import logging
import os
import warnings
from pathlib import Path

import numpy as np

from vitlight.data import decode as decoding
from vitlight.data.base import ImageDataModule, SplitData
from vitlight.data.cache import CacheWriter, ImageCache, cache_root, source_digest
from vitlight.data.decode import (
    MAX_BAD_FRACTION,
    DataWarning,
    common_size,
    describe,
    fit_size,
    report_unreadable,
    unreadable_headers,
)
from vitlight.data.readers import DEFAULT_SPLIT_NAMES, SourceSplit
from vitlight.data.readers.folder import ClassIndex, find_image_folder, match_class_folders
from vitlight.data.readers.hub import dataset_dict_sources, is_saved_dataset, load_hub, load_saved
from vitlight.errors import DataError

log = logging.getLogger(__name__)

DATA_ENV = "VITLIGHT_DATA"
AUTO_CACHE_MAX_SIDE = 96  # cache=None caches images whose sampled sizes agree and are at most this side
WRITE_BLOCK = 1024


def standard_roots() -> list[Path]:
    """Folders searched for a dataset's usual folder names: $VITLIGHT_DATA (os.pathsep-separated) or the defaults."""
    if os.environ.get(DATA_ENV):
        return [Path(p).expanduser() for p in os.environ[DATA_ENV].split(os.pathsep) if p]
    return [Path.home() / "data", Path("/usr/share/datasets")]


class SourceDataModule(ImageDataModule):
    """Base of the named and generic datasets: finds the files, caches or checks them, serves splits.

    A subclass sets the class attributes below and, for a format of its own, `read_native`.
    """

    has_val_split = True  # ask the source; val is carved from train when it stores none
    class_names: tuple[str, ...] = ()
    wnids: tuple[str, ...] = ()
    hub_id: str | None = None
    hub_config: str | None = None
    image_column: str = "image"
    label_column: str = "label"
    split_names: dict[str, tuple[str, ...]] = DEFAULT_SPLIT_NAMES
    local_names: tuple[str, ...] = ()
    local_forms: str = "an image folder with train/ and test/, or a save_to_disk folder"
    cache_default: bool | None = True  # None: decide from the image sizes

    def __init__(
        self,
        data_dir: str | None = None,
        image_size: int | None = None,
        channels: int | None = None,
        batch_size: int = 128,
        eval_batch_size: int | None = None,
        num_workers: int | None = None,
        train_size: float | None = None,
        val_fraction: float = 0.02,
        seed: int = 0,
        random_resized_crop: bool = False,
        crop_scale_min: float = 0.08,
        random_crop_padding: int = 0,
        horizontal_flip: bool = False,
        randaugment: str | None = None,
        random_erasing: float = 0.0,
        interpolation: str = "bilinear",
        eval_crop_pct: float | None = None,
        repeated_augmentation: int = 0,
        cache: bool | None = None,
        cache_dir: str | None = None,
        revision: str | None = None,
    ) -> None:
        """
        Args:
            data_dir: the dataset's files (its own format, an image folder with train/ and test/
                (optional val/), or a save_to_disk folder); None: a standard location, else the hub.
            image_size: side the images are resized to; None: the dataset's default.
            channels: 3 (RGB) or 1 (grey); None: the dataset's default.
            batch_size: training batch size.
            eval_batch_size: validation/test batch size (default: batch_size).
            num_workers: loader worker processes per training process; None: from the CPU count (at most 8).
            train_size: a count (> 1) or a fraction (<= 1) of the training pool: a class-balanced
                subset, nested across sizes for one seed.
            val_fraction: share of train carved out as validation when the dataset stores none.
            seed: seed of the train_size subset draw.
            random_resized_crop: train-time RandomResizedCrop (scale from crop_scale_min to 1).
            crop_scale_min: smallest crop area of random_resized_crop.
            random_crop_padding: train-time pad-and-crop (CIFAR style) when > 0.
            horizontal_flip: train-time random horizontal flip.
            randaugment: timm RandAugment string such as "rand-m9-mstd0.5", or None.
            random_erasing: probability of timm's RandomErasing per training image, on the device (DeiT: 0.25).
            interpolation: "bilinear" or "bicubic" (DeiT), for resizes and random resized crops.
            eval_crop_pct: timm's eval transform for validation/test: resize the short side to
                image_size / eval_crop_pct, then centre crop (DeiT: 0.875, i.e. 256 -> 224); None resizes.
            repeated_augmentation: timm's RepeatAugSampler with this many augmented copies per image
                (DeiT: 3); 0 or 1: plain shuffle. Under DDP set trainer.use_distributed_sampler: false.
            cache: decode once into the uint8 cache (True) or decode files on the fly (False);
                None: the dataset's default (on for small-image datasets).
            cache_dir: cache folder (default: $VITLIGHT_CACHE, else ~/.cache/vitlight).
            revision: hub revision (branch, tag or commit) to pin when reading from the hub.
        """
        super().__init__(
            data_dir=data_dir,
            image_size=image_size,
            channels=channels,
            batch_size=batch_size,
            eval_batch_size=eval_batch_size,
            num_workers=num_workers,
            train_size=train_size,
            val_fraction=val_fraction,
            seed=seed,
            random_resized_crop=random_resized_crop,
            crop_scale_min=crop_scale_min,
            random_crop_padding=random_crop_padding,
            horizontal_flip=horizontal_flip,
            randaugment=randaugment,
            random_erasing=random_erasing,
            interpolation=interpolation,
            eval_crop_pct=eval_crop_pct,
            repeated_augmentation=repeated_augmentation,
        )
        self.cache = cache
        self.cache_dir = cache_dir
        self.revision = revision
        self._found: dict[str, SourceSplit] | None = None

    # ----- what a dataset says about itself ----------------------------------------------
    @property
    def classes(self) -> list[str]:
        return list(self.class_names)

    def read_native(self, root: Path) -> dict[str, SourceSplit] | None:
        """The dataset's own on-disk format at `root`, or None when it is not there."""
        return None

    def class_index(self) -> ClassIndex:
        return match_class_folders(type(self).__name__, self.classes, self.wnids)

    # ----- finding the files -------------------------------------------------------------
    def local_root(self) -> Path | None:
        """data_dir, else the first standard location holding one of the usual folder names, else None."""
        if self.data_dir is not None:
            return self.data_path
        for root in standard_roots():
            for name in self.local_names:
                if (root / name).is_dir():
                    return root / name
        return None

    def find_sources(self) -> dict[str, SourceSplit]:
        owner = type(self).__name__
        root = self.local_root()
        if root is None:
            if self.hub_id is None:
                raise DataError(f"{owner}: set data.data_dir to {self.local_forms}")
            splits = load_hub(owner, self.hub_id, self.hub_config, self.revision, self.local_forms)
            return dataset_dict_sources(
                owner, splits, self.split_names, self.image_column, self.label_column, f"hub:{self.hub_id}"
            )
        if is_saved_dataset(root):
            splits = load_saved(owner, root)
            return dataset_dict_sources(
                owner, splits, self.split_names, self.image_column, self.label_column, str(root.resolve())
            )
        found = self.read_native(root)
        if found is None:
            found = find_image_folder(owner, root, self.split_names, self.class_index())
        if found is None:
            raise DataError(f"{owner}: found no {owner} files in {root} (expected {self.local_forms})")
        return found

    # ----- reading a split ---------------------------------------------------------------
    def prepare_data(self) -> None:
        """Downloads (hub) and decodes into the cache once, before `setup` on every process reads it."""
        for split in ("train", "val", "test"):
            self.load_split(split)

    def load_split(self, split: str) -> SplitData | None:
        if self._found is None:
            self._found = self.find_sources()
        source = self._found.get(split)
        if source is None:
            return None
        data = None if source.decoded else source.load()  # cheap for encoded images: a list of sources
        common = None if data is None else common_size(data.paths)
        if self._caches(data, common):
            return self._from_cache(split, source, data, common)
        data = data if data is not None else source.load()
        return self._without_unreadable(split, source, data) if isinstance(data.paths, list) else data

    def _caches(self, data: SplitData | None, common: tuple[int, int] | None) -> bool:
        use = self.cache if self.cache is not None else self.cache_default
        if use is not None:
            return use
        return data is None or (common is not None and max(common) <= AUTO_CACHE_MAX_SIDE)

    def _store(self) -> ImageCache:
        return ImageCache(cache_root(self.cache_dir))

    def _from_cache(
        self, split: str, source: SourceSplit, data: SplitData | None, common: tuple[int, int] | None
    ) -> SplitData:
        """The split's pixels from its cache entry, decoded into one first if there is none.

        Decoded sources keep their stored size; encoded images are stored at the size a sample of
        them shares (`common`), or at image_size when they have none.
        """
        owner = type(self).__name__
        size = None if data is None else (common or (self.image_size, self.image_size))
        parts = [
            owner,
            split,
            source.origin,
            source.key,
            f"channels={self.native_channels}",
            f"size={size or 'stored'}",
        ]
        name = f"{owner}-{split}-{source_digest(parts, source.files)}"
        store = self._store()
        hit = store.read(name)
        if hit is None:
            log.info(
                "%s: decoding the %s split (%s) once into the cache %s", owner, split, source.origin, store.root / name
            )
            data = data if data is not None else source.load()
            store.write(name, lambda writer: self._fill(writer, data, size, odd_sizes_warn=common is not None))
            hit = store.read(name)
            if hit is None:
                raise DataError(f"{owner}: the cache entry {store.root / name} cannot be read back")
        images, labels, meta = hit
        report_unreadable(owner, source.origin, meta.get("unreadable", []), meta.get("total", len(labels)))
        return SplitData(labels=labels, images=images, origin=source.origin)

    def _fill(self, writer: CacheWriter, data: SplitData, size: tuple[int, int] | None, odd_sizes_warn: bool) -> None:
        """Streams a split's pixels into a cache entry, skipping unreadable images (too many is an error).

        Images are stored at `size`: the size they share, where a few of another size are resized with
        a warning (odd_sizes_warn), or image_size when they have no common size.
        """
        writer.meta.update(total=len(data), unreadable=[])
        if data.images is not None:
            for start in range(0, len(data), WRITE_BLOCK):
                block = np.arange(start, min(start + WRITE_BLOCK, len(data)))
                writer.add(data.pixels(block), data.labels[block])
            return
        bad: list[str] = []
        resized = 0
        images: list[np.ndarray] = []
        keep: list[int] = []
        for index in range(len(data)):
            try:
                array = decoding.decode_image(data.paths[index], self.native_channels)
            except Exception as error:  # PIL raises OSError, ValueError, SyntaxError, ...
                bad.append(f"{describe(data.paths, index, data.origin)}: {type(error).__name__}: {error}")
                continue
            if array.shape[:2] != size:
                array, resized = fit_size(array, size), resized + 1
            images.append(array)
            keep.append(index)
            if len(images) == WRITE_BLOCK:
                writer.add(np.stack(images), data.labels[keep])
                images, keep = [], []
        if images:
            writer.add(np.stack(images), data.labels[keep])
        if len(bad) > MAX_BAD_FRACTION * len(data):
            report_unreadable(type(self).__name__, data.origin, bad, len(data))
        if resized:
            message = f"{type(self).__name__}: resized {resized} image(s) of {data.origin} to {size[0]}x{size[1]} for the cache"
            warnings.warn(message, DataWarning) if odd_sizes_warn else log.info(message)
        writer.meta.update(unreadable=bad, resized=resized)

    def _without_unreadable(self, split: str, source: SourceSplit, data: SplitData) -> SplitData:
        """Drops files whose header cannot be read (checked once per set of files; the result is cached)."""
        owner = type(self).__name__
        name = f"{owner}-{split}-{source_digest([owner, split, source.origin, 'headers'], source.files)}-unreadable"
        store = self._store()
        record = store.read_json(name)
        if record is None:
            bad = unreadable_headers(data.paths)
            record = {
                "total": len(data),
                "unreadable": [[index, f"{data.paths[index]}: {error}"] for index, error in bad],
            }
            try:
                store.write_json(name, record)
            except (DataError, OSError) as error:
                log.info("%s: cannot record the header check in %s (%s)", owner, store.root, error)
        report_unreadable(owner, data.origin, [text for _, text in record["unreadable"]], record["total"])
        if not record["unreadable"]:
            return data
        return data.select(np.setdiff1d(np.arange(len(data)), [index for index, _ in record["unreadable"]]))
