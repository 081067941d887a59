"""vitlight's data modules: `--data CIFAR10 --data.data_dir DIR` selects one by class name."""

from vitlight.data.base import ImageDataModule, SplitData, SplitDataset
from vitlight.data.generic import HubImageDataset, ImageFolder
from vitlight.data.named import (
    CIFAR10,
    CIFAR100,
    MNIST,
    STL10,
    SVHN,
    FashionMNIST,
    Flowers102,
    ImageNet,
    Imagenette,
    OxfordPets,
    TinyImageNet,
)
from vitlight.data.quickstart import EmbeddedDigits
from vitlight.data.sources import SourceDataModule

__all__ = [
    "ImageDataModule",
    "SourceDataModule",
    "SplitData",
    "SplitDataset",
    "EmbeddedDigits",
    "CIFAR10",
    "CIFAR100",
    "MNIST",
    "FashionMNIST",
    "SVHN",
    "STL10",
    "OxfordPets",
    "Flowers102",
    "Imagenette",
    "TinyImageNet",
    "ImageNet",
    "ImageFolder",
    "HubImageDataset",
]
