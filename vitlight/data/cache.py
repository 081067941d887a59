"""The decoded-image cache: uint8 pixels at their stored resolution, memory-mapped, reused across runs.

Where: `cache_dir`, else $VITLIGHT_CACHE, else $XDG_CACHE_HOME/vitlight (~/.cache/vitlight).
Layout: `<root>/<Module>-<split>-<digest>/` holding `images.u8` (raw N*H*W*C bytes),
`labels.npy` and `meta.json`. The digest covers the resolved source path and every source
file's size and modification time, so an edited file means a new cache. Sizes: N*H*W*C
bytes, e.g. CIFAR-10 train 147 MiB, MNIST train 45 MiB, Tiny-ImageNet train 1.2 GiB.

A cache folder is written under `.tmp-*` and renamed into place only when complete
(`meta.json` last), so a killed run never leaves a half cache that is trusted; stale
`.tmp-*` folders older than a day are removed by the next write.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
import uuid
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from vitlight.errors import DataError
from vitlight.files import free_space, is_disk_full, write_atomic

CACHE_VERSION = 1
CACHE_ENV = "VITLIGHT_CACHE"
STALE_TMP_SECONDS = 24 * 3600


def cache_root(cache_dir: str | None = None) -> Path:
    """The cache folder: the argument, else $VITLIGHT_CACHE, else $XDG_CACHE_HOME/vitlight or ~/.cache/vitlight."""
    if cache_dir:
        return Path(cache_dir).expanduser()
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV]).expanduser()
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache").expanduser() / "vitlight"


def source_digest(parts: Sequence[str], files: Sequence[str]) -> str:
    """A digest of `parts` (what was read and how) and each file's path, size and modification time."""
    digest = hashlib.sha256()
    for part in parts:
        digest.update(f"{part}\0".encode())
    for name in files:
        stat = os.stat(name)
        digest.update(f"{name}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()[:20]


class MappedImages:
    """Read-only memory map of cached uint8 (N, H, W, C) pixels; pickles as its path (workers reopen it)."""

    def __init__(self, path: Path, shape: tuple[int, ...]) -> None:
        self.path = Path(path)
        self.shape = tuple(int(n) for n in shape)
        self._map: np.memmap | None = None

    def _array(self) -> np.memmap:
        if self._map is None:
            self._map = np.memmap(self.path, dtype=np.uint8, mode="r", shape=self.shape)
        return self._map

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, index) -> np.ndarray:
        return np.asarray(self._array()[index])

    def __getstate__(self) -> dict:
        return {"path": self.path, "shape": self.shape, "_map": None}


class CacheWriter:
    """Streams images into a temporary cache folder; `ImageCache.write` renames it into place."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self._file = open(folder / "images.u8", "wb")
        self._labels: list[np.ndarray] = []
        self.shape: tuple[int, int, int] | None = None
        self.count = 0
        self.meta: dict = {}

    def add(self, images: np.ndarray, labels: np.ndarray) -> None:
        """Appends uint8 images (n, H, W, C) and their labels; every image has the first one's shape."""
        images = np.ascontiguousarray(images, dtype=np.uint8)
        if self.shape is None:
            self.shape = tuple(images.shape[1:])
        if tuple(images.shape[1:]) != self.shape:
            raise ValueError(f"cache images are {self.shape}, got {images.shape[1:]}")
        self._file.write(images.tobytes())
        self._labels.append(np.asarray(labels, dtype=np.int64).reshape(-1))
        self.count += len(images)

    def close(self) -> None:
        self._file.close()
        labels = np.concatenate(self._labels) if self._labels else np.zeros(0, dtype=np.int64)
        np.save(self.folder / "labels.npy", labels)
        shape = (self.count, *(self.shape or (0, 0, 0)))
        meta = {"version": CACHE_VERSION, "shape": shape, "created": time.time(), **self.meta}
        (self.folder / "meta.json").write_text(json.dumps(meta, indent=1))


class ImageCache:
    """Named cache entries under one root folder."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def _make_root(self) -> None:
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise DataError(
                f"cannot create the cache folder {str(self.root)!r} ({error.strerror}); set data.cache_dir or "
                f"${CACHE_ENV} to a writable folder"
            ) from None

    def read(self, name: str) -> tuple[MappedImages, np.ndarray, dict] | None:
        """(images, labels, meta) of a complete entry, or None when there is none (or it is unusable)."""
        folder = self.root / name
        try:
            meta = json.loads((folder / "meta.json").read_text())
            shape = tuple(meta["shape"])
            if meta.get("version") != CACHE_VERSION or (folder / "images.u8").stat().st_size != int(np.prod(shape)):
                return None
            labels = np.load(folder / "labels.npy")
        except (OSError, ValueError, KeyError):
            return None
        if len(labels) != shape[0]:
            return None
        return MappedImages(folder / "images.u8", shape), labels, meta

    def write(self, name: str, fill) -> None:
        """Calls `fill(writer)` to stream an entry into a temporary folder, then renames it into place."""
        self._make_root()
        self._remove_stale()
        tmp = self.root / f".tmp-{name}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        tmp.mkdir()
        try:
            writer = CacheWriter(tmp)
            try:
                fill(writer)
            finally:
                writer.close()
            final = self.root / name
            if final.exists() and self.read(name) is None:  # an unusable entry (older format): replace it
                shutil.rmtree(final, ignore_errors=True)
            try:
                os.rename(tmp, final)
            except OSError:  # another process completed the same entry first: keep theirs
                if self.read(name) is None:
                    raise
                shutil.rmtree(tmp, ignore_errors=True)
        except OSError as error:
            free = free_space(self.root)  # before the partial entry is removed
            shutil.rmtree(tmp, ignore_errors=True)
            if not is_disk_full(error, self.root):
                raise
            raise DataError(
                f"writing the image cache {str(self.root / name)!r} failed: the disk is full ({free} free on "
                f"{str(self.root)!r}); free space there, or set data.cache_dir or ${CACHE_ENV} to a folder with room"
            ) from None
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise

    def read_json(self, name: str) -> dict | None:
        try:
            return json.loads((self.root / f"{name}.json").read_text())
        except (OSError, ValueError):
            return None

    def write_json(self, name: str, content: dict) -> None:
        """Writes `<root>/<name>.json` atomically."""
        self._make_root()
        text = json.dumps(content).encode()
        write_atomic(
            self.root / f"{name}.json",
            lambda stream: stream.write(text),
            what="cache record",
            error=DataError,
            temporary_prefix=f".tmp-{name}-",
        )  # `.tmp-*`: removed when stale

    def _remove_stale(self) -> None:
        now = time.time()
        for path in self.root.glob(".tmp-*"):
            try:
                if now - path.stat().st_mtime > STALE_TMP_SECONDS:
                    shutil.rmtree(path) if path.is_dir() else path.unlink()
            except OSError:
                continue
