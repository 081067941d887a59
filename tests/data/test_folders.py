"""Image folders (PNG and JPEG): counts, shapes, dtypes, class order, stored val, and each bad-data error."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from tests.data.conftest import CIFAR10_FIRST, image_folder, label_value, pixels_of, save_image
from vitlight.data import CIFAR10, MNIST, ImageFolder, Imagenette
from vitlight.data.decode import DataWarning
from vitlight.errors import DataError


def _mean_pixel(module, split: str) -> np.ndarray:
    data = module.splits[split]
    return data.pixels(np.arange(len(data))).reshape(len(data), -1).mean(axis=1)


@pytest.mark.parametrize("suffix", [".png", ".jpg"])
def test_named_module_reads_image_folder(tmp_path: Path, suffix: str) -> None:
    root = image_folder(
        tmp_path / "cifar", classes=("bird", "airplane", "automobile"), counts={"train": 10, "test": 3}, suffix=suffix
    )
    module = CIFAR10(data_dir=str(root), val_fraction=0.1, num_workers=0)
    module.setup()
    train, val, test = (module.splits[s] for s in ("train", "val", "test"))
    assert (len(train), len(val), len(test)) == (27, 3, 9)
    # folders are labelled by CIFAR-10's canonical order, not alphabetically: bird is 2
    assert set(np.unique(train.labels)) == {0, 1, 2}
    images, labels = next(iter(module.train_dataloader()))
    assert (
        images.shape == (len(labels), 3, 32, 32) and images.dtype == torch.uint8 and labels.dtype == torch.int64
    )  # uint8: normalized on the device
    # pixels stayed with their labels (folder "airplane" holds value 20*1+10, since image_folder wrote it as label 1)
    written = {"bird": 0, "airplane": 1, "automobile": 2}
    expected = {CIFAR10_FIRST.index(name): label_value(value) for name, value in written.items()}
    means = _mean_pixel(module, "test")
    for label, mean in zip(test.labels, means):
        assert abs(mean - expected[int(label)]) < 3


def test_image_folder_classes_read_at_construction(tmp_path: Path) -> None:
    root = image_folder(
        tmp_path / "f", classes=("zebra", "ant", "moth"), counts={"train": 4, "test": 2, "val": 2}, size=12
    )
    module = ImageFolder(data_dir=str(root), image_size=16, num_workers=0)
    assert module.classes == ["ant", "moth", "zebra"] and module.num_classes == 3  # before setup
    module.setup()
    assert module.val_source.startswith("stored")
    assert (len(module.splits["train"]), len(module.splits["val"]), len(module.splits["test"])) == (12, 6, 6)
    image, label = module.dataset("val")[0]
    assert image.shape == (3, 16, 16) and isinstance(label, int)
    means = _mean_pixel(module, "train")  # zebra was written as label 0 -> now label 2
    assert all(
        abs(m - label_value(("zebra", "ant", "moth").index(module.classes[int(l)]))) < 1
        for m, l in zip(means, module.splits["train"].labels)
    )


def test_grey_folder_channels(tmp_path: Path) -> None:
    root = image_folder(
        tmp_path / "digits", classes=("0", "1", "2"), counts={"train": 5, "test": 2}, size=28, channels=1
    )
    grey = MNIST(data_dir=str(root), num_workers=0)
    grey.setup()
    assert grey.dataset("train")[0][0].shape == (1, 28, 28)
    rgb = MNIST(data_dir=str(root), channels=3, image_size=32, num_workers=0)
    rgb.setup()
    image, _ = rgb.dataset("test")[0]
    assert image.shape == (3, 32, 32) and torch.allclose(image[0], image[1])


def test_imagenette_wordnet_folders_and_val_as_test(tmp_path: Path) -> None:
    root = tmp_path / "imagenette2-320"
    for wnid, label in (("n03888605", 9), ("n01440764", 0)):
        for split in ("train", "val"):
            for item in range(3):
                save_image(root / split / wnid / f"{item}.JPEG", pixels_of(label, 20))
    module = Imagenette(data_dir=str(root), image_size=16, num_workers=0, val_fraction=0.2)
    module.setup()
    assert sorted(np.unique(module.splits["test"].labels)) == [0, 9]
    assert module.splits["test"].origin.endswith("val") and module.val_source.startswith("carved")
    assert module.splits["train"].paths is not None  # large-image dataset: decoded on the fly
    images, labels = next(iter(module.test_dataloader()))
    assert images.shape == (6, 3, 16, 16)


def test_missing_split_is_one_clear_error(tmp_path: Path) -> None:
    root = image_folder(tmp_path / "f", counts={"train": 3})
    with pytest.raises(DataError, match=r"no test split in .*f \(looked for 'test'"):
        ImageFolder(data_dir=str(root)).setup()


def test_wrong_path_is_one_clear_error(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="does-not-exist.*does not exist"):
        CIFAR10(data_dir=str(tmp_path / "does-not-exist")).setup()
    with pytest.raises(DataError, match="found no CIFAR10 files in"):
        CIFAR10(data_dir=str(tmp_path)).setup()


def test_empty_class_folder_is_one_clear_error(tmp_path: Path) -> None:
    root = image_folder(tmp_path / "f", counts={"train": 3, "test": 1})
    (root / "test" / "bird" / "000.png").unlink()
    with pytest.raises(DataError, match=r"class folder .*test/bird is empty"):
        CIFAR10(data_dir=str(root)).setup()


def test_label_outside_num_classes_names_the_folder(tmp_path: Path) -> None:
    root = image_folder(tmp_path / "f", classes=("0", "1", "12"), counts={"train": 3, "test": 1})
    with pytest.raises(DataError, match=r"class folder .*train/12 is label 12, outside 0..9"):
        CIFAR10(data_dir=str(root)).setup()


def test_unknown_class_folder_is_one_clear_error(tmp_path: Path) -> None:
    root = image_folder(tmp_path / "f", classes=("airplane", "spaceship"), counts={"train": 3, "test": 1})
    with pytest.raises(DataError, match=r"class folder .*train/spaceship is not a CIFAR10 class"):
        CIFAR10(data_dir=str(root)).setup()
    folder = image_folder(tmp_path / "g", classes=("a", "b"), counts={"train": 2, "test": 1})
    (folder / "test" / "c").mkdir()
    save_image(folder / "test" / "c" / "x.png", pixels_of(0))
    with pytest.raises(DataError, match=r"class folder .*test/c is not one of the 2 classes"):
        ImageFolder(data_dir=str(folder)).setup()


@pytest.mark.parametrize("cache", [True, False])
def test_unreadable_image_skipped_with_one_warning(tmp_path: Path, cache: bool) -> None:
    root = image_folder(tmp_path / "f", counts={"train": 40, "test": 2})  # 120 train images
    (root / "train" / "bird" / "007.png").write_bytes(b"not an image at all")
    module = CIFAR10(data_dir=str(root), cache=cache, num_workers=0, val_fraction=0)
    with pytest.warns(DataWarning, match=r"skipped 1 unreadable image\(s\) of 120 .*007.png") as record:
        module.setup()
    assert len([w for w in record if issubclass(w.category, DataWarning)]) == 1
    assert len(module.splits["train"]) == 119


def test_truncated_images_over_one_percent_fail(tmp_path: Path) -> None:
    root = image_folder(tmp_path / "f", counts={"train": 10, "test": 2}, suffix=".jpg")
    for item in ("001", "002"):
        path = root / "train" / "airplane" / f"{item}.jpg"
        path.write_bytes(path.read_bytes()[:200])  # header intact, data cut off
    with pytest.raises(DataError, match=r"2 of 30 images in .*train cannot be read \(more than 1%\)"):
        CIFAR10(data_dir=str(root), num_workers=0).setup()


def test_truncated_image_found_while_decoding_on_the_fly_is_replaced(tmp_path: Path) -> None:
    root = image_folder(tmp_path / "f", counts={"train": 2, "test": 1}, suffix=".jpg")
    path = save_image(
        root / "test" / "airplane" / "000.jpg", np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)
    )
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])  # passes the header check, fails to decode
    module = CIFAR10(data_dir=str(root), cache=False, num_workers=0)
    module.setup()
    with pytest.warns(DataWarning, match="skipping unreadable image .*000.jpg"):
        images, labels = next(iter(module.test_dataloader()))
    assert images.shape[0] == 3 and torch.isfinite(images).all()
