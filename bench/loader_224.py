"""Loader workers at 224 px on ImageNet-size JPEGs: images/s per worker core, today's path against the new one.

Writes `--images` JPEGs of 500x375 (ImageNet's typical size) with photo-like content (1/f noise, the
spectrum of natural images, plus hard-edged shapes; JPEG quality 90, about 90 KB each), so that
decoding costs what it costs on real photos. Then, side by side in one process:

- today: those files through ImageFolder's training dataset as it was before this change
  (RandAugment behind torchvision's ToPILImage/PILToTensor round trip);
- new: the copy that `vitlight shrink_images` makes (short side `--short_side`, default 256)
  through today's dataset code.

Each for two recipes: ResNet-50's (RandomResizedCrop, bilinear; the flip runs on the GPU) and DeiT's
(bicubic RandomResizedCrop + RandAugment rand-m9-mstd0.5-inc1). A loader worker is one process with
one thread, so the rate per worker core is images over the CPU time of this thread (time.thread_time,
torch.set_num_threads(1)), which other programs on the machine disturb less than wall time; batches
are whole `__getitems__` calls plus collation, as in a worker. Rounds alternate between the paths and
the median round counts.

    python bench/loader_224.py                   # 256 images, 5 rounds: about a minute on one core
    python bench/loader_224.py --images 8 --rounds 1

The last lines are ``RATIO <recipe> <new images/s per core / today's>``.

With ``--workers 1,8,15`` it measures instead what the GPU check asks (bench/gpu_check.sh): the training
loader a user gets (the data module's own `train_dataloader`, ResNet-50's recipe, on the shrunk copy)
with that many worker processes, images/s of wall time over ``--seconds`` after one warm-up pass of
every worker; ``--out FILE.json`` keeps the figures.

    python bench/loader_224.py --workers 1,8,15 --seconds 4 --out loader.json
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw
from torch.utils.data import default_collate
from torchvision.transforms import v2

try:
    import vitlight  # noqa: F401
except ImportError:  # run from a checkout without `pip install -e .`
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from vitlight.data import ImageFolder
from vitlight.data.decode import decode_image_pil
from vitlight.data.shrink import shrink_folder

RECIPES = {
    "resnet50 (RandomResizedCrop)": {"random_resized_crop": True, "horizontal_flip": True},
    "deit (bicubic RRC + RandAugment)": {
        "random_resized_crop": True,
        "horizontal_flip": True,
        "interpolation": "bicubic",
        "randaugment": "rand-m9-mstd0.5-inc1",
    },
}


def photo(rng: np.random.Generator, width: int = 500, height: int = 375) -> Image.Image:
    """A photo-like RGB image: 1/f noise correlated across channels, plus a few filled ellipses."""
    fy, fx = np.fft.fftfreq(height)[:, None], np.fft.rfftfreq(width)[None, :]
    radius = np.sqrt(fx**2 + fy**2)
    radius[0, 0] = 1.0
    shape = (height, width // 2 + 1)
    shared = rng.normal(size=shape) + 1j * rng.normal(size=shape)
    channels = []
    for _ in range(3):
        spectrum = 0.7 * shared + 0.3 * (rng.normal(size=shape) + 1j * rng.normal(size=shape))
        plane = np.fft.irfft2(spectrum / radius, s=(height, width))
        channels.append((plane - plane.mean()) / plane.std())
    pixels = np.stack(channels, -1) * 40 + rng.uniform(80, 170, size=3)
    image = Image.fromarray(pixels.clip(0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(image)
    for _ in range(6):
        x, y = int(rng.integers(0, width)), int(rng.integers(0, height))
        box = [x, y, x + int(rng.integers(20, 150)), y + int(rng.integers(20, 150))]
        draw.ellipse(box, fill=tuple(int(v) for v in rng.integers(0, 255, 3)))
    return image


def write_photos(root: Path, count: int, seed: int = 0) -> Path:
    """`root/{train,test}/<class>/<n>.jpg`: `count` training photos in two classes, two test photos."""
    rng = np.random.default_rng(seed)
    for split, number in (("train", count), ("test", 2)):
        for index in range(number):
            path = root / split / f"class{index % 2}" / f"{index:05d}.jpg"
            path.parent.mkdir(parents=True, exist_ok=True)
            photo(rng).save(path, "JPEG", quality=90)
    return root


def _dataset(folder: Path, recipe: dict, today: bool):
    module = ImageFolder(data_dir=str(folder), image_size=224, val_fraction=0.0, num_workers=0, cache=False, **recipe)
    dataset = module.dataset("train")
    if today:  # the decoder and RandAugment conversion before this change (the same pixels, more CPU time)
        dataset.decode = decode_image_pil
        if dataset.pipeline.randaugment is not None:
            policy = dataset.pipeline.randaugment.policy
            dataset.pipeline.randaugment = v2.Compose([v2.ToPILImage(), policy, v2.PILToTensor()])
    return dataset


def _cpu_seconds(dataset, batch_size: int) -> float:
    """Thread CPU seconds to load every image of `dataset` once, in batches as a worker loads them."""
    order = np.arange(len(dataset))
    start = time.thread_time()
    for first in range(0, len(order), batch_size):
        default_collate(dataset.__getitems__(order[first : first + batch_size].tolist()))
    return time.thread_time() - start


def measure(originals: Path, shrunk: Path, rounds: int, batch_size: int) -> dict[str, dict[str, float]]:
    """{recipe: {"today": images/s per core, "new": images/s per core}}."""
    results = {}
    for name, recipe in RECIPES.items():
        paths = {
            "today": _dataset(originals, recipe, today=True),
            "new code": _dataset(originals, recipe, today=False),
            "new": _dataset(shrunk, recipe, today=False),
        }
        for dataset in paths.values():  # warm-up: imports, page cache, allocator
            dataset.__getitems__(list(range(min(4, len(dataset)))))
        times: dict[str, list[float]] = {key: [] for key in paths}
        for _ in range(rounds):
            for key, dataset in paths.items():
                times[key].append(_cpu_seconds(dataset, batch_size) / len(dataset))
        results[name] = {key: 1.0 / statistics.median(values) for key, values in times.items()}
    return results


def loader_rates(folder: Path, workers: list[int], seconds: float, batch_size: int) -> dict[int, float]:
    """{workers: images/s} of the data module's own training loader over `folder`, ResNet-50's recipe."""
    rates = {}
    recipe = RECIPES["resnet50 (RandomResizedCrop)"]
    for count in workers:
        module = ImageFolder(
            data_dir=str(folder),
            image_size=224,
            val_fraction=0.0,
            num_workers=count,
            batch_size=batch_size,
            cache=False,
            **recipe,
        )
        module.setup("fit")
        loader = module.train_dataloader()
        iterator = iter(loader)
        for _ in range(max(1, count)):  # every worker has started and made its first batch
            iterator = _next_batch(loader, iterator)[1]
        seen, start = 0, time.perf_counter()
        while time.perf_counter() - start < seconds:
            images, iterator = _next_batch(loader, iterator)
            seen += len(images)
        rates[count] = seen / (time.perf_counter() - start)
        del iterator, loader
    return rates


def _next_batch(loader, iterator):
    try:
        return next(iterator)[0], iterator
    except StopIteration:  # the copy is small: another epoch
        iterator = iter(loader)
        return next(iterator)[0], iterator


def _parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--images", type=int, default=256, help="training photos written and loaded per round")
    p.add_argument("--rounds", type=int, default=5, help="rounds per path (the median counts)")
    p.add_argument("--short_side", type=int, default=256, help="short side of the shrunk copy")
    p.add_argument("--batch_size", type=int, default=32)
    p.add_argument("--dir", default=None, help="where the photos go (default: a temporary folder)")
    p.add_argument("--workers", default=None, help="e.g. 1,8,15: the whole loader's images/s with that many workers")
    p.add_argument("--seconds", type=float, default=4.0, help="--workers: seconds measured per worker count")
    p.add_argument("--out", default=None, help="--workers: JSON file for the figures")
    args = p.parse_args(argv)
    try:
        args.workers = [int(n) for n in args.workers.split(",")] if args.workers else None
    except ValueError:
        p.error(f"--workers {args.workers}: write worker counts separated by commas, e.g. 1,8,15")
    if args.workers and min(args.workers) < 0:
        p.error(f"--workers {args.workers}: counts must be 0 or more")
    return args


def main_workers(args: argparse.Namespace, root: Path) -> int:
    originals = write_photos(root / "originals", args.images)
    shrunk = root / f"shrunk-{args.short_side}"
    shrink_folder(originals, shrunk, args.short_side)
    rates = loader_rates(shrunk, args.workers, args.seconds, args.batch_size)
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    record = {
        "cores": cores,
        "images": args.images,
        "short_side": args.short_side,
        "recipe": "resnet50 (RandomResizedCrop)",
        "images_per_s": {str(count): rate for count, rate in rates.items()},
    }
    for count, rate in rates.items():
        print(f"{count:>3} workers: {rate:8.0f} images/s ({cores} cores here)")
    if args.out:
        Path(args.out).write_text(json.dumps(record, indent=1) + "\n")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    if args.workers:
        with tempfile.TemporaryDirectory() as scratch:
            return main_workers(args, Path(args.dir or scratch))
    torch.set_num_threads(1)  # as in a loader worker
    with tempfile.TemporaryDirectory() as scratch:
        root = Path(args.dir or scratch)
        originals = write_photos(root / "originals", args.images)
        start = time.perf_counter()
        report = shrink_folder(originals, root / f"shrunk-{args.short_side}", args.short_side)
        shrink_seconds = time.perf_counter() - start
        sizes = [
            sum(p.stat().st_size for p in (root / name / "train").rglob("*.jpg")) / args.images / 1024
            for name in ("originals", f"shrunk-{args.short_side}")
        ]
        print(
            f"photos: {args.images} of 500x375, {sizes[0]:.0f} KB each; shrunk copy (short side {args.short_side}): "
            f"{sizes[1]:.0f} KB each, made in {shrink_seconds / max(sum(report.counts.values()), 1) * 1e3:.1f} ms "
            "per file on one core"
        )
        results = measure(originals, root / f"shrunk-{args.short_side}", args.rounds, args.batch_size)
    print(f"{'images/s per worker core':<34} {'today':>7} {'new code':>9} {'new + copy':>11}   (ms per image)")
    for name, rates in results.items():
        times = " / ".join(f"{1e3 / rates[key]:.2f}" for key in ("today", "new code", "new"))
        print(f"{name:<34} {rates['today']:>7.0f} {rates['new code']:>9.0f} {rates['new']:>11.0f}   ({times})")
    for name, rates in results.items():
        print(f"RATIO {name.split()[0]} {rates['new'] / rates['today']:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
