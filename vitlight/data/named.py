"""One data module per dataset. Each reads, in this order: `data_dir`; a standard location
(see vitlight.data.sources); the Hugging Face hub (`hub_id`, optionally at `revision`).

Small-image datasets (CIFAR, MNIST, Fashion-MNIST, SVHN, STL-10, Tiny-ImageNet) are decoded
once into the uint8 cache at their stored size. Large-image ones (Oxford Pets, Flowers-102,
Imagenette, ImageNet) decode on the fly in the loader workers; `cache: true` stores them
resized to image_size instead: N * image_size^2 * 3 bytes (ImageNet train: 15.7 GB at 64 px,
193 GB at 224 px).
"""

from __future__ import annotations

from functools import cached_property
from pathlib import Path

from vitlight.data import classnames
from vitlight.data.readers import SourceSplit
from vitlight.data.readers.binary import find_stl10, find_svhn
from vitlight.data.readers.cifar import find_cifar
from vitlight.data.readers.folder import class_folders, find_tiny_imagenet, tiny_imagenet_wnids
from vitlight.data.readers.idx import find_idx
from vitlight.data.readers.lists import find_flowers, find_pets
from vitlight.data.sources import SourceDataModule
from vitlight.data.transforms import IMAGENET_MEAN, IMAGENET_STD

FOLDERS = "an image folder with train/<class>/ and test/<class>/ (optional val/), or a save_to_disk folder"


class CIFAR10(SourceDataModule):
    """CIFAR-10: 32x32 RGB, 10 classes, 50,000 train (val carved) and 10,000 test."""

    class_names = classnames.CIFAR10
    mean = (0.4914, 0.4822, 0.4465)
    std = (0.2470, 0.2435, 0.2616)
    hub_id = "uoft-cs/cifar10"
    image_column = "img"
    local_names = ("cifar-10-batches-py", "cifar10", "CIFAR10")
    local_forms = f"cifar-10-batches-py, {FOLDERS}"

    def read_native(self, root: Path) -> dict[str, SourceSplit] | None:
        return find_cifar(root, "cifar10", self.num_classes)


class CIFAR100(SourceDataModule):
    """CIFAR-100 (fine labels): 32x32 RGB, 100 classes, 50,000 train (val carved) and 10,000 test."""

    class_names = classnames.CIFAR100
    mean = (0.5071, 0.4865, 0.4409)
    std = (0.2673, 0.2564, 0.2762)
    hub_id = "uoft-cs/cifar100"
    image_column = "img"
    label_column = "fine_label"
    local_names = ("cifar-100-python", "cifar100", "CIFAR100")
    local_forms = f"cifar-100-python, {FOLDERS}"

    def read_native(self, root: Path) -> dict[str, SourceSplit] | None:
        return find_cifar(root, "cifar100", self.num_classes)


class MNIST(SourceDataModule):
    """MNIST digits: 28x28 grey, 10 classes, 60,000 train (val carved) and 10,000 test."""

    class_names = classnames.DIGITS
    default_image_size = 28
    default_channels = 1
    native_channels = 1
    mean = (0.1307,)
    std = (0.3081,)
    hub_id = "ylecun/mnist"
    local_names = ("mnist", "MNIST")
    local_forms = f"IDX files such as train-images-idx3-ubyte[.gz], {FOLDERS}"

    def read_native(self, root: Path) -> dict[str, SourceSplit] | None:
        return find_idx(root, self.num_classes)


class FashionMNIST(MNIST):
    """Fashion-MNIST: 28x28 grey, 10 classes, 60,000 train (val carved) and 10,000 test.

    Debian's `dataset-fashion-mnist` package (/usr/share/datasets/fashion-mnist) is found without data_dir.
    """

    class_names = classnames.FASHION_MNIST
    mean = (0.2860,)
    std = (0.3530,)
    hub_id = "zalando-datasets/fashion_mnist"
    local_names = ("fashion-mnist", "FashionMNIST", "fashion_mnist")


class SVHN(SourceDataModule):
    """SVHN cropped digits: 32x32 RGB, 10 classes, 73,257 train (val carved) and 26,032 test (no "extra")."""

    class_names = classnames.DIGITS
    mean = (0.4377, 0.4438, 0.4728)
    std = (0.1980, 0.2010, 0.1970)
    hub_id = "ufldl-stanford/svhn"
    hub_config = "cropped_digits"
    local_names = ("svhn", "SVHN")
    local_forms = f"train_32x32.mat and test_32x32.mat, {FOLDERS}"

    def read_native(self, root: Path) -> dict[str, SourceSplit] | None:
        return find_svhn(root, self.num_classes)


class STL10(SourceDataModule):
    """STL-10 (labelled part): 96x96 RGB, 10 classes, 5,000 train (val carved) and 8,000 test."""

    class_names = classnames.STL10
    default_image_size = 96
    mean = (0.4467, 0.4398, 0.4066)
    std = (0.2603, 0.2566, 0.2713)
    hub_id = "tanganke/stl10"
    local_names = ("stl10_binary", "stl10", "STL10")
    local_forms = f"stl10_binary/ (train_X.bin, ...), {FOLDERS}"

    def read_native(self, root: Path) -> dict[str, SourceSplit] | None:
        return find_stl10(root, self.num_classes)


class OxfordPets(SourceDataModule):
    """Oxford-IIIT Pets: 37 breeds, 3,680 trainval (val carved) and 3,669 test; decoded on the fly."""

    class_names = classnames.OXFORD_PETS
    default_image_size = 224
    mean = IMAGENET_MEAN
    std = IMAGENET_STD
    hub_id = "timm/oxford-iiit-pet"
    local_names = ("oxford-iiit-pet", "oxford_pets", "OxfordPets")
    local_forms = f"oxford-iiit-pet/ (images/ and annotations/trainval.txt, test.txt), {FOLDERS}"
    cache_default = False

    def read_native(self, root: Path) -> dict[str, SourceSplit] | None:
        return find_pets(root, self.num_classes)


class Flowers102(SourceDataModule):
    """Oxford Flowers-102: 102 classes named by their official number; decoded on the fly.

    The original files have a stored validation split (1,020 train, 1,020 val, 6,149 test).
    """

    class_names = classnames.FLOWERS102
    default_image_size = 224
    mean = IMAGENET_MEAN
    std = IMAGENET_STD
    hub_id = "nelorth/oxford-flowers"
    local_names = ("flowers-102", "flowers102", "Flowers102")
    local_forms = f"flowers-102/ (jpg/, imagelabels.mat, setid.mat), {FOLDERS}"
    cache_default = False

    def read_native(self, root: Path) -> dict[str, SourceSplit] | None:
        return find_flowers(root, self.num_classes)


class Imagenette(SourceDataModule):
    """Imagenette (320 px): 10 ImageNet classes; its val/ is the test split (val is carved from train)."""

    class_names = classnames.IMAGENETTE
    wnids = classnames.IMAGENETTE_WNIDS
    default_image_size = 224
    mean = IMAGENET_MEAN
    std = IMAGENET_STD
    hub_id = "frgfm/imagenette"
    hub_config = "320px"
    local_names = ("imagenette2-320", "imagenette2", "imagenette", "Imagenette")
    local_forms = "imagenette2-320/ (train/ and val/ with one folder per WordNet id), or a save_to_disk folder"
    cache_default = False


def _local_class_names(module: SourceDataModule, count: int) -> list[str]:
    """WordNet ids from wnids.txt or the train/ folders when there are `count` of them, else indices."""
    root = module.local_root()
    if root is not None:
        names = tiny_imagenet_wnids(root)
        if names is None and (root / "train").is_dir():
            names = class_folders(root / "train")
        if names is not None and len(names) == count:
            return names
    return [str(index) for index in range(count)]


class TinyImageNet(SourceDataModule):
    """Tiny-ImageNet: 64x64 RGB, 200 classes, 100,000 train (val carved).

    Its labelled val/ (10,000; "valid" on the hub) is the test split, since its test/ has no labels.
    Class names are the WordNet ids (sorted) when wnids.txt or train/ is at hand, else indices.
    """

    default_image_size = 64
    mean = (0.4802, 0.4481, 0.3975)
    std = (0.2770, 0.2691, 0.2821)
    hub_id = "zh-plus/tiny-imagenet"
    local_names = ("tiny-imagenet-200", "tiny-imagenet", "TinyImageNet")
    local_forms = f"tiny-imagenet-200/ (wnids.txt, train/, val/val_annotations.txt), {FOLDERS}"

    @cached_property
    def classes(self) -> list[str]:
        return _local_class_names(self, 200)

    def read_native(self, root: Path) -> dict[str, SourceSplit] | None:
        return find_tiny_imagenet(type(self).__name__, root, self.class_index())


class ImageNet(SourceDataModule):
    """ImageNet-1k (ILSVRC 2012): 1000 classes, 1.28M train (val carved); the 50,000 val images are the test split.

    Gated on the hub: accept its terms and log in (HF_TOKEN or `hf auth login`), or point data_dir
    at train/ and val/ folders with one folder per WordNet id. Decoded on the fly. Class names
    are the WordNet ids when data_dir/train holds 1000 folders, else indices.
    """

    default_image_size = 224
    mean = IMAGENET_MEAN
    std = IMAGENET_STD
    hub_id = "ILSVRC/imagenet-1k"
    split_names = {"train": ("train",), "test": ("val", "validation"), "val": ()}
    local_names = ("imagenet", "ImageNet", "ILSVRC2012", "imagenet-1k")
    local_forms = "train/ and val/ with one folder per WordNet id, or a save_to_disk folder"
    cache_default = False

    @cached_property
    def classes(self) -> list[str]:
        return _local_class_names(self, 1000)
