"""The shared base of every vitlight data module.

A subclass only says where its images come from (`load_split`); the base owns
what every dataset needs the same way: the deterministic validation carve-out,
nested class-balanced `train_size` subsets, transforms and loaders.
"""

from __future__ import annotations

import contextlib
import logging
import os
import random
import warnings
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from vitlight.data.decode import DataWarning, decode_image, describe
from vitlight.data.device import DeviceFinish
from vitlight.data.subsets import carve_validation, nested_balanced_subset, resolve_train_size
from vitlight.data.transforms import Pipeline, TransformSettings, match_channels
from vitlight.errors import DataError

log = logging.getLogger(__name__)

SPLITS = ("train", "val", "test")


@dataclass
class SplitData:
    """One split: decoded uint8 pixels (in memory or memory-mapped), or image sources decoded on the fly.

    `images` is a uint8 (N, H, W, C) array-like (numpy array or cache.MappedImages) and `rows`
    picks this split's rows of it (None: all), so subsets never copy pixels. `paths` holds image
    files (str) or encoded images (bytes; a lazy sequence with `take(indices)` for hub columns).
    Exactly one of `images` and `paths` is set. `origin` names where the split was read from.
    """

    labels: np.ndarray
    images: Any | None = None
    paths: Sequence | None = None
    rows: np.ndarray | None = None
    origin: str = ""

    def __len__(self) -> int:
        return int(len(self.labels))

    def select(self, indices: np.ndarray) -> SplitData:
        indices = np.asarray(indices, dtype=np.int64)
        rows = None
        if self.images is not None:
            rows = indices if self.rows is None else self.rows[indices]
        paths = None
        if self.paths is not None:
            paths = self.paths.take(indices) if hasattr(self.paths, "take") else [self.paths[i] for i in indices]
        return SplitData(labels=self.labels[indices], images=self.images, paths=paths, rows=rows, origin=self.origin)

    def pixels(self, indices: np.ndarray) -> np.ndarray:
        """uint8 (len(indices), H, W, C) of a decoded split."""
        indices = np.asarray(indices, dtype=np.int64)
        return np.asarray(self.images[indices if self.rows is None else self.rows[indices]])


class SplitDataset(Dataset):
    """Serves (uint8 image (C, S, S), label) from a SplitData; the device finishes the batch
    (vitlight.data.device: flips, crops, normalization) after the transfer.

    The DataLoader asks for whole batches (`__getitems__`): decoded splits are then read with
    one indexing operation and transformed as one tensor; files are decoded one by one.
    """

    MAX_SKIPS = 16
    decode = staticmethod(decode_image)  # source, channels -> uint8 (H, W, C)

    def __init__(self, data: SplitData, pipeline: Pipeline, channels: int) -> None:
        self.data = data
        self.pipeline = pipeline
        self.channels = channels

    def __len__(self) -> int:
        return len(self.data)

    def _decoded(self, index: int) -> torch.Tensor:
        """uint8 (C, H, W) of a file; an unreadable one (found only now) is replaced by the next readable one."""
        for step in range(self.MAX_SKIPS):
            position = (index + step) % len(self.data)
            try:
                array = self.decode(self.data.paths[position], self.channels)
            except Exception as error:  # PIL raises OSError, ValueError, SyntaxError, ...
                name = describe(self.data.paths, position, self.data.origin)
                warnings.warn(
                    f"skipping unreadable image {name} ({type(error).__name__}: {error})", DataWarning, stacklevel=2
                )
                continue
            return torch.from_numpy(array).permute(2, 0, 1)
        raise DataError(
            f"{self.MAX_SKIPS} images in a row from {self.data.origin} cannot be read, starting at "
            f"{describe(self.data.paths, index, self.data.origin)}"
        )

    def __getitems__(self, indices: list[int]) -> list[tuple[torch.Tensor, int]]:
        indices = np.asarray(indices, dtype=np.int64)
        with random_draws_seeded_by(indices):
            return self._batch(indices)

    def _batch(self, indices: np.ndarray) -> list[tuple[torch.Tensor, int]]:
        if self.data.images is not None:
            batch = torch.from_numpy(self.data.pixels(indices)).permute(0, 3, 1, 2).contiguous()  # (B, C, H, W) uint8
            images = self.pipeline.sample_stage(match_channels(batch, self.channels))
        else:
            images = self.pipeline.sample_stage([self._decoded(int(i)) for i in indices])
        return [(image, int(label)) for image, label in zip(images, self.data.labels[indices])]

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        return self.__getitems__([index])[0]


MAX_DEFAULT_WORKERS = 32  # each worker is a process with its own torch (~0.3 GB): a ceiling, not a target


def workers_per_process(cpus: int, gpus: int, processes: int, ceiling: int = MAX_DEFAULT_WORKERS) -> int:
    """Loader workers for each training process: the node's cores shared by its GPUs (by its training
    processes where there are more of those, or no GPU), less one core for the training process itself.

    E.g. 128 cores and 8 GPUs: 15 workers per process; 16 cores bound to a task with one GPU: 15; a CPU
    run on 2 cores: 1. At least 1, at most `ceiling`.
    """
    share = cpus // max(gpus, processes, 1)
    return max(1, min(ceiling, share - 1))


def default_num_workers() -> int:
    """workers_per_process for this process: the CPUs it may use, the GPUs it sees, the node's processes."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cpus = os.cpu_count() or 1
    gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
    processes = int(os.environ.get("LOCAL_WORLD_SIZE", "1") or 1)
    return workers_per_process(cpus, gpus, processes)


@contextlib.contextmanager
def random_draws_seeded_by(indices: np.ndarray):
    """Augmentation draws seeded by the batch's indices (which the sampler's seeded shuffle decides),
    in forked generators: a batch is augmented the same way whenever and wherever it is loaded
    (prefetch, worker processes, a resumed run), and loading never moves the global generators.

    The forked generators are the CPU ones the workers' transforms draw from: torch's (crops),
    python's and numpy's (timm's RandAugment picks its ops with numpy). The CUDA generators are
    neither seeded nor saved: with num_workers 0 this runs in the training process once per batch,
    and `torch.manual_seed` would reseed every GPU's generator (dropout, mixup) each batch."""
    seed = zlib.crc32(indices.tobytes())
    python_state, numpy_state = random.getstate(), np.random.get_state()
    with torch.random.fork_rng(devices=[]):
        torch.default_generator.manual_seed(seed)  # the CPU generator only, unlike torch.manual_seed
        random.seed(seed)
        np.random.seed(seed)
        try:
            yield
        finally:
            random.setstate(python_state)
            np.random.set_state(numpy_state)


class ImageDataModule(L.LightningDataModule):
    """Base for image classification data; subclasses implement `load_split`.

    Class attributes give each dataset's defaults, so `--data OtherDataset` brings
    its own `num_classes`, `image_size` and `channels` into the linked model.
    """

    default_image_size: int = 32
    default_channels: int = 3
    native_channels: int = 3
    mean: tuple[float, ...] = (0.5, 0.5, 0.5)
    std: tuple[float, ...] = (0.5, 0.5, 0.5)
    has_val_split: bool = False

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
    ) -> None:
        """
        Args:
            data_dir: local files to read (the dataset's usual on-disk forms); None uses the
                standard locations or the hub.
            image_size: side the images are resized to; None: the dataset's default.
            channels: 3 (RGB) or 1 (grey); grey data is repeated to 3 channels when 3 are asked.
            batch_size: training batch size.
            eval_batch_size: validation/test batch size (default: batch_size).
            num_workers: loader worker processes per training process; None: the node's cores divided
                by its GPUs, less one for the training process (see workers_per_process).
            train_size: a count (> 1) or a fraction (<= 1) of the training pool; the subset is
                class-balanced and nested: for one seed a smaller subset lies inside a larger one.
            val_fraction: share of train carved out as validation when the dataset has no
                validation split (ViT fine-tuning uses 0.02); deterministic, disjoint from train.
            seed: seed of the train_size subset draw.
            random_resized_crop: train-time RandomResizedCrop (scale from crop_scale_min to 1).
            crop_scale_min: smallest crop area of random_resized_crop.
            random_crop_padding: train-time pad-and-crop (CIFAR style) when > 0.
            horizontal_flip: train-time random horizontal flip.
            randaugment: timm RandAugment string such as "rand-m9-mstd0.5", or None.
            random_erasing: probability of timm's RandomErasing (per-pixel noise) on each training
                image, applied to the normalized batch on the device (DeiT: 0.25).
            interpolation: "bilinear" or "bicubic" (DeiT), for resizes and random resized crops.
            eval_crop_pct: timm's eval transform for validation/test: resize the short side to
                image_size / eval_crop_pct, then centre crop (DeiT: 0.875, i.e. 256 -> 224); None resizes.
            repeated_augmentation: timm's RepeatAugSampler with this many augmented copies of each image
                (DeiT: 3); 0 or 1 is the plain shuffle. Under DDP set trainer.use_distributed_sampler: false
                (the sampler shards by the trainer's world size and rank itself).
        """
        super().__init__()
        if channels is not None and channels not in (1, 3):
            raise DataError(f"data.channels must be 1 or 3, got {channels}")
        if not 0.0 <= val_fraction < 1.0:
            raise DataError(f"data.val_fraction must be in [0, 1), got {val_fraction}")
        if not 0.0 <= random_erasing <= 1.0:
            raise DataError(f"data.random_erasing must be a probability in [0, 1], got {random_erasing}")
        if num_workers is not None and num_workers < 0:
            raise DataError(f"data.num_workers must be >= 0 (0: load in the training process), got {num_workers}")
        if repeated_augmentation < 0:
            raise DataError(
                f"data.repeated_augmentation must be >= 0 (DeiT: 3; 0 or 1 turns it off), got {repeated_augmentation}"
            )
        for key, size in (("batch_size", batch_size), ("eval_batch_size", eval_batch_size)):
            if size is not None and size < 1:
                raise DataError(f"data.{key} must be a positive number of images, got {size}")
        if train_size is not None and train_size > 1 and train_size != int(train_size):
            raise DataError(
                f"data.train_size {train_size} is neither a count (a whole number above 1) nor a fraction in (0, 1]"
            )
        if image_size is not None and image_size < 4:
            raise DataError(f"data.image_size must be at least 4 pixels, got {image_size}")
        self.data_dir = data_dir
        self.image_size = int(image_size or self.default_image_size)
        self.channels = int(channels or self.default_channels)
        self.batch_size = batch_size
        self.eval_batch_size = eval_batch_size or batch_size
        self.num_workers = default_num_workers() if num_workers is None else num_workers
        self.train_size = train_size
        self.val_fraction = val_fraction
        self.seed = seed
        self.repeated_augmentation = repeated_augmentation
        self.transform_settings = TransformSettings(
            image_size=self.image_size,
            channels=self.channels,
            mean=self._channel_stats(self.mean),
            std=self._channel_stats(self.std),
            random_resized_crop=random_resized_crop,
            crop_scale_min=crop_scale_min,
            random_crop_padding=random_crop_padding,
            horizontal_flip=horizontal_flip,
            randaugment=randaugment,
            random_erasing=random_erasing,
            interpolation=interpolation,
            eval_crop_pct=eval_crop_pct,
        )
        self._device_finish: dict[bool, DeviceFinish] = {}
        self.splits: dict[str, SplitData] = {}
        self.class_counts: dict[str, int] = {}
        self.val_source: str | None = None

    # ----- what a subclass provides -------------------------------------------------
    @property
    def classes(self) -> list[str]:
        raise NotImplementedError

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def load_split(self, split: str) -> SplitData | None:
        """Returns the stored split: "train", "test", and (when has_val_split) "val" or None if there is none."""
        raise NotImplementedError

    # ----- shared behaviour ----------------------------------------------------------
    def _channel_stats(self, stats: tuple[float, ...]) -> tuple[float, ...]:
        if self.channels == len(stats):
            return tuple(stats)
        if self.channels == 3:
            return tuple(stats) * 3
        return (float(np.mean(stats)),)

    @property
    def data_path(self) -> Path | None:
        if self.data_dir is None:
            return None
        path = Path(self.data_dir).expanduser()
        if not path.exists():
            raise DataError(
                f"data.data_dir {str(path)!r} does not exist; point it at the folder holding the dataset files"
            )
        return path

    def setup(self, stage: str | None = None) -> None:
        if self.splits:
            return
        train = self.load_split("train")
        self._check_labels(train, "train")
        val = self.load_split("val") if self.has_val_split else None
        if val is None:
            train_idx, val_idx = carve_validation(train.labels, self.val_fraction)
            train, val = train.select(train_idx), train.select(val_idx)
            self.val_source = f"carved from train (val_fraction={self.val_fraction})"
        else:
            self._check_labels(val, "val")
            self.val_source = f"stored ({val.origin})"
        pool = len(train)
        if self.train_size is not None:
            count = resolve_train_size(self.train_size, len(train))
            train = train.select(nested_balanced_subset(train.labels, count, self.seed))
        test = self.load_split("test")
        self._check_labels(test, "test")
        self.splits = {"train": train, "val": val, "test": test}
        counts = np.bincount(train.labels, minlength=self.num_classes)
        self.class_counts = {name: int(n) for name, n in zip(self.classes, counts)}
        requested = None if self.train_size is None else f"{self.train_size:g}"
        log.info(
            "%s: train %d of %d (train_size=%s, seed %d), val %d %s, test %d; per-class train counts %s",
            type(self).__name__,
            len(train),
            pool,
            requested,
            self.seed,
            len(val),
            self.val_source,
            len(test),
            self.class_counts,
        )

    def _check_labels(self, data: SplitData | None, split: str) -> None:
        name = type(self).__name__
        if data is None:
            raise DataError(f"{name}: there is no {split} split")
        where = f" ({data.origin})" if data.origin else ""
        if len(data) == 0:
            raise DataError(f"{name}: the {split} split{where} is empty")
        low, high = int(data.labels.min()), int(data.labels.max())
        if low < 0 or high >= self.num_classes:
            raise DataError(
                f"{name}: {split} label {high if high >= self.num_classes else low}{where} is outside "
                f"0..{self.num_classes - 1} (num_classes={self.num_classes})"
            )

    def data_summary(self) -> dict:
        """What summary.json records about the data."""
        return {
            "dataset": type(self).__name__,
            "num_classes": self.num_classes,
            "image_size": self.image_size,
            "channels": self.channels,
            "train_size": len(self.splits["train"]) if self.splits else None,
            "train_size_requested": self.train_size,
            "val_size": len(self.splits["val"]) if self.splits else None,
            "val_source": self.val_source,
            "test_size": len(self.splits["test"]) if self.splits else None,
            "sources": {split: data.origin for split, data in self.splits.items()},
            "class_counts": self.class_counts,
        }

    def dataset(self, split: str, train_transform: bool | None = None, data: SplitData | None = None) -> SplitDataset:
        """A split served as the loaders serve it; `data` serves other images (the whole training pool,
        which the palette is fitted on) with the transform of `split`."""
        if data is None:
            self.setup()
            data = self.splits[split]
        use_train = split == "train" if train_transform is None else train_transform
        return SplitDataset(data, Pipeline(self.transform_settings, train=use_train), self.channels)

    def device_finish(self, train: bool) -> DeviceFinish:
        """The batch stage that runs on the device after the transfer (train or eval transform)."""
        if train not in self._device_finish:
            self._device_finish[train] = DeviceFinish(self.transform_settings, train)
        return self._device_finish[train]

    def _drop_last(self, split: str, batch_size: int) -> bool:
        """Training drops a last short batch (mixup pairs images; compiled steps keep one shape),
        unless the split is smaller than one batch per process, which would leave no batch at all."""
        if split != "train":
            return False
        world = self.trainer.world_size if self.trainer is not None else 1
        return len(self.splits["train"]) // max(world, 1) >= batch_size

    def _loader(self, split: str, shuffle: bool, sampler: Any = None) -> DataLoader:
        batch_size = self.batch_size if split == "train" else self.eval_batch_size
        # a stateful loader records its position, so a mid-epoch checkpoint resumes mid-epoch
        try:
            from torchdata.stateful_dataloader import StatefulDataLoader as loader_class
        except ImportError:  # e.g. a benchmark machine without torchdata: resumes restart the epoch
            loader_class = DataLoader
        dataset = self.dataset(split)
        if sampler is None and shuffle and self.trainer is not None and self.trainer.world_size > 1:
            # torch's own RandomSampler, which Lightning replaces by a DistributedSampler seeded by the
            # run's seed and the epoch: every rank shuffles alike and takes its own shard, also after a
            # resume. (The stateful loader's sampler is another class, which Lightning would wrap, and
            # each rank's wrapped sampler would draw its own order from its own generator.)
            sampler, shuffle = torch.utils.data.RandomSampler(dataset), False
        return loader_class(
            dataset,
            batch_size=batch_size,
            shuffle=shuffle if sampler is None else None,
            sampler=sampler,
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
            pin_memory=torch.cuda.is_available(),
            drop_last=self._drop_last(split, batch_size),
        )

    def train_dataloader(self) -> DataLoader:
        if self.repeated_augmentation > 1:
            return self._loader("train", shuffle=False, sampler=self.repeat_sampler())
        return self._loader("train", shuffle=True)

    def repeat_sampler(self):
        """timm's RepeatAugSampler with explicit replicas and rank (it asks torch.distributed otherwise,
        which a one-device run has not initialised): the trainer's world size and rank, or 1 and 0."""
        from timm.data.distributed_sampler import RepeatAugSampler

        trainer = self.trainer
        replicas, rank = (trainer.world_size, trainer.global_rank) if trainer is not None else (1, 0)
        connector = getattr(trainer, "_accelerator_connector", None)
        if replicas > 1 and getattr(connector, "use_distributed_sampler", False):
            raise DataError(
                "data.repeated_augmentation shards the data itself; set trainer.use_distributed_sampler: false"
            )
        return RepeatAugSampler(
            self.dataset("train"),
            num_replicas=replicas,
            rank=rank,
            shuffle=True,
            num_repeats=self.repeated_augmentation,
        )

    def val_dataloader(self) -> DataLoader:
        return self._loader("val", shuffle=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", shuffle=False)

    def predict_dataloader(self) -> DataLoader:
        return self._loader("test", shuffle=False)
