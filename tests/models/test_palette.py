import math

import pytest
import torch

from vitlight.models import palette as palette_mod
from vitlight.models.palette import Palette


def _images(n: int = 4, size: int = 8, channels: int = 3, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, size, size, channels), dtype=torch.uint8, generator=g)


def _clustered_pixels(centres: torch.Tensor, per_cluster: int, spread: int, seed: int = 0):
    """Pixels (K * per_cluster, C) scattered within +-spread of each integer centre."""
    g = torch.Generator().manual_seed(seed)
    shape = (len(centres), per_cluster, centres.shape[1])
    noise = torch.randint(-spread, spread + 1, shape, generator=g)
    return (centres[:, None, :] + noise).clamp(0, 255).reshape(-1, centres.shape[1]).to(torch.uint8)


def test_uniform_palette_round_trip_error_at_most_16():
    p = Palette.uniform(8)
    assert p.size == 512 and p.channels == 3
    # Every possible channel value appears, so the bound is tight and exhaustive.
    values = torch.arange(256, dtype=torch.uint8)
    images = torch.stack([values, values.flip(0), values.roll(77)], dim=-1).view(1, 16, 16, 3)
    tokens = p.quantize(images)
    assert tokens.shape == (1, 256) and tokens.dtype == torch.long
    back = p.dequantize(tokens, 16, 16)
    assert back.dtype == torch.uint8 and back.shape == images.shape
    assert (back.int() - images.int()).abs().max() == 16


def test_round_trip_within_distance_to_nearest_centre():
    images = _images(n=3, size=10)
    p = Palette.fit_kmeans(Palette.sample_pixels(images, 200, seed=1), k=16, iters=5)
    back = p.dequantize(p.quantize(images), 10, 10).float()
    pixels = images.reshape(-1, 3).float()
    nearest = torch.cdist(pixels, p.centers).min(dim=1).values  # (P,)
    err = (back.reshape(-1, 3) - pixels).norm(dim=1)
    # dequantize rounds centres to integers: at most 0.5 per channel more.
    assert (err <= nearest + 0.5 * math.sqrt(3) + 1e-4).all()


def test_quantize_picks_the_nearest_centre():
    images = _images(n=2, size=6)
    p = Palette.fit_kmeans(images.reshape(-1, 3), k=10, iters=3)
    tokens = p.quantize(images).flatten()
    d = torch.cdist(images.reshape(-1, 3).float(), p.centers)  # (P, K)
    assert torch.allclose(d.gather(1, tokens[:, None]).squeeze(1), d.min(dim=1).values, atol=1e-3)


def test_kmeans_is_deterministic_per_seed():
    pixels = Palette.sample_pixels(_images(n=8, size=16), 2000, seed=0)
    a = Palette.fit_kmeans(pixels, k=32, iters=5, seed=0)
    b = Palette.fit_kmeans(pixels, k=32, iters=5, seed=0)
    c = Palette.fit_kmeans(pixels, k=32, iters=5, seed=1)
    assert torch.equal(a.centers, b.centers)
    assert a.fingerprint() == b.fingerprint()
    assert not torch.equal(a.centers, c.centers)


def test_sample_pixels_is_seeded_and_caps_at_all_pixels():
    images = _images(n=2, size=8)
    a = Palette.sample_pixels(images, 50, seed=3)
    assert a.shape == (50, 3) and a.dtype == torch.uint8
    assert torch.equal(a, Palette.sample_pixels(images, 50, seed=3))
    assert Palette.sample_pixels(images, 10_000, seed=3).shape == (128, 3)


def test_kmeans_recovers_well_separated_clusters():
    truth = torch.tensor([[20, 20, 20], [230, 30, 30], [30, 230, 30], [30, 30, 230], [220, 220, 40], [128, 128, 128]])
    pixels = _clustered_pixels(truth, per_cluster=200, spread=6)
    p = Palette.fit_kmeans(pixels, k=len(truth), iters=20, seed=0)
    # Each true centre has exactly one fitted centre within a few units.
    d = torch.cdist(truth.float(), p.centers)  # (6, 6)
    assert (d.min(dim=1).values < 2.0).all()
    assert len(set(d.argmin(dim=1).tolist())) == len(truth)


def test_empty_clusters_are_reseeded_to_far_distinct_colours():
    x = torch.tensor([[0, 0, 0]] * 5 + [[250, 0, 0]] * 3 + [[0, 0, 200]] * 2, dtype=torch.uint8)
    centers = torch.tensor([[0.0, 0, 0], [0.0, 0, 0], [0.0, 0, 0]])
    labels, d2 = palette_mod._nearest_chunked(x, centers, 4)
    counts = torch.bincount(labels, minlength=3)
    assert counts.tolist() == [10, 0, 0]
    new = palette_mod._reseed_empty(centers, counts, x, d2)
    assert new.tolist() == [[0, 0, 0], [250, 0, 0], [0, 0, 200]]


@pytest.mark.parametrize("seed", range(4))
def test_random_init_with_duplicate_picks_still_finds_every_colour(seed: int):
    # Random init usually picks black twice here; the empty twin must be re-seeded.
    pixels = torch.tensor([[0, 0, 0]] * 50 + [[255, 255, 255]] * 3, dtype=torch.uint8)
    p = Palette.fit_kmeans(pixels, k=2, iters=10, seed=seed, init="random")
    assert sorted(p.centers.sum(1).tolist()) == [0.0, 765.0]


def test_chunked_quantize_matches_one_chunk():
    images = _images(n=3, size=12, seed=5)
    p = Palette.fit_kmeans(images.reshape(-1, 3), k=40, iters=3)
    big = p.quantize(images)
    p.chunk_pixels = 7  # 432 pixels -> 62 chunks, the last one partial
    assert torch.equal(p.quantize(images), big)


def test_quantize_really_works_in_chunks(monkeypatch: pytest.MonkeyPatch):
    # Memory is set by the largest distance matrix; spy on every one that is built.
    rows: list[int] = []
    real = palette_mod._nearest_centres

    def spy(pixels: torch.Tensor, centers: torch.Tensor):
        rows.append(pixels.shape[0])
        return real(pixels, centers)

    monkeypatch.setattr(palette_mod, "_nearest_centres", spy)
    p = Palette.uniform(8)
    p.chunk_pixels = 100
    images = _images(n=5, size=20)  # 2000 pixels
    p.quantize(images)
    assert max(rows) <= 100
    assert sum(rows) == 2000 and len(rows) == 20

    rows.clear()
    Palette.fit_kmeans(images.reshape(-1, 3), k=8, iters=2, chunk_pixels=300)
    assert rows and max(rows) <= 300


def test_grey_palette_and_grey_kmeans_cap_at_256():
    g = Palette.grey()
    assert g.size == 256 and g.channels == 1
    assert torch.equal(g.centers.flatten(), torch.arange(256, dtype=torch.float32))
    images = _images(n=2, size=8, channels=1)
    assert torch.equal(g.dequantize(g.quantize(images), 8, 8), images)
    with pytest.raises(ValueError, match="1..256"):
        Palette.grey(300)
    # Only 5 distinct grey levels in the data: k=512 is capped to 5.
    levels = torch.tensor([0, 50, 100, 150, 200], dtype=torch.uint8)
    p = Palette.fit_kmeans(levels.repeat(40)[:, None], k=512, iters=3)
    assert p.size == 5 and p.channels == 1
    every_level = torch.arange(256, dtype=torch.uint8).repeat(2)[:, None]
    full = Palette.fit_kmeans(every_level, k=512, iters=2)
    assert full.size <= 256


def test_save_load_round_trip_weights_only(tmp_path):
    p = Palette.fit_kmeans(_images().reshape(-1, 3), k=12, iters=3)
    path = tmp_path / "palette.pt"
    p.save(path)
    q = Palette.load(path)
    assert torch.equal(q.centers, p.centers) and q.kind == "kmeans"
    assert q.fingerprint() == p.fingerprint()
    # The dict also travels inside a checkpoint read with weights_only=True.
    torch.save({"palette": p.to_dict()}, tmp_path / "ckpt.pt")
    d = torch.load(tmp_path / "ckpt.pt", weights_only=True)
    assert Palette.from_dict(d["palette"]).fingerprint() == p.fingerprint()


def test_fingerprint_mismatch_is_detected():
    a, b = Palette.uniform(8), Palette.uniform(4)
    assert a.fingerprint() != b.fingerprint() and len(a.fingerprint()) == 12
    a.check_fingerprint(a.fingerprint())
    with pytest.raises(ValueError, match="palette mismatch"):
        a.check_fingerprint(b.fingerprint(), where="checkpoint.ckpt")


def test_channel_mismatch_and_bad_inputs_raise_one_line():
    rgb, grey = Palette.uniform(), Palette.grey()
    with pytest.raises(ValueError, match=r"palette has 3 channels \(RGB\) but the data has 1") as e:
        rgb.quantize(_images(channels=1))
    assert "\n" not in str(e.value)
    with pytest.raises(ValueError, match=r"palette has 1 channels \(grey\) but the data has 3"):
        grey.check_fits(_images())
    with pytest.raises(ValueError, match="channels-first"):
        rgb.quantize(_images().permute(0, 3, 1, 2))
    with pytest.raises(ValueError, match="uint8"):
        rgb.quantize(_images().float())
    with pytest.raises(ValueError, match="k must be positive"):
        Palette.fit_kmeans(_images().reshape(-1, 3), k=0)
    with pytest.raises(ValueError, match=r"shape \(N, 64\)"):
        rgb.dequantize(torch.zeros(1, 63, dtype=torch.long), 8, 8)
    with pytest.raises(ValueError, match=r"\[0, 512\)"):
        rgb.dequantize(torch.full((1, 64), 512), 8, 8)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        Palette.load("/nonexistent/palette.pt")
