"""A pre-resized copy of an image folder, made once, so that the loader's workers decode fewer pixels.

At 224 px an ImageNet JPEG (about 500x375) costs a worker more to decode than everything done
with it afterwards; a copy whose short side is 256 (the size timm's eval transform resizes to
before its 224 centre crop) holds 2.1x fewer pixels. `vitlight shrink_images SRC DST` writes it:
the same tree, each image with a longer short side resized (bicubic, after JPEG's own DCT-domain
reduction to no less than twice the target, PIL's `draft`), other files and already small images
copied as they are. Writes are atomic and a file already in DST (not older than its source) is
kept, so a killed copy is finished by running the command again.
"""

from __future__ import annotations

import os
import shutil
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image

from vitlight.data.decode import GREY_MODES, IMAGE_EXTENSIONS
from vitlight.errors import DataError
from vitlight.files import write_atomic

RESIZED, COPIED, UNREADABLE, KEPT = "resized", "copied", "unreadable", "kept"


def shrunk_size(width: int, height: int, short_side: int) -> tuple[int, int]:
    """(width, height) with the short side at most `short_side`, aspect kept (rounded, at least 1 px)."""
    short = min(width, height)
    if short <= short_side:
        return width, height
    scale = short_side / short
    return max(1, round(width * scale)), max(1, round(height * scale))


def _format(path: Path) -> str:
    return Image.registered_extensions().get(path.suffix.lower(), "PNG")


def shrink_file(source: Path, target: Path, short_side: int, quality: int) -> str:
    """Writes `target`: `source` resized to `short_side`, or copied when it is no image, already small
    enough or unreadable (the loader's bad-file policy then sees it as before). Returns what was done."""
    if target.exists() and target.stat().st_size > 0 and target.stat().st_mtime >= source.stat().st_mtime:
        return KEPT  # written whole (atomic rename); an empty file (a crash before the data reached the disk) is redone
    if source.suffix.lower() not in IMAGE_EXTENSIONS:
        return _copy(source, target, COPIED)
    try:
        with Image.open(source) as image:
            size = shrunk_size(*image.size, short_side)
            if size == image.size:
                return _copy(source, target, COPIED)
            image.draft("L" if image.mode in GREY_MODES else "RGB", (2 * size[0], 2 * size[1]))  # JPEG only
            image = image.convert("L" if image.mode in GREY_MODES else "RGB")
            resized = image.resize(size, Image.BICUBIC)
    except Exception:  # PIL raises OSError, ValueError, SyntaxError, ...
        return _copy(source, target, UNREADABLE)
    form = _format(target)
    options = {"quality": quality} if form == "JPEG" else {}
    write_atomic(target, lambda stream: resized.save(stream, form, **options), what="image", error=DataError)
    return RESIZED


def _copy(source: Path, target: Path, outcome: str) -> str:
    def write(stream) -> None:
        with open(source, "rb") as original:
            shutil.copyfileobj(original, stream)

    write_atomic(target, write, what="file", error=DataError)
    return outcome


def _shrink_one(job: tuple[str, str, int, int]) -> str:
    source, target, short_side, quality = job
    return shrink_file(Path(source), Path(target), short_side, quality)


@dataclass
class ShrinkReport:
    counts: dict[str, int] = field(default_factory=lambda: {RESIZED: 0, COPIED: 0, UNREADABLE: 0, KEPT: 0})

    def line(self, source: Path, target: Path, short_side: int) -> str:
        c = self.counts
        return (
            f"shrink_images: {sum(c.values()):,} files of {source} -> {target} (short side {short_side}): "
            f"{c[RESIZED]:,} resized, {c[COPIED]:,} copied as they are, {c[UNREADABLE]:,} unreadable images "
            f"copied as they are, {c[KEPT]:,} already there"
        )


def shrink_folder(source: Path, target: Path, short_side: int, quality: int = 90, workers: int = 1) -> ShrinkReport:
    """Mirrors the tree under `source` into `target` (see the module docstring); `workers` processes."""
    source, target = Path(source).expanduser().resolve(), Path(target).expanduser().resolve()
    if not source.is_dir():
        raise DataError(f"shrink_images: {source} is not a folder")
    if target == source or source in target.parents:
        raise DataError(f"shrink_images: the copy {target} must lie outside {source}")
    if short_side < 8 or not 1 <= quality <= 100:
        raise DataError(f"shrink_images: short side must be >= 8 and quality in 1..100, got {short_side}, {quality}")
    jobs = []
    for directory, subdirs, files in os.walk(source):
        subdirs.sort()
        for name in sorted(files):
            path = Path(directory) / name
            jobs.append((str(path), str(target / path.relative_to(source)), short_side, quality))
    report = ShrinkReport()
    if workers > 1 and len(jobs) > 1:
        with ProcessPoolExecutor(max_workers=workers) as pool:
            outcomes = list(pool.map(_shrink_one, jobs, chunksize=64))
    else:
        outcomes = [_shrink_one(job) for job in jobs]
    for outcome in outcomes:
        report.counts[outcome] += 1
    return report
