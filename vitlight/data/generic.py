"""Data modules for any image folder and any Hugging Face image-classification dataset.

Both read their class list when constructed (a folder listing, or the hub's metadata), so
that `num_classes` can be linked into the model. With `cache: null` (the default) a split is
decoded into the cache when a sample of its images agree in size and are at most 96 px a
side; otherwise it is decoded on the fly.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from vitlight.data.readers import SourceSplit
from vitlight.data.readers.folder import ClassIndex, class_folders, find_image_folder
from vitlight.data.readers.hub import class_names, dataset_dict_sources, hub_features, load_hub, load_saved
from vitlight.data.sources import SourceDataModule
from vitlight.data.transforms import IMAGENET_MEAN, IMAGENET_STD
from vitlight.errors import DataError


def _stats(name: str, values: list[float] | None, default: tuple[float, ...]) -> tuple[float, ...]:
    if values is None:
        return default
    if len(values) not in (1, 3):
        raise DataError(f"data.{name} needs 1 or 3 values (one per channel), got {list(values)}")
    return tuple(float(v) for v in values)


class ImageFolder(SourceDataModule):
    """Images in `data_dir/<split>/<class>/<file>`; classes are train/'s folders in sorted order."""

    default_image_size = 224
    mean = IMAGENET_MEAN
    std = IMAGENET_STD
    cache_default = None
    local_forms = "a folder with train/<class>/<image files> and test/<class>/<image files>"

    def __init__(
        self,
        data_dir: str | None = None,
        test_folder: str = "test",
        val_folder: str | None = "val",
        mean: list[float] | None = None,
        std: list[float] | None = None,
        **shared: Any,
    ) -> None:
        """
        Args:
            data_dir: the folder holding train/, the test folder and optionally the val folder.
            test_folder: name of the folder used as the test split.
            val_folder: name of the validation folder; when absent (or None), val is carved from train.
            mean: per-channel normalization mean (default: ImageNet's).
            std: per-channel normalization std (default: ImageNet's).
            shared: the options of SourceDataModule and ImageDataModule (`cache: null` decides
                from the image sizes), listed by LightningCLI as this class's own.
        """
        if data_dir is None:
            raise DataError(f"ImageFolder needs data.data_dir: {self.local_forms}")
        self.mean, self.std = _stats("mean", mean, self.mean), _stats("std", std, self.std)
        super().__init__(data_dir=data_dir, revision=None, **shared)  # a folder has no hub revision
        self.native_channels = self.channels
        self.split_names = {"train": ("train",), "test": (test_folder,), "val": (val_folder,) if val_folder else ()}
        train = self.data_path / "train"
        if self.data_path.is_file():
            raise DataError(
                f"ImageFolder: data.data_dir {str(self.data_path)!r} is a file, not a folder; give the folder that "
                "holds train/<class>/<image files>"
            )
        if not train.is_dir():
            raise DataError(
                f"ImageFolder: {train} is not a folder (expected {self.data_path}/train/<class>/<image files>)"
            )
        self._class_names = class_folders(train)
        if not self._class_names:
            raise DataError(f"ImageFolder: {train} has no class folders (expected {train}/<class>/<image files>)")

    @property
    def classes(self) -> list[str]:
        return list(self._class_names)

    def class_index(self) -> ClassIndex:
        known = {name: index for index, name in enumerate(self._class_names)}
        train = self.data_path / "train"

        def index(folder: Path, names: list[str]) -> dict[str, int]:
            unknown = next((name for name in names if name not in known), None)
            if unknown is not None:
                raise DataError(
                    f"ImageFolder: class folder {folder / unknown} is not one of the {len(known)} classes in {train}"
                )
            return {name: known[name] for name in names}

        return index

    def find_sources(self) -> dict[str, SourceSplit]:
        return find_image_folder(type(self).__name__, self.data_path, self.split_names, self.class_index())


class HubImageDataset(SourceDataModule):
    """Any Hugging Face dataset with an image column and a label column, from the hub or a save_to_disk folder."""

    default_image_size = 224
    mean = IMAGENET_MEAN
    std = IMAGENET_STD
    cache_default = None
    local_forms = "a save_to_disk folder of it"

    def __init__(
        self,
        dataset_id: str | None = None,
        config_name: str | None = None,
        revision: str | None = None,
        data_dir: str | None = None,
        image_column: str = "image",
        label_column: str = "label",
        train_split: str = "train",
        test_split: str = "test",
        val_split: str | None = None,
        class_names: list[str] | None = None,
        mean: list[float] | None = None,
        std: list[float] | None = None,
        **shared: Any,
    ) -> None:
        """
        Args:
            dataset_id: hub dataset id such as "uoft-cs/cifar10" (not needed with data_dir).
            config_name: the dataset's configuration (subset), if it has several.
            revision: branch, tag or commit to pin.
            data_dir: a save_to_disk folder of the dataset, read instead of the hub.
            image_column: name of the image column.
            label_column: name of the integer label column.
            train_split: split used for training.
            test_split: split used for testing.
            val_split: split used for validation; None carves val from train.
            class_names: the class names in label order; None reads them from the label
                column's ClassLabel feature (hub metadata, or the save_to_disk folder).
            mean: per-channel normalization mean (default: ImageNet's).
            std: per-channel normalization std (default: ImageNet's).
            shared: the options of SourceDataModule and ImageDataModule (`cache: null` decides
                from the image sizes), listed by LightningCLI as this class's own.
        """
        if dataset_id is None and data_dir is None:
            raise DataError(
                "HubImageDataset needs data.dataset_id (a Hugging Face dataset id) or data.data_dir (a save_to_disk "
                "folder)"
            )
        self.mean, self.std = _stats("mean", mean, self.mean), _stats("std", std, self.std)
        super().__init__(data_dir=data_dir, revision=revision, **shared)
        self.native_channels = self.channels
        self.dataset_id = dataset_id
        self.config_name = config_name
        self.image_column = image_column
        self.label_column = label_column
        self.split_names = {"train": (train_split,), "test": (test_split,), "val": (val_split,) if val_split else ()}
        self._saved = load_saved(self._owner, self.data_path) if data_dir is not None else None
        self._class_names = list(class_names) if class_names else self._read_class_names()

    @property
    def _owner(self) -> str:
        return f"HubImageDataset({self.dataset_id or self.data_dir})"

    def _read_class_names(self) -> list[str]:
        if self._saved is not None:
            first = self._saved.get(self.split_names["train"][0])
            first = first if first is not None else next(iter(self._saved.values()))
            features = first.features
        else:
            features = hub_features(self._owner, self.dataset_id, self.config_name, self.revision, self.local_forms)
        names = class_names(features, self.label_column)
        if names is None:
            raise DataError(
                f"{self._owner}: the label column {self.label_column!r} is not a ClassLabel, so the class names are "
                "unknown; set data.class_names"
            )
        return names

    @property
    def classes(self) -> list[str]:
        return list(self._class_names)

    def find_sources(self) -> dict[str, SourceSplit]:
        if self._saved is not None:
            splits, where = self._saved, str(self.data_path.resolve())
        else:
            splits = load_hub(self._owner, self.dataset_id, self.config_name, self.revision, self.local_forms)
            where = f"hub:{self.dataset_id}"
        return dataset_dict_sources(self._owner, splits, self.split_names, self.image_column, self.label_column, where)
