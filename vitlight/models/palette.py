"""Colour palettes for ImageGPT: k-means over pixels, quantize to tokens, dequantize.

ImageGPT (Chen et al. 2020) maps every RGB pixel to the nearest of 512 k-means centres
("9-bit colour"), so an image becomes a raster-order sequence of palette indices.

Layout: images are uint8, channels-last ``(N, H, W, C)`` with C = 3 (RGB) or 1 (grey);
tokens are int64 ``(N, H*W)`` in raster order (row by row). Centres are float32 (K, C)
in pixel units [0, 255].
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

_CHANNEL_NAMES = {1: "grey", 3: "RGB"}
_FORMAT_VERSION = 1


def _nearest_centres(pixels: Tensor, centers: Tensor) -> tuple[Tensor, Tensor]:
    """Index (P,) of and squared distance (P,) to the nearest centre for pixels (P, C).

    Uses ||x - c||^2 = ||x||^2 - 2 x.c + ||c||^2 as one matmul, in float64: products of
    8-bit pixels and float32 centres are then exact, so the result does not depend on
    chunking or BLAS blocking, and TF32 (if enabled on CUDA) never touches it.
    Memory is one (P, K) float64 matrix.
    """
    x = pixels.double()
    c = centers.double()
    d = torch.addmm((c * c).sum(1), x, c.T, alpha=-2.0)  # (P, K) = ||c||^2 - 2 x.c
    best, idx = d.min(dim=1)  # the first index wins a tie
    return idx, (best + (x * x).sum(1)).clamp(min=0).float()


def _nearest_chunked(pixels: Tensor, centers: Tensor, chunk_pixels: int) -> tuple[Tensor, Tensor]:
    """`_nearest_centres` over chunks so that memory is chunk_pixels * K, not P * K."""
    if chunk_pixels <= 0:
        raise ValueError(f"chunk_pixels must be positive, got {chunk_pixels}")
    n = pixels.shape[0]
    idx = torch.empty(n, dtype=torch.long, device=pixels.device)
    dist = torch.empty(n, dtype=torch.float32, device=pixels.device)
    for start in range(0, n, chunk_pixels):
        end = min(start + chunk_pixels, n)
        idx[start:end], dist[start:end] = _nearest_centres(pixels[start:end], centers)
    return idx, dist


def _as_uint8(x: Tensor | np.ndarray, what: str, ndim: int) -> Tensor:
    x = torch.as_tensor(x)
    if x.dtype != torch.uint8:
        raise ValueError(f"{what} must be uint8 pixel values in [0, 255], got dtype {x.dtype}")
    if x.dim() != ndim:
        layout = "(N, H, W, C)" if ndim == 4 else "(P, C)"
        raise ValueError(f"{what} must have shape {layout}, got {tuple(x.shape)}")
    return x


def _bin_centres(levels: int) -> Tensor:
    """Midpoints of ``levels`` equal bins over the integers 0..255."""
    width = 256.0 / levels
    return (torch.arange(levels, dtype=torch.float32) + 0.5) * width - 0.5


class Palette:
    """K colour centres (K, C) in [0, 255]; C = 3 (RGB) or 1 (grey)."""

    def __init__(self, centers: Tensor, kind: str = "custom", chunk_pixels: int = 2**16) -> None:
        centers = torch.as_tensor(centers, dtype=torch.float32).detach().cpu()
        if centers.dim() != 2 or centers.shape[1] not in _CHANNEL_NAMES:
            shape = tuple(centers.shape)
            raise ValueError(f"palette centres must have shape (K, 1 or 3), got {shape}")
        if centers.shape[0] == 0:
            raise ValueError("a palette needs at least one centre, got K=0")
        if not torch.isfinite(centers).all() or centers.min() < 0 or centers.max() > 255:
            raise ValueError("palette centres must be finite pixel values in [0, 255]")
        if chunk_pixels <= 0:
            raise ValueError(f"chunk_pixels must be positive, got {chunk_pixels}")
        self.centers = centers.contiguous()
        self.kind = kind
        # Pixels per distance chunk; memory is about chunk_pixels * K * 8 bytes.
        self.chunk_pixels = chunk_pixels

    # ---- constructors ----------------------------------------------------------------

    @classmethod
    def uniform(cls, levels: int = 8) -> Palette:
        """``levels`` bins per RGB channel (8 -> 3 bits each, 512 entries), centres at midpoints.

        Token id is ``r * levels**2 + g * levels + b`` for bin indices r, g, b.
        """
        if not 1 <= levels <= 256:
            raise ValueError(f"uniform palette levels must be in 1..256, got {levels}")
        c = _bin_centres(levels)
        grid = torch.stack(torch.meshgrid(c, c, c, indexing="ij"), dim=-1)  # (L, L, L, 3)
        return cls(grid.reshape(-1, 3), kind="uniform")

    @classmethod
    def grey(cls, levels: int = 256) -> Palette:
        """Uniform palette of ``levels`` grey values (C=1) for grayscale data; at most 256."""
        if not 1 <= levels <= 256:
            raise ValueError(f"grey palette levels must be in 1..256, got {levels}")
        return cls(_bin_centres(levels)[:, None], kind="grey")

    @staticmethod
    def sample_pixels(images: Tensor | np.ndarray, n_pixels: int, seed: int = 0) -> Tensor:
        """``n_pixels`` pixels (n, C) drawn uniformly with replacement from images (N, H, W, C).

        Returns every pixel when the images have no more than ``n_pixels`` of them.
        """
        images = _as_uint8(images, "images", 4)
        pixels = images.reshape(-1, images.shape[-1])
        if n_pixels <= 0:
            raise ValueError(f"n_pixels must be positive, got {n_pixels}")
        if pixels.shape[0] <= n_pixels:
            return pixels.clone()
        g = torch.Generator().manual_seed(seed)
        # With replacement: memory stays O(n_pixels) however large the dataset is.
        idx = torch.randint(pixels.shape[0], (n_pixels,), generator=g)
        return pixels[idx.to(pixels.device)]

    @classmethod
    def fit_kmeans(
        cls,
        pixels: Tensor | np.ndarray,
        k: int = 512,
        iters: int = 30,
        seed: int = 0,
        device: str | torch.device | None = None,
        chunk_pixels: int = 2**16,
        init: str = "kmeans++",
    ) -> Palette:
        """k-means (Lloyd iterations) over uint8 pixels (P, C).

        ``init`` is "kmeans++" (D^2 sampling) or "random" (k distinct sampled pixels).

        Deterministic for a given input, seed and device: cluster sums are accumulated in
        float64 over integer pixel values, which is exact in any order (so also on CUDA).
        ``k`` is capped at the number of distinct colours in ``pixels`` (for grey data at
        most 256). Empty clusters are re-seeded with the colours farthest from their centre.
        Stops early when no assignment changes.
        """
        pixels = _as_uint8(pixels, "pixels", 2)
        if pixels.shape[1] not in _CHANNEL_NAMES:
            c = pixels.shape[1]
            raise ValueError(f"pixels must have 1 (grey) or 3 (RGB) channels, got {c}")
        if k <= 0:
            raise ValueError(f"palette size k must be positive, got {k}")
        if iters <= 0:
            raise ValueError(f"k-means iters must be positive, got {iters}")
        if pixels.shape[0] == 0:
            raise ValueError("cannot fit a palette to zero pixels")
        if init not in ("kmeans++", "random"):
            raise ValueError(f"k-means init must be 'kmeans++' or 'random', got {init!r}")
        device = torch.device(device) if device is not None else pixels.device
        x = pixels.to(device)
        k = min(k, torch.unique(x, dim=0).shape[0])

        if init == "kmeans++":
            centers = _kmeans_pp_init(x, k, seed)  # (K, C) float32
        else:
            g = torch.Generator().manual_seed(seed)
            centers = x[torch.randperm(x.shape[0], generator=g)[:k].to(device)].float()
        labels = None
        xd = x.double()
        for _ in range(iters):
            new_labels, d2 = _nearest_chunked(x, centers, chunk_pixels)
            if labels is not None and torch.equal(new_labels, labels):
                break
            labels = new_labels
            sums = torch.zeros(k, x.shape[1], dtype=torch.float64, device=device)
            sums.index_add_(0, labels, xd)
            counts = torch.bincount(labels, minlength=k)
            centers = (sums / counts.clamp(min=1)[:, None]).float()
            if (counts == 0).any():
                centers = _reseed_empty(centers, counts, x, d2)
        return cls(centers, kind="kmeans", chunk_pixels=chunk_pixels)

    # ---- properties and checks ---------------------------------------------------------

    @property
    def size(self) -> int:
        """Number of entries K (the model's vocab_size)."""
        return self.centers.shape[0]

    @property
    def channels(self) -> int:
        return self.centers.shape[1]

    def __repr__(self) -> str:
        return (
            f"Palette(size={self.size}, channels={self.channels}, kind={self.kind!r}, "
            f"fingerprint={self.fingerprint()!r})"
        )

    def check_fits(self, images: Tensor | np.ndarray) -> Tensor:
        """Raise ValueError (one line) unless images are uint8 (N, H, W, C) with our C."""
        images = torch.as_tensor(images)
        shape = tuple(images.shape)
        if len(shape) == 4 and shape[-1] not in _CHANNEL_NAMES and shape[1] in _CHANNEL_NAMES:
            raise ValueError(
                f"images must be channels-last (N, H, W, C), got shape {tuple(images.shape)} "
                "which looks channels-first; use images.permute(0, 2, 3, 1)"
            )
        images = _as_uint8(images, "images", 4)
        c = images.shape[-1]
        if c != self.channels:
            name = _CHANNEL_NAMES.get(c, "unsupported")
            fix = (
                "use Palette.grey() or fit a palette on grayscale data"
                if c == 1
                else "use an RGB palette (Palette.uniform() or fit_kmeans on RGB pixels)"
            )
            raise ValueError(
                f"palette has {self.channels} channels ({_CHANNEL_NAMES[self.channels]}) "
                f"but the data has {c} ({name}); {fix}"
            )
        return images

    def fingerprint(self) -> str:
        """Short hash of the centres, to detect a checkpoint/data palette mismatch."""
        h = hashlib.sha256(f"{self.size}x{self.channels}".encode())
        h.update(self.centers.numpy().astype("<f4").tobytes())
        return h.hexdigest()[:12]

    def check_fingerprint(self, fingerprint: str, where: str = "the checkpoint") -> None:
        """Raise ValueError (one line) if ``fingerprint`` is not this palette's."""
        if fingerprint != self.fingerprint():
            raise ValueError(
                f"palette mismatch: {where} was made with palette {fingerprint} but this data "
                f"uses {self.fingerprint()} ({self.size} entries); use the palette saved with it"
            )

    # ---- tokens <-> pixels --------------------------------------------------------------

    def quantize(self, images: Tensor | np.ndarray) -> Tensor:
        """uint8 images (N, H, W, C) -> int64 tokens (N, H*W) of the nearest centre.

        Runs on the images' device, ``chunk_pixels`` pixels at a time.
        """
        images = self.check_fits(images)
        n, h, w, c = images.shape
        centers = self.centers.to(images.device)
        idx, _ = _nearest_chunked(images.reshape(-1, c), centers, self.chunk_pixels)
        return idx.view(n, h * w)

    def dequantize(self, tokens: Tensor, height: int, width: int) -> Tensor:
        """int64 tokens (N, H*W) -> uint8 images (N, H, W, C), centres rounded to integers."""
        if tokens.dim() != 2 or tokens.shape[1] != height * width:
            raise ValueError(
                f"tokens must have shape (N, {height * width}) for {height}x{width} images, got {tuple(tokens.shape)}"
            )
        if tokens.numel() and (tokens.min() < 0 or tokens.max() >= self.size):
            raise ValueError(
                f"token ids must be in [0, {self.size}) for a {self.size}-entry palette, "
                f"got [{int(tokens.min())}, {int(tokens.max())}]"
            )
        lut = self.centers.round().clamp(0, 255).to(torch.uint8).to(tokens.device)  # (K, C)
        return lut[tokens].view(tokens.shape[0], height, width, self.channels)

    # ---- storage ------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Tensor | int | str]:
        """Plain tensors/ints/strs only, so it loads with torch.load(weights_only=True)."""
        return {"centers": self.centers.clone(), "kind": self.kind, "version": _FORMAT_VERSION}

    @classmethod
    def from_dict(cls, d: dict) -> Palette:
        if not isinstance(d, dict) or "centers" not in d:
            raise ValueError("not a saved palette: expected a dict with a 'centers' tensor")
        if d.get("version", _FORMAT_VERSION) > _FORMAT_VERSION:
            raise ValueError(f"palette format version {d['version']} is newer than this vitlight")
        return cls(d["centers"], kind=str(d.get("kind", "custom")))

    def save(self, path: str | Path) -> None:
        torch.save(self.to_dict(), Path(path))

    @classmethod
    def load(cls, path: str | Path) -> Palette:
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"palette file {path} does not exist")
        return cls.from_dict(torch.load(path, map_location="cpu", weights_only=True))


def _reseed_empty(centers: Tensor, counts: Tensor, x: Tensor, d2: Tensor) -> Tensor:
    """Move the centres of empty clusters to the distinct colours farthest from their centre.

    Distinct colours, not points: copies of one far pixel would all land on one colour
    and leave the other re-seeded clusters empty again.
    """
    empty = (counts == 0).nonzero().flatten()
    colours, inverse = torch.unique(x, dim=0, return_inverse=True)  # (U, C) sorted, (P,)
    far = torch.zeros(len(colours), dtype=d2.dtype, device=d2.device)
    far.scatter_reduce_(0, inverse, d2, reduce="amax")  # (U,) all copies share one distance
    # Stable sort on the CPU so that ties are broken the same way every run.
    order = torch.sort(far.cpu(), descending=True, stable=True).indices[: len(empty)]
    centers = centers.clone()
    centers[empty] = colours[order.to(x.device)].float()
    return centers


def _kmeans_pp_init(x: Tensor, k: int, seed: int) -> Tensor:
    """k-means++ seeding: each new centre is drawn with probability proportional to D^2.

    Draws use a CPU generator on exact float64 distances, so the choice is reproducible
    (CUDA cumsum of exact integer-valued float64 is order independent, too).
    """
    g = torch.Generator().manual_seed(seed)
    n = x.shape[0]
    xd = x.double()  # (P, C); float64 keeps the distances exact, see _nearest_centres
    centers = torch.empty(k, x.shape[1], dtype=torch.float64, device=x.device)
    centers[0] = xd[int(torch.randint(n, (1,), generator=g))]
    d2 = (xd - centers[0]).square().sum(1)  # (P,) squared distance to the nearest centre
    for j in range(1, k):
        cum = torch.cumsum(d2, dim=0).cpu()
        if cum[-1] <= 0:  # fewer distinct colours than k; cannot happen after the cap
            raise RuntimeError("k-means++ ran out of distinct colours")
        r = torch.rand(1, generator=g, dtype=torch.float64) * cum[-1]
        centers[j] = xd[min(int(torch.searchsorted(cum, r, right=True)), n - 1)]
        d2 = torch.minimum(d2, (xd - centers[j]).square().sum(1))
    return centers.float()
