"""`vitlight shrink_images`: a copy of an image folder with every image's short side at most N px, made once.

    vitlight shrink_images /data/imagenet /data/imagenet-256
    vitlight fit --config experiments/resnet50_imagenet.yaml --data.data_dir /data/imagenet-256

Loader workers then decode 2.1x fewer pixels per ImageNet JPEG at the default 256 (docs/performance.md,
bench/loader_224.py). Run it again after a kill: finished files are kept.
"""

from __future__ import annotations

import os
from pathlib import Path

from vitlight.cli_errors import CommandParser
from vitlight.data.shrink import shrink_folder


def parser() -> CommandParser:
    p = CommandParser.from_docstring("vitlight shrink_images", __doc__)
    p.add_argument("source", help="the image folder (train/, val/, test/ ... at any depth)")
    p.add_argument("target", help="where the copy goes (created; must lie outside source)")
    p.add_argument("--short_side", type=int, default=256, help="largest short side in pixels (default 256)")
    p.add_argument("--quality", type=int, default=90, help="JPEG quality of resized JPEGs (default 90)")
    p.add_argument("--workers", type=int, default=None, help="processes (default: the CPUs this process may use)")
    return p


def main(argv: list[str]) -> int:
    args = parser().parse_args(argv)
    workers = args.workers or (len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count())
    report = shrink_folder(Path(args.source), Path(args.target), args.short_side, args.quality, max(1, workers or 1))
    print(report.line(Path(args.source), Path(args.target), args.short_side))
    return 0
