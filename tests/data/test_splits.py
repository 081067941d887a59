"""Val carve-out (deterministic, disjoint), nested class-balanced train_size subsets, and real loaders."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.data.conftest import image_folder, label_value
from vitlight.data import CIFAR10, ImageFolder


def _file_sets(module) -> dict[str, set[str]]:
    return {split: set(data.paths) for split, data in module.splits.items()}


def test_val_carved_from_train_is_disjoint_and_deterministic(tmp_path: Path) -> None:
    root = image_folder(tmp_path / "f", counts={"train": 20, "test": 3})
    module = CIFAR10(data_dir=str(root), cache=False, val_fraction=0.1, num_workers=0)
    module.setup()
    files = _file_sets(module)
    assert len(files["val"]) == 6 and len(files["train"]) == 54
    assert not files["val"] & files["train"] and not files["val"] & files["test"]
    assert np.bincount(module.splits["val"].labels).tolist() == [2, 2, 2]  # stratified
    again = CIFAR10(data_dir=str(root), cache=False, val_fraction=0.1, num_workers=0, seed=7, train_size=9)
    again.setup()
    assert _file_sets(again)["val"] == files["val"]  # the subset seed never moves val
    assert _file_sets(again)["train"] <= files["train"]


def test_cached_val_and_train_rows_are_disjoint(tmp_path: Path) -> None:
    root = image_folder(tmp_path / "f", counts={"train": 20, "test": 3})
    module = CIFAR10(data_dir=str(root), val_fraction=0.1, num_workers=0)
    module.setup()
    train, val = module.splits["train"], module.splits["val"]
    assert train.images is val.images  # one memory map, no copies
    assert not set(train.rows) & set(val.rows) and len(train.rows) + len(val.rows) == 60


@pytest.mark.parametrize("sizes", [(3, 6, 12, 30), (0.1, 0.5, 1.0)])
def test_train_size_subsets_are_nested_and_balanced(tmp_path: Path, sizes) -> None:
    root = image_folder(tmp_path / "f", counts={"train": 11, "test": 1})
    chosen = []
    for size in sizes:
        module = CIFAR10(data_dir=str(root), cache=False, train_size=size, val_fraction=0.1, seed=3, num_workers=0)
        module.setup()
        counts = np.bincount(module.splits["train"].labels, minlength=3)
        assert counts.max() - counts[:3].min() <= 1, counts
        assert module.data_summary()["train_size"] == len(module.splits["train"])
        chosen.append(set(module.splits["train"].paths))
    assert all(small <= large for small, large in zip(chosen, chosen[1:]))
    other_seed = CIFAR10(data_dir=str(root), cache=False, train_size=sizes[0], val_fraction=0.1, seed=4, num_workers=0)
    other_seed.setup()
    assert set(other_seed.splits["train"].paths) != chosen[0] or len(chosen[0]) >= 30


def test_chosen_size_and_class_counts_are_logged(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    root = image_folder(tmp_path / "f", counts={"train": 10, "test": 1})
    module = CIFAR10(data_dir=str(root), train_size=6, val_fraction=0.1, num_workers=0)
    with caplog.at_level(logging.INFO, logger="vitlight"):
        module.setup()
    assert "CIFAR10: train 6 of 27 (train_size=6, seed 0)" in caplog.text
    assert "'airplane': 2, 'automobile': 2, 'bird': 2" in caplog.text
    summary = module.data_summary()
    assert summary["train_size"] == 6 and summary["train_size_requested"] == 6
    assert summary["class_counts"]["airplane"] == 2 and summary["class_counts"]["truck"] == 0


def test_loaders_with_two_workers_keep_pixels_with_labels(tmp_path: Path) -> None:
    root = image_folder(tmp_path / "f", classes=("a", "b", "c"), counts={"train": 8, "test": 4}, size=8)
    for cache in (True, False):
        module = ImageFolder(
            data_dir=str(root),
            image_size=8,
            batch_size=5,
            num_workers=2,
            cache=cache,
            horizontal_flip=True,
            random_crop_padding=2,
            mean=[0, 0, 0],
            std=[1, 1, 1],
        )
        module.setup()
        seen = 0
        for loader in (module.train_dataloader(), module.val_dataloader(), module.test_dataloader()):
            for images, labels in loader:
                assert images.dtype == torch.uint8 and images.shape[1:] == (3, 8, 8)
                expected = torch.tensor([float(label_value(label)) for label in labels])
                assert torch.allclose(images.float().mean(dim=(1, 2, 3)), expected, atol=1e-3)
                seen += len(labels)
        train = len(module.splits["train"])
        assert seen == 36 - train % 5  # training drops its last short batch
