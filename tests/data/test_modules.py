"""Every data module is exported, and says its classes, image size and channels cheaply (no data read)."""

from __future__ import annotations

import pytest

import vitlight.data as data
from vitlight.data import ImageDataModule, classnames

# module: (num_classes, image_size, channels)
NAMED = {
    "CIFAR10": (10, 32, 3),
    "CIFAR100": (100, 32, 3),
    "MNIST": (10, 28, 1),
    "FashionMNIST": (10, 28, 1),
    "SVHN": (10, 32, 3),
    "STL10": (10, 96, 3),
    "OxfordPets": (37, 224, 3),
    "Flowers102": (102, 224, 3),
    "Imagenette": (10, 224, 3),
    "TinyImageNet": (200, 64, 3),
    "ImageNet": (1000, 224, 3),
}


@pytest.mark.parametrize("name", sorted(NAMED))
def test_named_module_metadata_without_data(name: str) -> None:
    module = getattr(data, name)()  # no data_dir, no standard location, offline: must not touch anything
    num_classes, image_size, channels = NAMED[name]
    assert isinstance(module, ImageDataModule)
    assert (module.num_classes, module.image_size, module.channels) == (num_classes, image_size, channels)
    assert len(set(module.classes)) == num_classes
    assert module.splits == {}


def test_all_modules_exported() -> None:
    for name in [*NAMED, "EmbeddedDigits", "ImageFolder", "HubImageDataset"]:
        assert name in data.__all__ and issubclass(getattr(data, name), ImageDataModule)


def test_class_lists_in_label_order() -> None:
    assert classnames.CIFAR10[0] == "airplane" and classnames.CIFAR10[-1] == "truck"
    assert list(classnames.CIFAR100) == sorted(classnames.CIFAR100) and len(classnames.CIFAR100) == 100
    assert list(classnames.OXFORD_PETS) == sorted(classnames.OXFORD_PETS) and len(classnames.OXFORD_PETS) == 37
    assert list(classnames.IMAGENETTE_WNIDS) == sorted(classnames.IMAGENETTE_WNIDS)
    assert classnames.FASHION_MNIST[0] == "T-shirt/top" and classnames.FASHION_MNIST[9] == "Ankle boot"


def test_image_size_and_channels_override() -> None:
    module = data.MNIST(image_size=32, channels=3)
    assert (module.image_size, module.channels) == (32, 3)
    assert module.transform_settings.mean == (0.1307,) * 3
