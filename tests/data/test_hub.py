"""`datasets` save_to_disk folders, and the one clear error when the hub cannot be reached."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest

from tests.data.conftest import label_value, saved_dataset, snapshot
from vitlight.data import CIFAR10, HubImageDataset, ImageNet, OxfordPets
from vitlight.errors import DataError


def test_named_module_reads_save_to_disk_without_writing(tmp_path: Path) -> None:
    root = saved_dataset(tmp_path / "saved", counts={"train": 20, "test": 6})
    before = snapshot(root)
    module = CIFAR10(data_dir=str(root), val_fraction=0.1, num_workers=0)
    module.setup()
    assert (len(module.splits["train"]), len(module.splits["val"]), len(module.splits["test"])) == (18, 2, 6)
    test = module.splits["test"]
    means = test.pixels(np.arange(len(test))).reshape(len(test), -1).mean(axis=1)
    assert np.allclose(means, [label_value(label) for label in test.labels])
    images, labels = next(iter(module.test_dataloader()))
    assert images.shape == (6, 3, 32, 32) and labels.tolist() == [0, 1, 2, 0, 1, 2]
    assert snapshot(root) == before  # the user's data folder may be read-only: nothing written


def test_hub_image_dataset_from_save_to_disk(tmp_path: Path) -> None:
    root = saved_dataset(
        tmp_path / "saved",
        counts={"train": 9, "validation": 3, "test": 3},
        names=("cat", "dog", "emu"),
        image_column="picture",
        label_column="kind",
        size=40,
    )
    before = snapshot(root)
    module = HubImageDataset(
        data_dir=str(root),
        image_column="picture",
        label_column="kind",
        val_split="validation",
        image_size=24,
        num_workers=0,
    )
    assert module.classes == ["cat", "dog", "emu"] and module.num_classes == 3  # read at construction
    module.setup()
    assert module.val_source.startswith("stored") and len(module.splits["val"]) == 3
    assert module.splits["train"].images is not None  # 40 px, one size: auto-cached
    images, labels = next(iter(module.train_dataloader()))
    assert images.shape == (9, 3, 24, 24)
    big = OxfordPets(data_dir=str(root), num_workers=0)  # large-image dataset: decoded on the fly from Arrow
    big.setup()
    image, label = big.dataset("test")[1]
    assert image.shape == (3, 224, 224) and label == 1
    assert snapshot(root) == before


def test_hub_image_dataset_missing_column(tmp_path: Path) -> None:
    root = saved_dataset(tmp_path / "saved")
    with pytest.raises(DataError, match=r"label column 'fine' is not a ClassLabel"):
        HubImageDataset(data_dir=str(root), label_column="fine")


def test_hub_unreachable_is_one_clear_error(tmp_path: Path) -> None:
    start = time.perf_counter()
    with pytest.raises(DataError) as error:
        CIFAR10().setup()  # no data_dir, no standard location: the hub, offline (tests/conftest.py)
    message = str(error.value)
    assert message.startswith("CIFAR10: cannot reach the Hugging Face hub for 'uoft-cs/cifar10' (offline: HF_")
    assert "set data.data_dir to local files (cifar-10-batches-py, an image folder" in message
    assert "\n" not in message
    with pytest.raises(
        DataError,
        match=r"HubImageDataset\(someone/pictures\): cannot reach the Hugging Face hub for 'someone/pictures'",
    ):
        HubImageDataset(dataset_id="someone/pictures", revision="v1.0")  # class names are read at construction
    with pytest.raises(
        DataError, match=r"ImageNet: cannot reach the Hugging Face hub for 'ILSVRC/imagenet-1k'.*train/ and val/"
    ):
        ImageNet().setup()
    assert time.perf_counter() - start < 20


def test_hub_offline_variable_set_after_import_is_respected(monkeypatch: pytest.MonkeyPatch) -> None:
    import datasets.config

    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", False)  # as if imported before the variable was set
    monkeypatch.delenv("HF_HUB_OFFLINE")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    with pytest.raises(DataError, match=r"\(offline: HF_DATASETS_OFFLINE=1\)"):
        CIFAR10().setup()
    assert datasets.config.HF_HUB_OFFLINE is False  # restored after the call


def test_hub_needs_an_id_or_a_folder() -> None:
    with pytest.raises(DataError, match="needs data.dataset_id"):
        HubImageDataset()


def test_gated_dataset_error_says_how_to_get_access(monkeypatch: pytest.MonkeyPatch) -> None:
    import datasets
    from datasets.exceptions import DatasetNotFoundError

    import vitlight.hub as hub

    def gated(*args, **kwargs):
        raise DatasetNotFoundError(
            "Dataset 'ILSVRC/imagenet-1k' is a gated dataset on the Hub. You must be authenticated to access it."
        )

    monkeypatch.delenv("HF_HUB_OFFLINE")
    monkeypatch.delenv("HF_DATASETS_OFFLINE")
    monkeypatch.setattr(hub, "unreachable_reason", lambda: None)  # as if online; nothing is contacted
    monkeypatch.setattr(datasets, "load_dataset", gated)
    with pytest.raises(
        DataError, match=r"ImageNet: cannot reach the Hugging Face hub for 'ILSVRC/imagenet-1k' \(gated: .*HF_TOKEN\)"
    ):
        ImageNet(revision="main").setup()
