"""RandomResizedCrop + RandAugment in one pass (vitlight.data.crop_augment): the same draws and the same
pixels as torchvision's v2.RandomResizedCrop followed by timm's RandAugment behind ToPILImage/PILToTensor,
and timm's own ops and magnitudes."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch
from PIL import Image
from timm.data.auto_augment import rand_augment_transform
from torchvision.transforms import v2

from vitlight.data.crop_augment import crop_params, resized_crop_hwc, write_planar
from vitlight.data.transforms import Pipeline, TransformSettings

DEIT_RANDAUGMENT = "rand-m9-mstd0.5-inc1"


def _seed(seed: int) -> None:
    torch.manual_seed(seed), np.random.seed(seed), random.seed(seed)


def _generators() -> tuple:
    return torch.get_rng_state(), np.random.get_state()[1].copy(), random.getstate()


def _same_generators(a: tuple, b: tuple) -> bool:
    return torch.equal(a[0], b[0]) and np.array_equal(a[1], b[1]) and a[2] == b[2]


def _images(seed: int) -> list[torch.Tensor]:
    """uint8 (3, H, W) photos-ish (smooth gradients plus noise) of several shapes: wide, tall, square, and
    one so thin that every draw misses and v2 falls back to the central crop."""
    rng = np.random.default_rng(seed)
    images = []
    for height, width in ((45, 60), (60, 45), (40, 40), (7, 150), (120, 90)):
        ramp = np.linspace(0, 200, width)[None, :, None] + np.linspace(0, 50, height)[:, None, None]
        pixels = (ramp + rng.normal(0, 25, (height, width, 3))).clip(0, 255).astype(np.uint8)
        images.append(torch.from_numpy(pixels).permute(2, 0, 1))  # a view of HWC memory, as decoded
    return images


def _pipeline(interpolation: str, size: int = 32) -> Pipeline:
    settings = TransformSettings(
        image_size=size,
        channels=3,
        mean=(0.5,) * 3,
        std=(0.5,) * 3,
        random_resized_crop=True,
        randaugment=DEIT_RANDAUGMENT,
        interpolation=interpolation,
    )
    return Pipeline(settings, train=True)


@pytest.mark.parametrize("size", [(45, 60), (60, 45), (224, 224), (7, 150), (150, 7), (1, 1)])
def test_crop_params_are_v2_make_params_draws(size: tuple[int, int]) -> None:
    crop = v2.RandomResizedCrop(32, scale=(0.08, 1.0))
    image = torch.zeros(3, *size, dtype=torch.uint8)
    for seed in range(20):
        _seed(seed)
        theirs = crop.make_params([image])
        after_theirs = torch.get_rng_state()
        _seed(seed)
        ours = crop_params(crop, *size)
        assert ours == (theirs["top"], theirs["left"], theirs["height"], theirs["width"])
        assert torch.equal(torch.get_rng_state(), after_theirs)  # the same number of draws: later ones agree


@pytest.mark.parametrize("interpolation", ["bicubic", "bilinear"])
def test_resized_crop_hwc_is_tv_resized_crop(interpolation: str) -> None:
    mode = v2.InterpolationMode(interpolation)
    image = _images(0)[4]
    for box in ((0, 0, 120, 90), (3, 5, 40, 70), (10, 20, 32, 32), (100, 0, 20, 90), (0, 0, 120, 90)):
        expected = v2.functional.resized_crop(image, *box, size=[32, 32], interpolation=mode, antialias=True)
        got = resized_crop_hwc(image, box, 32, mode)
        assert got.shape == (32, 32, 3) and got.flags["C_CONTIGUOUS"]
        assert torch.equal(torch.from_numpy(got).permute(2, 0, 1), expected)


def test_write_planar_writes_the_bands_in_order() -> None:
    pixels = np.random.default_rng(1).integers(0, 256, (5, 7, 3), dtype=np.uint8)
    out = np.zeros((3, 5, 7), dtype=np.uint8)
    write_planar(Image.fromarray(pixels), out)
    assert np.array_equal(out, pixels.transpose(2, 0, 1))


@pytest.mark.parametrize("interpolation", ["bicubic", "bilinear"])
def test_one_pass_gives_v2_crop_then_timm_randaugment(interpolation: str) -> None:
    """The pipeline's sample stage (the one-pass path) against the path before it, composed here of the
    libraries' own pieces: v2.RandomResizedCrop, then ToPILImage -> timm's policy -> PILToTensor, image by
    image. Same seeds give the same pixels and leave the generators in the same state; the bench's 'today'
    path (a randaugment that is not vitlight's wrapper) takes the old route and agrees too."""
    pipeline = _pipeline(interpolation)
    round_trip = v2.Compose([v2.ToPILImage(), pipeline.randaugment.policy, v2.PILToTensor()])
    for seed in range(8):
        images = _images(seed)
        if seed % 2:  # (C, H, W) memory too, as cached splits hand them over
            images = [image.contiguous() for image in images]
        _seed(seed)
        expected = torch.stack([round_trip(pipeline.crop(image)) for image in images])
        state = _generators()
        _seed(seed)
        got = pipeline.sample_stage(images)
        assert got.dtype == torch.uint8 and got.shape == (len(images), 3, 32, 32) and got.is_contiguous()
        assert torch.equal(got, expected)
        assert _same_generators(_generators(), state)
    old_route = _pipeline(interpolation)
    old_route.randaugment = round_trip
    _seed(0)
    assert torch.equal(old_route.sample_stage(_images(0)), (_seed(0), pipeline.sample_stage(_images(0)))[1])


def test_randaugment_ops_and_magnitudes_are_timms() -> None:
    """The policy the one-pass path calls is timm's rand_augment_transform for the string: the same ops,
    magnitudes, spreads, probabilities and number of layers (only posterize's function is vitlight's,
    for Pillow >= 12's refusal of 0 bits; tests/data/test_loader_224.py checks it)."""
    ours = _pipeline("bicubic").randaugment.policy
    timms = rand_augment_transform(DEIT_RANDAUGMENT, {"translate_const": 10, "img_mean": (124, 116, 104)})
    assert ours.num_layers == timms.num_layers == 2
    assert ours.choice_weights is None and timms.choice_weights is None

    def described(op) -> tuple:
        return (op.name, op.prob, op.magnitude, op.magnitude_std, op.magnitude_max, op.level_fn, op.kwargs, op.hparams)

    assert [described(op) for op in ours.ops] == [described(op) for op in timms.ops]
    assert len(ours.ops) == 15
    changed = [op.name for op, theirs in zip(ours.ops, timms.ops) if op.aug_fn is not theirs.aug_fn]
    assert changed == ["PosterizeIncreasing"]
