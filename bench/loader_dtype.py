"""Training-loader throughput: uint8 batches (finished on the device) vs float32 batches finished in the workers.

vitlight's loaders hand over uint8 images and the task normalizes, flips and crops them on the
device after the transfer. Before, the workers did that and handed over normalized float32: four
times the bytes through the workers' shared memory, pinned memory and PCIe. Both loaders here read
the same decode cache with the same workers and batch; the float32 one runs the same batch stage
(vitlight.data.device.DeviceFinish) inside the workers, as the old loaders did. The uint8 side
includes the batch stage too, run after the loader in the main process (on a GPU it runs there).

    python bench/loader_dtype.py --data_dir ../shared/data/cifar10-jpeg   # unpacks train/test.tar.gz
    python bench/loader_dtype.py --data_dir DIR --max_images 4000 --num_workers 2

The last line is ``RATIO <uint8 images/s / float32 images/s>``. On a CPU-only machine the uint8 side pays
for the batch stage in the one main process instead of in the workers, so expect a ratio below 1 there
(measured 0.65 on 2 cores, 2026-12-02); on a GPU the batch stage runs on the device and the loader moves a
quarter of the bytes.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import torch

try:
    import vitlight  # noqa: F401
except ImportError:  # run from a checkout without `pip install -e .`
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from data_throughput import _image_folder, timed_rate  # noqa: E402  (a sibling script: run as python bench/loader_dtype.py)

from vitlight.data import ImageFolder  # noqa: E402
from vitlight.data.base import SplitDataset  # noqa: E402


class FloatInWorkers(SplitDataset):
    """The old loaders: the batch stage (crop, flip, normalize) in the worker, float32 handed over."""

    def __init__(self, dataset: SplitDataset, finish) -> None:
        super().__init__(dataset.data, dataset.pipeline, dataset.channels)
        self.finish = finish

    def _batch(self, indices):
        items = super()._batch(indices)
        images = self.finish(torch.stack([image for image, _ in items]))
        return [(image, label) for image, (_, label) in zip(images, items)]


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--data_dir", required=True, help="an image folder, or a folder holding train.tar.gz and test.tar.gz of one"
    )
    p.add_argument("--max_images", type=int, default=10000)
    p.add_argument("--batch_size", type=int, default=128)
    p.add_argument("--num_workers", type=int, default=2)
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="vitlight-bench-") as scratch:
        folder = _image_folder(Path(args.data_dir).expanduser(), Path(scratch) / "images")
        module = ImageFolder(
            data_dir=str(folder),
            image_size=32,
            batch_size=args.batch_size,
            num_workers=args.num_workers,
            random_crop_padding=4,
            horizontal_flip=True,
            cache=True,
            cache_dir=str(Path(scratch) / "cache"),
        )
        module.setup()
        finish = module.device_finish(train=True)
        uint8_rate, uint8_seen = timed_rate(module.train_dataloader(), args.max_images, finish)
        shipped = module.train_dataloader()
        old = torch.utils.data.DataLoader(
            FloatInWorkers(shipped.dataset, finish),
            batch_size=args.batch_size,
            shuffle=True,
            num_workers=args.num_workers,
            persistent_workers=args.num_workers > 0,
            drop_last=True,
        )
        float_rate, float_seen = timed_rate(old, args.max_images)
    side = module.image_size
    per_image = 3 * side * side
    setting = f"{args.num_workers} workers, batch {args.batch_size}, {side}px, pad-crop + flip + normalize"
    print(
        f"uint8 handed over, finished after:   {uint8_rate:9.0f} images/s ({uint8_seen} images, {per_image} bytes/image; {setting})"
    )
    print(
        f"float32 finished in the workers:      {float_rate:9.0f} images/s ({float_seen} images, {4 * per_image} bytes/image)"
    )
    print(f"RATIO {uint8_rate / float_rate:.2f}")


if __name__ == "__main__":
    main()
