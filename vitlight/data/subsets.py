"""Deterministic splits and nested, class-balanced subsets (the scaling study's data axis)."""

from __future__ import annotations

import numpy as np

from vitlight.errors import DataError

# The validation carve-out uses its own fixed seed so that changing the subset seed
# never moves an image between train and val.
VAL_SPLIT_SEED = 20200611


def _per_class_permutations(labels: np.ndarray, seed: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.permutation(np.flatnonzero(labels == c)) for c in np.unique(labels)]


def balanced_order(labels: np.ndarray, seed: int) -> np.ndarray:
    """All indices in a round-robin over classes: every prefix is as class-balanced as the data allows.

    Classes take turns (in a seeded order), each giving its next image from a seeded
    permutation, so the first n indices are a balanced subset and the first n lie inside
    the first m for n < m.
    """
    perms = _per_class_permutations(labels, seed)
    class_order = np.random.default_rng(seed + 1).permutation(len(perms))
    longest = max((len(p) for p in perms), default=0)
    order: list[int] = []
    for round_index in range(longest):
        for c in class_order:
            if round_index < len(perms[c]):
                order.append(int(perms[c][round_index]))
    return np.asarray(order, dtype=np.int64)


def nested_balanced_subset(labels: np.ndarray, count: int, seed: int) -> np.ndarray:
    """Indices of a class-balanced subset of `count` images; nested across counts for one seed."""
    return np.sort(balanced_order(labels, seed)[:count])


def resolve_train_size(train_size: float, pool_size: int) -> int:
    """A count (> 1) or a fraction (0 < f <= 1) of the training pool, as a count."""
    if train_size <= 0:
        raise DataError(f"data.train_size must be a positive count or a fraction in (0, 1], got {train_size}")
    count = round(train_size * pool_size) if train_size <= 1 else int(train_size)
    if count > pool_size:
        raise DataError(f"data.train_size={train_size} is larger than the {pool_size} training images available")
    return max(count, 1)


def carve_validation(labels: np.ndarray, val_fraction: float) -> tuple[np.ndarray, np.ndarray]:
    """Splits train indices into (train, val), stratified by class, the same on every call."""
    if val_fraction <= 0:
        return np.arange(len(labels)), np.arange(0)
    count = max(1, round(val_fraction * len(labels)))
    val = nested_balanced_subset(labels, count, VAL_SPLIT_SEED)
    train = np.setdiff1d(np.arange(len(labels)), val, assume_unique=True)
    return train, val
