"""The datasets' own on-disk formats: CIFAR pickles, IDX (gz or not), STL-10 binaries, SVHN .mat, Tiny-ImageNet."""

from __future__ import annotations

import gzip
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.data.conftest import cifar_batches, idx_files, label_value, pixels_of, save_image
from vitlight.data import CIFAR10, CIFAR100, MNIST, STL10, SVHN, FashionMNIST, Flowers102, OxfordPets, TinyImageNet
from vitlight.errors import DataError


def _check_pixels_follow_labels(module, split: str) -> None:
    data = module.splits[split]
    means = data.pixels(np.arange(len(data))).reshape(len(data), -1).mean(axis=1)
    assert np.allclose(means, [label_value(label) for label in data.labels])


@pytest.mark.parametrize("inside", [True, False])
def test_cifar10_batches(tmp_path: Path, inside: bool) -> None:
    folder = cifar_batches(tmp_path, per_batch=6)
    module = CIFAR10(data_dir=str(folder if inside else tmp_path), val_fraction=0.2, num_workers=0)
    module.setup()
    assert (len(module.splits["train"]) + len(module.splits["val"]), len(module.splits["test"])) == (30, 6)
    assert module.splits["train"].images.shape[1:] == (32, 32, 3)
    _check_pixels_follow_labels(module, "train")
    _check_pixels_follow_labels(module, "test")
    images, labels = next(iter(module.test_dataloader()))
    assert images.shape == (6, 3, 32, 32) and labels.tolist() == [5, 6, 7, 8, 9, 0]


def test_cifar100_batches_fine_labels(tmp_path: Path) -> None:
    cifar_batches(tmp_path, "cifar100", per_batch=12, num_classes=100, labels=[0, 99, 50, 7] * 3)
    module = CIFAR100(data_dir=str(tmp_path), num_workers=0)
    module.setup()
    assert module.num_classes == 100 and len(module.splits["test"]) == 12
    assert sorted(set(module.splits["test"].labels.tolist())) == [0, 7, 50, 99]


def test_cifar_label_outside_num_classes_names_the_file(tmp_path: Path) -> None:
    folder = cifar_batches(tmp_path, per_batch=3)
    (folder / "test_batch").write_bytes(
        pickle.dumps({b"data": np.zeros((2, 3072), np.uint8), b"labels": [1, 10]}, protocol=2)
    )
    with pytest.raises(DataError, match=r"test_batch: label 10 \(image 1\) is outside 0..9"):
        CIFAR10(data_dir=str(folder)).setup()


def test_cifar_truncated_batch_names_the_file(tmp_path: Path) -> None:
    folder = cifar_batches(tmp_path, per_batch=3)
    path = folder / "data_batch_3"
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(DataError, match=r"data_batch_3 is not a readable CIFAR batch"):
        CIFAR10(data_dir=str(folder)).setup()


def test_cifar_batch_that_would_run_code_is_refused(tmp_path: Path) -> None:
    folder = cifar_batches(tmp_path, per_batch=3)

    class Exploit:
        def __reduce__(self):
            return (print, ("pwned",))

    (folder / "test_batch").write_bytes(pickle.dumps({b"data": Exploit(), b"labels": [0]}))
    with pytest.raises(DataError, match="unexpected object builtins.print"):
        CIFAR10(data_dir=str(folder)).setup()


@pytest.mark.parametrize("gz", [True, False])
def test_mnist_idx(tmp_path: Path, gz: bool) -> None:
    idx_files(tmp_path / "MNIST" / "raw", train=30, test=10, gz=gz)  # torchvision's layout
    module = MNIST(data_dir=str(tmp_path), val_fraction=0.1, num_workers=0)
    module.setup()
    assert (len(module.splits["train"]), len(module.splits["val"]), len(module.splits["test"])) == (27, 3, 10)
    assert module.splits["test"].images.shape[1:] == (28, 28, 1)
    _check_pixels_follow_labels(module, "test")
    images, labels = next(iter(module.test_dataloader()))
    assert images.shape == (10, 1, 28, 28) and labels.tolist() == list(range(10))


def test_fashion_mnist_found_in_standard_location(tmp_path: Path, no_standard_locations: Path) -> None:
    idx_files(no_standard_locations / "fashion-mnist", train=20, test=10)  # like /usr/share/datasets/fashion-mnist
    module = FashionMNIST(num_workers=0)
    module.setup()
    assert len(module.splits["test"]) == 10 and module.classes[0] == "T-shirt/top"
    assert "fashion-mnist" in module.splits["test"].origin


def test_truncated_idx_names_the_file(tmp_path: Path) -> None:
    idx_files(tmp_path, train=20, test=10, gz=True)
    path = tmp_path / "t10k-images-idx3-ubyte.gz"
    path.write_bytes(gzip.compress(gzip.decompress(path.read_bytes())[:-100]))
    with pytest.raises(DataError, match=r"t10k-images-idx3-ubyte.gz is truncated"):
        MNIST(data_dir=str(tmp_path)).setup()


def test_idx_missing_labels_file(tmp_path: Path) -> None:
    idx_files(tmp_path, gz=False)
    (tmp_path / "t10k-labels-idx1-ubyte").unlink()
    with pytest.raises(DataError, match=r"t10k-labels-idx1-ubyte\[.gz\] is missing"):
        MNIST(data_dir=str(tmp_path)).setup()


def test_stl10_binary(tmp_path: Path) -> None:
    folder = tmp_path / "stl10_binary"
    folder.mkdir()
    for split, count in (("train", 10), ("test", 4)):
        labels = np.arange(count) % 10
        images = np.stack([pixels_of(label, 96) for label in labels])
        images[:, 0, 5, 0] = 255  # a marker at row 0, column 5 checks the column-major transpose
        images.transpose(0, 3, 2, 1).tofile(folder / f"{split}_X.bin")
        (labels + 1).astype(np.uint8).tofile(folder / f"{split}_y.bin")
    module = STL10(data_dir=str(tmp_path), num_workers=0)
    module.setup()
    test = module.splits["test"]
    assert test.labels.tolist() == [0, 1, 2, 3] and test.images.shape == (4, 96, 96, 3)
    assert test.pixels(np.array([0]))[0, 0, 5, 0] == 255 and test.pixels(np.array([0]))[0, 5, 0, 0] != 255


def test_svhn_mat(tmp_path: Path) -> None:
    savemat = pytest.importorskip("scipy.io").savemat
    for split, count in (("train", 12), ("test", 5)):
        labels = np.arange(count) % 10
        images = np.stack([pixels_of(label, 32) for label in labels])  # (N, 32, 32, 3)
        savemat(
            tmp_path / f"{split}_32x32.mat",
            {"X": images.transpose(1, 2, 3, 0), "y": np.where(labels == 0, 10, labels)[:, None]},
        )
    module = SVHN(data_dir=str(tmp_path), num_workers=0)
    module.setup()
    assert module.splits["test"].labels.tolist() == [0, 1, 2, 3, 4]
    _check_pixels_follow_labels(module, "test")


def test_tiny_imagenet_original_layout(tmp_path: Path) -> None:
    root = tmp_path / "tiny-imagenet-200"
    wnids = [f"n{index:08d}" for index in range(200)]
    (root / "val" / "images").mkdir(parents=True)
    (root / "wnids.txt").write_text("\n".join(reversed(wnids)) + "\n")  # file order is not label order
    for label, wnid in enumerate(wnids):
        save_image(root / "train" / wnid / "images" / f"{wnid}_0.JPEG", pixels_of(label % 12, 8))
        (root / "train" / wnid / f"{wnid}_boxes.txt").write_text("")
    lines = []
    for item, label in enumerate((0, 5, 199)):
        save_image(root / "val" / "images" / f"val_{item}.JPEG", pixels_of(label % 12, 8))
        lines.append(f"val_{item}.JPEG\t{wnids[label]}\t0\t0\t8\t8")
    (root / "val" / "val_annotations.txt").write_text("\n".join(lines) + "\n")
    save_image(root / "test" / "images" / "test_0.JPEG", pixels_of(0, 8))  # unlabelled: never read
    module = TinyImageNet(data_dir=str(root), image_size=8, num_workers=0, val_fraction=0)
    assert module.classes == wnids and module.num_classes == 200
    module.setup()
    assert len(module.splits["train"]) == 200 and module.splits["test"].labels.tolist() == [0, 5, 199]
    images, labels = next(iter(module.test_dataloader()))
    assert images.shape == (3, 3, 8, 8) and torch.isfinite(images).all()


def test_oxford_pets_annotation_lists(tmp_path: Path) -> None:
    root = tmp_path / "oxford-iiit-pet"
    (root / "annotations").mkdir(parents=True)
    for split, names in (("trainval", ["Abyssinian_1", "yorkshire_terrier_2", "Bengal_3"]), ("test", ["beagle_4"])):
        lines = ["#Image CLASS-ID SPECIES BREED ID"]
        for name in names:
            label = {"Abyssinian": 1, "yorkshire": 37, "Bengal": 6, "beagle": 5}[name.split("_")[0]]
            save_image(root / "images" / f"{name}.jpg", pixels_of(label % 12, 30))
            lines.append(f"{name} {label} 1 1")
        (root / "annotations" / f"{split}.txt").write_text("\n".join(lines) + "\n")
    module = OxfordPets(data_dir=str(tmp_path), image_size=16, num_workers=0, val_fraction=0)
    module.setup()
    assert sorted(module.splits["train"].labels.tolist()) == [0, 5, 36] and module.splits["test"].labels.tolist() == [4]
    assert module.classes[36] == "yorkshire_terrier"
    image, label = module.dataset("test")[0]
    assert image.shape == (3, 16, 16) and label == 4


def test_flowers102_mat_files_with_stored_val(tmp_path: Path) -> None:
    savemat = pytest.importorskip("scipy.io").savemat
    root = tmp_path / "flowers-102"
    labels = np.array([1, 2, 102, 5, 7, 1])  # 1-based, as in imagelabels.mat
    for number, label in enumerate(labels, start=1):
        save_image(root / "jpg" / f"image_{number:05d}.jpg", pixels_of(label % 12, 12))
    savemat(root / "imagelabels.mat", {"labels": labels[None, :]})
    savemat(root / "setid.mat", {"trnid": np.array([[1, 2, 3]]), "valid": np.array([[4]]), "tstid": np.array([[5, 6]])})
    module = Flowers102(data_dir=str(tmp_path), image_size=8, num_workers=0)
    module.setup()
    assert sorted(module.splits["train"].labels.tolist()) == [0, 1, 101]
    assert module.splits["val"].labels.tolist() == [4] and module.val_source.startswith("stored")
    assert module.splits["test"].labels.tolist() == [6, 0]
