"""Training-loader throughput: cached uint8 pixels vs decoding the image files every epoch.

Reads an image folder (train/<class>/<files>, test/<class>/<files>) with the ImageFolder data
module twice, at the same transforms (CIFAR-style pad-and-crop and flip), with `--num_workers`
loader workers: once from the decode cache, once decoding the files. For scale it also times
ViT-Ti/4 training steps at 32x32 (timm vit_tiny_patch16_224, img_size=32, patch_size=4, AdamW).

    python bench/data_throughput.py --data_dir ../shared/data/cifar10-jpeg   # unpacks train/test.tar.gz
    python bench/data_throughput.py --data_dir /path/to/image_folder --max_images 2000 --steps 2

Each loader is timed over its first `--max_images` training images, from its first batch on
(worker start-up excluded). The cache is built in a temporary folder (its build time is
printed) unless --cache_dir is given. The last line is ``RATIO <cached images/s / decoding images/s>``.
"""

from __future__ import annotations

import argparse
import sys
import tarfile
import tempfile
import time
from pathlib import Path

import torch

try:
    import vitlight  # noqa: F401
except ImportError:  # run from a checkout without `pip install -e .`
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from vitlight.data import ImageFolder

ARCHIVES = ("train.tar.gz", "test.tar.gz")


def _parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--data_dir", required=True, help="an image folder, or a folder holding train.tar.gz and test.tar.gz of one"
    )
    p.add_argument("--max_images", type=int, default=10000, help="training images timed per loader")
    p.add_argument("--batch_size", type=int, default=128)
    p.add_argument("--num_workers", type=int, default=2)
    p.add_argument("--image_size", type=int, default=32)
    p.add_argument("--steps", type=int, default=5, help="timed ViT-Ti/4 training steps (after one warm-up step)")
    p.add_argument("--cache_dir", default=None, help="decode cache folder (default: a temporary one)")
    return p.parse_args(argv)


def _image_folder(data_dir: Path, scratch: Path) -> Path:
    """`data_dir` itself, or its archives unpacked into `scratch`."""
    if (data_dir / "train").is_dir():
        return data_dir
    if not all((data_dir / name).is_file() for name in ARCHIVES):
        sys.exit(f"data_throughput: {data_dir} holds neither train/ nor {' and '.join(ARCHIVES)}")
    start = time.perf_counter()
    for name in ARCHIVES:
        with tarfile.open(data_dir / name) as archive:
            archive.extractall(scratch, filter="data")
    print(f"unpacked {', '.join(ARCHIVES)} into {scratch} in {time.perf_counter() - start:.1f} s")
    return scratch


def _loader_rate(module: ImageFolder, max_images: int) -> tuple[float, int]:
    """(images/s, images timed) of the module's training loader."""
    return timed_rate(module.train_dataloader(), max_images)


def timed_rate(loader, max_images: int, finish=None) -> tuple[float, int]:
    """(images/s, images timed) over the first `max_images` images, from the first batch on
    (the first batch pays for the workers' start-up: not timed); `finish` runs on each batch."""
    seen, start = 0, None
    for images, _ in loader:
        if finish is not None:
            images = finish(images)
        if start is None:
            start = time.perf_counter()
            continue
        seen += len(images)
        if seen >= max_images:
            break
    elapsed = time.perf_counter() - (start or time.perf_counter())
    return (seen / elapsed if elapsed > 0 else float("nan")), seen


def _vit_rate(batch_size: int, steps: int) -> float:
    import timm

    model = timm.create_model("vit_tiny_patch16_224", pretrained=False, img_size=32, patch_size=4, num_classes=10)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    images, labels = torch.randn(batch_size, 3, 32, 32), torch.randint(0, 10, (batch_size,))
    start = 0.0
    for step in range(steps + 1):
        if step == 1:  # step 0 warms up
            start = time.perf_counter()
        loss = torch.nn.functional.cross_entropy(model(images), labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    return steps * batch_size / (time.perf_counter() - start)


def main(argv: list[str] | None = None) -> None:
    args = _parse(argv)
    with tempfile.TemporaryDirectory(prefix="vitlight-bench-") as scratch:
        folder = _image_folder(Path(args.data_dir).expanduser(), Path(scratch) / "images")
        cache_dir = args.cache_dir or str(Path(scratch) / "cache")
        settings = dict(
            data_dir=str(folder),
            image_size=args.image_size,
            batch_size=args.batch_size,
            num_workers=args.num_workers,
            random_crop_padding=4,
            horizontal_flip=True,
            cache_dir=cache_dir,
        )
        start = time.perf_counter()
        cached = ImageFolder(cache=True, **settings)
        cached.setup()
        print(f"data: {len(cached.splits['train'])} train images, {cached.num_classes} classes, from {folder}")
        print(f"cache build (decode every train/test image once): {time.perf_counter() - start:.1f} s")
        cached_rate, cached_seen = _loader_rate(cached, args.max_images)
        decoding = ImageFolder(cache=False, **settings)
        decoding.setup()
        decoding_rate, decoding_seen = _loader_rate(decoding, args.max_images)
    workers = f"{args.num_workers} workers, batch {args.batch_size}, {args.image_size}px, pad-crop + flip"
    print(f"train loader from the cache:   {cached_rate:9.0f} images/s ({cached_seen} images; {workers})")
    print(f"train loader decoding files:   {decoding_rate:9.0f} images/s ({decoding_seen} images; {workers})")
    print(
        f"ViT-Ti/4 training at 32x32:     {_vit_rate(args.batch_size, args.steps):9.0f} images/s (CPU, batch {args.batch_size}, {args.steps} steps, {torch.get_num_threads()} threads)"
    )
    print(f"RATIO {cached_rate / decoding_rate:.2f}")


if __name__ == "__main__":
    main()
