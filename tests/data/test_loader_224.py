"""The 224 px loader: the shrunk copy (`vitlight shrink_images`), augmentation draws that depend on the
batch alone (also across a process restart, also for RandAugment), generators the loader leaves alone,
and the worker-count rule."""

from __future__ import annotations

import hashlib
import os
import random
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from tests.conftest import smoke_fit_on_folder
from vitlight.cli import main
from vitlight.data import ImageFolder
from vitlight.data.base import workers_per_process
from vitlight.data.decode import decode_image, decode_image_pil
from vitlight.data.shrink import shrink_folder, shrunk_size
from vitlight.data.transforms import _randaugment

ROOT = Path(__file__).resolve().parents[2]
DEIT = {"random_resized_crop": True, "interpolation": "bicubic", "randaugment": "rand-m9-mstd0.5-inc1"}


def _noise_jpeg(path: Path, width: int, height: int, seed: int) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path, "JPEG", quality=90)
    return path


def _folder(root: Path, width: int = 60, height: int = 45, per_class: int = 4) -> Path:
    for split in ("train", "test"):
        for label in range(2):
            for item in range(per_class):
                _noise_jpeg(root / split / f"c{label}" / f"{item}.jpg", width, height, seed=label * 100 + item)
    return root


@pytest.mark.parametrize(
    ("cpus", "gpus", "processes", "workers"),
    [
        (128, 8, 8, 15),  # a full 8-GPU node under torchrun: 16 cores per GPU, one for the training process
        (128, 8, 1, 15),  # one process on one of 8 GPUs: its share of the node
        (16, 1, 1, 15),  # a task bound to 16 cores and one GPU (srun --gpus-per-task=1)
        (64, 0, 4, 15),  # four CPU processes
        (2, 0, 1, 1),  # this machine
        (1, 1, 1, 1),  # at least one
        (512, 1, 1, 32),  # a ceiling: each worker is a process with its own torch
    ],
)
def test_workers_per_process_rule(cpus: int, gpus: int, processes: int, workers: int) -> None:
    assert workers_per_process(cpus, gpus, processes) == workers


def test_shrunk_size_keeps_aspect_and_small_images() -> None:
    assert shrunk_size(500, 375, 256) == (341, 256)
    assert shrunk_size(375, 500, 256) == (256, 341)
    assert shrunk_size(300, 200, 256) == (300, 200)


def test_shrink_folder_resizes_copies_and_resumes(tmp_path: Path) -> None:
    source = tmp_path / "src"
    _noise_jpeg(source / "train" / "a" / "big.jpg", 500, 375, 0)
    _noise_jpeg(source / "train" / "a" / "huge.jpg", 1600, 1200, 1)  # decoded at 1/2 scale by draft first
    Image.new("L", (40, 30), 7).save(source / "train" / "a" / "small.png")
    (source / "train" / "a" / "broken.jpg").write_bytes(b"not a jpeg")
    (source / "wnids.txt").write_text("a\n")
    target = tmp_path / "dst"
    report = shrink_folder(source, target, short_side=256, workers=2)
    assert report.counts == {"resized": 2, "copied": 2, "unreadable": 1, "kept": 0}
    with Image.open(target / "train" / "a" / "big.jpg") as image:
        assert image.size == (341, 256) and image.format == "JPEG"
    with Image.open(target / "train" / "a" / "huge.jpg") as image:
        assert image.size == (341, 256)
    for name in ("train/a/small.png", "train/a/broken.jpg", "wnids.txt"):
        assert (target / name).read_bytes() == (source / name).read_bytes()
    assert shrink_folder(source, target, short_side=256).counts["kept"] == 5  # a rerun finishes, keeps the rest


def test_shrink_images_command_and_training_data_from_the_copy(tmp_path: Path, capsys) -> None:
    source = _folder(tmp_path / "src")
    assert main(["shrink_images", str(source), str(tmp_path / "dst"), "--short_side", "24", "--workers", "1"]) == 0
    assert "16 files" in capsys.readouterr().out
    with Image.open(next((tmp_path / "dst" / "train" / "c0").iterdir())) as image:
        assert image.size == (32, 24)
    data = ImageFolder(data_dir=str(tmp_path / "dst"), image_size=16, num_workers=0, cache=False, **DEIT)
    images, labels = torch.utils.data.default_collate(data.dataset("train").__getitems__([0, 1, 2]))
    assert images.shape == (3, 3, 16, 16) and images.dtype == torch.uint8 and labels.shape == (3,)
    # the copy is an image folder: an experiment YAML trains on it by data_dir alone (quickstart, smoke-sized)
    fit = smoke_fit_on_folder(tmp_path / "dst")
    extra = ["--data.train_size", "6", "--data.randaugment", "rand-m9-mstd0.5-inc1", "--runs_dir", str(tmp_path)]
    assert main([*fit, *extra]) == 0
    assert main(["shrink_images", str(source), str(source / "inside")]) == 2
    assert capsys.readouterr().err.splitlines()[-1].startswith("vitlight: error: shrink_images: the copy")


BATCH_DIGEST = """
import hashlib, sys
from vitlight.data import ImageFolder
data = ImageFolder(data_dir=sys.argv[1], image_size=16, num_workers=0, cache=False, random_resized_crop=True,
                   interpolation="bicubic", randaugment="rand-m9-mstd0.5-inc1")
batch = data.dataset("train").__getitems__([5, 2, 6, 0])
print(hashlib.sha256(b"".join(image.numpy().tobytes() + bytes([label]) for image, label in batch)).hexdigest())
"""


def test_crops_and_randaugment_depend_on_the_batch_alone_across_restarts(tmp_path: Path) -> None:
    folder = _folder(tmp_path / "images")
    dataset = ImageFolder(data_dir=str(folder), image_size=16, num_workers=0, cache=False, **DEIT).dataset("train")
    digests = set()
    for seed in (1, 2):  # other global generator states, as in another process or after other draws
        torch.manual_seed(seed), np.random.seed(seed), random.seed(seed)
        batch = dataset.__getitems__([5, 2, 6, 0])
        digests.add(
            hashlib.sha256(b"".join(image.numpy().tobytes() + bytes([label]) for image, label in batch)).hexdigest()
        )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    restarted = subprocess.run(
        [sys.executable, "-c", BATCH_DIGEST, str(folder)], capture_output=True, text=True, env=env, check=True
    )
    digests.add(restarted.stdout.strip())
    assert len(digests) == 1
    other = dataset.__getitems__([5, 2, 6, 1])  # another batch draws otherwise
    assert not torch.equal(other[0][0], batch[0][0])


def test_loading_leaves_the_global_and_cuda_generators_alone(tmp_path: Path, monkeypatch) -> None:
    """With num_workers 0 batches load in the training process: its generators (dropout, mixup, the
    GPU's) must not be reseeded or moved by the per-batch seeding of the augmentation draws."""
    cuda_seeds = []
    for name in ("manual_seed", "manual_seed_all"):
        real = getattr(torch.cuda, name)
        monkeypatch.setattr(torch.cuda, name, lambda seed, real=real: (cuda_seeds.append(seed), real(seed))[1])
    folder = _folder(tmp_path / "images")
    dataset = ImageFolder(data_dir=str(folder), image_size=16, num_workers=0, cache=False, **DEIT).dataset("train")
    torch.manual_seed(3), np.random.seed(3), random.seed(3)
    cuda_seeds.clear()
    before = (torch.get_rng_state(), np.random.get_state()[1].copy(), random.getstate())
    for first in range(0, 6, 2):
        dataset.__getitems__([first, first + 1])
    assert cuda_seeds == []
    assert torch.equal(torch.get_rng_state(), before[0])
    assert np.array_equal(np.random.get_state()[1], before[1]) and random.getstate() == before[2]


def test_randaugment_posterize_to_zero_bits_and_tensor_conversion() -> None:
    """'inc1' policies reach posterize with 0 bits at magnitude 10 (m9 + mstd0.5 gets there), which
    Pillow >= 12 refuses; it is a black image, as in timm's reference. Conversions keep the pixels."""
    augment = _randaugment("rand-m10-mstd0-inc1", 3)
    posterize = next(op for op in augment.policy.ops if op.name == "PosterizeIncreasing")
    posterize.prob = 1.0
    image = Image.fromarray(np.random.default_rng(0).integers(1, 256, (8, 8, 3), dtype=np.uint8))
    assert np.asarray(posterize(image)).max() == 0
    tensor = torch.from_numpy(np.asarray(image).copy()).permute(2, 0, 1)
    augment.policy.ops = [op for op in augment.policy.ops if op.name == "Invert"]
    augment.policy.num_layers = 1
    for op in augment.policy.ops:
        op.prob = 1.0
    assert torch.equal(augment(tensor), 255 - tensor)


def test_jpegs_decode_to_pils_pixels_and_the_rest_goes_to_pil(tmp_path: Path) -> None:
    """JPEGs go to torchvision's decoder (less CPU); the pixels are PIL's, and what it cannot give as
    asked (grey from colour, colour from grey, CMYK) or cannot read (PNG) PIL decodes."""
    colour = _noise_jpeg(tmp_path / "colour.jpg", 37, 29, 0)
    grey = tmp_path / "grey.jpg"
    Image.fromarray(np.random.default_rng(1).integers(0, 256, (29, 37), dtype=np.uint8)).save(grey, quality=90)
    cmyk = tmp_path / "cmyk.jpg"
    Image.open(colour).convert("CMYK").save(cmyk, quality=90)
    png = tmp_path / "a.png"
    Image.open(colour).save(png)
    for path in (colour, grey, cmyk, png):
        for channels in (None, 1, 3):
            ours, pils = decode_image(str(path), channels), decode_image_pil(str(path), channels)
            assert ours.shape == pils.shape and np.array_equal(ours, pils), (path.name, channels)
    assert np.array_equal(decode_image(colour.read_bytes(), 3), decode_image_pil(str(colour), 3))  # bytes too
