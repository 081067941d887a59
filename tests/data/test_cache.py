"""The decode cache: reused across runs without decoding again, keyed by the files, written atomically."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

import vitlight.data.decode as decode
import vitlight.data.readers.cifar as cifar
import vitlight.data.sources as sources
from tests.data.conftest import cache_root, cifar_batches, image_folder, pixels_of, save_image
from vitlight.data import CIFAR10, ImageFolder
from vitlight.data.cache import ImageCache, MappedImages


@pytest.fixture
def decode_calls(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    calls: list[str] = []
    real = decode.decode_image

    def spy(source, channels=None):
        calls.append(source)
        return real(source, channels)

    monkeypatch.setattr(decode, "decode_image", spy)
    return calls


def test_second_setup_reuses_the_cache_without_decoding(tmp_path: Path, decode_calls: list[str]) -> None:
    root = image_folder(tmp_path / "f", counts={"train": 5, "test": 2})
    first = CIFAR10(data_dir=str(root), num_workers=0)
    first.setup()
    assert len(decode_calls) == 21  # every train and test image, once
    entries = sorted(p.name for p in cache_root().iterdir() if p.is_dir())
    assert len(entries) == 2 and all(name.startswith("CIFAR10-") for name in entries)
    decode_calls.clear()
    second = CIFAR10(data_dir=str(root), num_workers=0, train_size=3)
    second.setup()
    next(iter(second.train_dataloader()))
    assert decode_calls == []
    assert isinstance(second.splits["train"].images, MappedImages)
    assert np.array_equal(second.splits["test"].pixels(np.arange(6)), first.splits["test"].pixels(np.arange(6)))


def test_changed_file_invalidates_the_cache(tmp_path: Path, decode_calls: list[str]) -> None:
    root = image_folder(tmp_path / "f", counts={"train": 5, "test": 2})
    CIFAR10(data_dir=str(root), num_workers=0).setup()
    decode_calls.clear()
    changed = root / "test" / "bird" / "001.png"
    save_image(changed, pixels_of(7))
    os.utime(changed, ns=(1, 1))
    module = CIFAR10(data_dir=str(root), num_workers=0)
    module.setup()
    assert len(decode_calls) == 6  # the test split again, not train
    assert module.splits["test"].pixels(np.arange(6)).max() == pixels_of(7).max()


def test_cifar_batches_are_read_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = cifar_batches(tmp_path, per_batch=4)
    reads: list[Path] = []
    real = cifar.read_batch
    monkeypatch.setattr(cifar, "read_batch", lambda *args: reads.append(args[0]) or real(*args))
    CIFAR10(data_dir=str(folder)).setup()
    assert len(reads) == 6
    CIFAR10(data_dir=str(folder)).setup()
    assert len(reads) == 6


def test_cache_dir_argument(tmp_path: Path) -> None:
    root = image_folder(tmp_path / "f", counts={"train": 3, "test": 1})
    CIFAR10(data_dir=str(root), cache_dir=str(tmp_path / "mine"), num_workers=0).setup()
    assert len(list((tmp_path / "mine").glob("CIFAR10-train-*"))) == 1


def test_killed_write_leaves_no_trusted_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = image_folder(tmp_path / "f", counts={"train": 4, "test": 2})
    real = decode.decode_image
    calls = []

    def dies_half_way(source, channels=None):
        calls.append(source)
        if len(calls) == 6:
            raise KeyboardInterrupt  # like a kill in the middle of the write
        return real(source, channels)

    monkeypatch.setattr(decode, "decode_image", dies_half_way)
    with pytest.raises(KeyboardInterrupt):
        CIFAR10(data_dir=str(root), num_workers=0).setup()
    assert [p.name for p in cache_root().iterdir()] == []  # neither an entry nor a temporary folder
    monkeypatch.setattr(decode, "decode_image", real)
    module = CIFAR10(data_dir=str(root), num_workers=0)
    module.setup()
    assert len(module.splits["train"]) + len(module.splits["val"]) == 12


def test_incomplete_entry_is_not_trusted(tmp_path: Path) -> None:
    store = ImageCache(tmp_path / "cache")
    store.write("entry", lambda writer: writer.add(np.zeros((3, 4, 4, 3), np.uint8), np.arange(3)))
    assert store.read("entry")[0].shape == (3, 4, 4, 3)
    images = tmp_path / "cache" / "entry" / "images.u8"
    images.write_bytes(images.read_bytes()[:-5])
    assert store.read("entry") is None


def test_auto_cache_for_small_uniform_images_only(tmp_path: Path) -> None:
    small = image_folder(tmp_path / "small", classes=("a", "b"), counts={"train": 3, "test": 1}, size=32)
    module = ImageFolder(data_dir=str(small), image_size=32, num_workers=0)
    module.setup()
    assert module.splits["train"].images is not None
    large = image_folder(tmp_path / "large", classes=("a", "b"), counts={"train": 3, "test": 1}, size=128)
    module = ImageFolder(data_dir=str(large), image_size=32, num_workers=0)
    module.setup()
    assert module.splits["train"].paths is not None and module.splits["train"].images is None


def test_odd_sized_image_resized_to_the_common_size_with_a_warning(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = image_folder(tmp_path / "f", classes=("a", "b"), counts={"train": 10, "test": 1}, size=20)
    save_image(root / "train" / "a" / "odd.png", pixels_of(0, 40))
    monkeypatch.setattr(sources, "common_size", lambda paths: (20, 20))  # the sampled headers missed the odd one
    module = ImageFolder(data_dir=str(root), image_size=16, cache=True, num_workers=0, val_fraction=0)
    with pytest.warns(UserWarning, match=r"resized 1 image\(s\) of .*train to 20x20"):
        module.setup()
    assert module.splits["train"].images.shape == (21, 20, 20, 3)


def test_forced_cache_of_mixed_sizes_stores_image_size(tmp_path: Path) -> None:
    root = image_folder(tmp_path / "f", classes=("a", "b"), counts={"train": 2, "test": 1}, size=20)
    save_image(root / "train" / "a" / "odd.png", pixels_of(0, 40))
    module = ImageFolder(data_dir=str(root), image_size=16, cache=True, num_workers=0, val_fraction=0)
    module.setup()
    assert module.splits["train"].images.shape == (5, 16, 16, 3)
