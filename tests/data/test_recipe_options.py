"""The DeiT recipe's data options: timm's eval transform (resize 256, centre crop 224, bicubic) in the
sample stage on uint8, bicubic interpolation, and timm's repeated-augmentation sampler."""

from __future__ import annotations

import pytest
import torch
from torchvision.transforms.v2 import InterpolationMode
from torchvision.transforms.v2 import functional as TF

from tests.conftest import write_image_folder
from vitlight.data import ImageFolder
from vitlight.data.transforms import Pipeline, TransformSettings
from vitlight.errors import ConfigError, DataError


def _settings(**overrides) -> TransformSettings:
    return TransformSettings(**{"image_size": 28, "channels": 3, "mean": (0.5,) * 3, "std": (0.25,) * 3, **overrides})


def test_eval_crop_resizes_the_short_side_then_crops_the_centre_on_uint8():
    pipeline = Pipeline(_settings(eval_crop_pct=0.875, interpolation="bicubic", random_resized_crop=True), train=False)
    rows, cols = torch.meshgrid(torch.arange(40.0), torch.arange(60.0), indexing="ij")  # a smooth, non-square image
    image = torch.stack([rows * 6, cols * 4, (rows + cols) * 2.5]).round().clamp(0, 255).to(torch.uint8)
    out = pipeline.sample_stage([image])
    assert out.dtype == torch.uint8 and out.shape == (1, 3, 28, 28)
    # 28 / 0.875 = 32: the 40x60 image becomes 32x48, then its centre 28x28 (as DeiT's 256 -> 224)
    expected = TF.center_crop(TF.resize(image, [32], interpolation=InterpolationMode.BICUBIC, antialias=True), [28, 28])
    assert (out[0].int() - expected.int()).abs().max() <= 1  # timm's (torchvision v1) resize rounds its own way
    batch = image.unsqueeze(0).expand(2, -1, -1, -1).contiguous()
    assert torch.equal(pipeline.sample_stage(batch), out.expand(2, -1, -1, -1))  # a cached batch: same result
    bilinear = Pipeline(_settings(eval_crop_pct=0.875), train=False).sample_stage([image])
    assert not torch.equal(bilinear, out)  # the interpolation option reaches the eval transform


def test_training_is_unaffected_by_the_eval_crop():
    pipeline = Pipeline(_settings(eval_crop_pct=0.875), train=True)
    image = torch.randint(0, 256, (1, 3, 28, 28), dtype=torch.uint8)
    assert pipeline.sample_stage(image) is image


@pytest.mark.parametrize("bad", [{"eval_crop_pct": 1.5}, {"interpolation": "lanczos"}])
def test_bad_options_are_one_line_errors(bad):
    with pytest.raises(ConfigError, match=next(iter(bad))):
        Pipeline(_settings(**bad), train=False)


def test_repeated_augmentation_uses_timms_sampler_outside_ddp(tmp_path):
    from timm.data.distributed_sampler import RepeatAugSampler

    folder = write_image_folder(tmp_path / "images", per_class=10, size=8)
    data = ImageFolder(
        data_dir=str(folder),
        image_size=8,
        batch_size=6,
        num_workers=0,
        val_fraction=0.1,
        repeated_augmentation=3,
        random_resized_crop=True,
    )
    loader = data.train_dataloader()
    sampler = loader.sampler
    assert isinstance(sampler, RepeatAugSampler) and sampler.num_replicas == 1 and sampler.rank == 0
    indices = list(sampler)
    assert len(indices) == len(data.splits["train"])  # one epoch still serves as many samples as images
    assert all(indices[i] == indices[i + 1] == indices[i + 2] for i in range(0, len(indices) - 2, 3))
    images, labels = next(iter(loader))
    assert images.shape[0] == 6 and not torch.equal(images[0], images[1])  # copies of one image, augmented apart
    assert labels[0] == labels[1] == labels[2]
    plain = ImageFolder(data_dir=str(folder), image_size=8, num_workers=0, val_fraction=0.1)
    assert not isinstance(plain.train_dataloader().sampler, RepeatAugSampler)
    with pytest.raises(DataError, match="repeated_augmentation"):
        ImageFolder(data_dir=str(folder), repeated_augmentation=-1)
