"""Transforms: deterministic eval, per-image random train augmentation (workers and device), channels,
normalization on the device, random erasing."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from vitlight.data.device import DeviceFinish
from vitlight.data.transforms import Pipeline, TransformSettings, match_channels, random_crop_batch, random_flip_batch
from vitlight.errors import ConfigError


def _settings(**overrides) -> TransformSettings:
    return TransformSettings(
        **{"image_size": 16, "channels": 3, "mean": (0.5, 0.5, 0.5), "std": (0.25, 0.25, 0.25), **overrides}
    )


def _batch(size: int = 12, count: int = 8) -> torch.Tensor:
    return torch.randint(0, 256, (count, 3, size, size), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))


def test_eval_is_deterministic_resize_and_normalize() -> None:
    settings = _settings(random_resized_crop=True, horizontal_flip=True, random_crop_padding=4, random_erasing=1.0)
    pipeline, finish = Pipeline(settings, train=False), DeviceFinish(settings, train=False)
    images = _batch()
    served = pipeline.sample_stage(images)
    assert served.shape == (8, 3, 16, 16) and served.dtype == torch.uint8  # the workers hand over uint8
    first = finish(served)
    second = finish(pipeline.sample_stage(list(images)))
    assert first.shape == (8, 3, 16, 16) and first.dtype == torch.float32
    assert torch.equal(first, second)
    flat = torch.full((1, 3, 16, 16), 255, dtype=torch.uint8)
    assert torch.allclose(finish(flat), torch.full((1, 3, 16, 16), 2.0))  # (1 - 0.5) / 0.25
    zero = torch.zeros((1, 3, 16, 16), dtype=torch.uint8)
    assert torch.allclose(finish.normalize(zero), torch.full((1, 3, 16, 16), -2.0))


def test_stored_size_is_served_without_resizing() -> None:
    pipeline = Pipeline(_settings(image_size=12), train=False)
    images = _batch(12)
    assert pipeline.sample_stage(images) is images


def test_train_augmentations_draw_per_image() -> None:
    torch.manual_seed(0)
    same = _batch(16, 1).expand(64, -1, -1, -1).contiguous()
    settings = _settings(random_crop_padding=4, horizontal_flip=True)
    out = DeviceFinish(settings, train=True).augment(Pipeline(settings, train=True).sample_stage(same))
    assert out.shape == (64, 3, 16, 16) and out.dtype == torch.uint8
    assert len({tuple(image.flatten()[:40].tolist()) for image in out}) > 10
    crop = Pipeline(_settings(random_resized_crop=True, crop_scale_min=0.2), train=True)
    assert crop.sample_stage(same).shape == (64, 3, 16, 16)


def test_random_crop_is_a_window_of_the_padded_image() -> None:
    images = _batch(10, 6)
    padded = F.pad(images, (3, 3, 3, 3), mode="reflect")
    for image, window in zip(padded, random_crop_batch(images, 3)):
        matches = [(t, l) for t in range(7) for l in range(7) if torch.equal(image[:, t : t + 10, l : l + 10], window)]
        assert matches


def test_flip_is_left_right_or_nothing() -> None:
    images = _batch(6, 32)
    flipped = random_flip_batch(images)
    kinds = [torch.equal(a, b) or torch.equal(a.flip(-1), b) for a, b in zip(images, flipped)]
    assert all(kinds) and not torch.equal(images, flipped)


def test_channels() -> None:
    grey = torch.randint(0, 256, (2, 1, 4, 4), dtype=torch.uint8)
    assert torch.equal(match_channels(grey, 3)[:, 2], grey[:, 0])
    rgb = torch.zeros(2, 3, 4, 4, dtype=torch.uint8)
    rgb[:, 0] = 100
    assert match_channels(rgb, 1).shape == (2, 1, 4, 4) and int(match_channels(rgb, 1)[0, 0, 0, 0]) == 30


def test_randaugment() -> None:
    pipeline = Pipeline(_settings(randaugment="rand-m9-mstd0.5"), train=True)
    out = pipeline.sample_stage(_batch(16, 3))
    assert out.shape == (3, 3, 16, 16) and out.dtype == torch.uint8
    with pytest.raises(ConfigError, match="not a timm RandAugment string"):
        Pipeline(_settings(randaugment="bogus"), train=True)
    with pytest.raises(ConfigError, match="needs 3-channel"):
        Pipeline(_settings(randaugment="rand-m9", channels=1, mean=(0.5,), std=(0.5,)), train=True)


def test_random_erasing_on_normalized_training_batches_only() -> None:
    torch.manual_seed(0)
    settings = _settings(random_erasing=1.0)
    images = torch.full((4, 3, 16, 16), 128, dtype=torch.uint8)
    clean = DeviceFinish(settings, train=False)(images)
    erased = DeviceFinish(settings, train=True)(images)
    assert torch.equal(clean, DeviceFinish(settings, train=False).normalize(images))
    changed = (erased != clean).flatten(1).any(dim=1)
    assert changed.all()  # probability 1: every image has an erased box
    assert (erased == clean).flatten(1).any(dim=1).all()  # ... and keeps the rest
    untouched = DeviceFinish(_settings(random_erasing=0.0), train=True)(images)
    assert torch.equal(untouched, clean)
