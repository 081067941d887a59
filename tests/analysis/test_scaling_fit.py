"""Saturating power-law fits on runs drawn from known laws with noise: the parameters, the crossover and the
extrapolations come back inside their bootstrap intervals (which are narrow enough to exclude wrong values),
and fits that the data cannot pin down say so instead of giving numbers."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.optimize import brentq

from vitlight.analysis import scaling_fit as sf

SIZES = [100, 250, 600, 1500, 3800, 9000]
VIT = (5.0, 0.6, 0.04)  # a, b, c: steep, low asymptote
CNN = (0.8, 0.35, 0.10)  # flatter, higher asymptote: the ViT overtakes it between 100 and 9,000 images


def runs(law: tuple[float, float, float], sizes=SIZES, seeds: int = 4, noise: float = 0.004, seed: int = 0):
    rng = np.random.default_rng(seed)
    x = [n for n in sizes for _ in range(seeds)]
    y = [sf.power_law(n, *law) + rng.normal(0, noise) for n in x]
    return x, y


def true_crossing(first, second, lo: float, hi: float) -> float:
    gap = lambda t: sf.power_law(math.exp(t), *first) - sf.power_law(math.exp(t), *second)  # noqa: E731
    return math.exp(brentq(gap, math.log(lo), math.log(hi)))


def inside(interval: sf.Interval, value: float) -> bool:
    return interval.low <= value <= interval.high


def test_recovers_the_laws_and_their_crossover_within_the_intervals():
    vit = sf.fit_family("ViT", *runs(VIT, seed=1), replicates=300, seed=0)
    cnn = sf.fit_family("CNN", *runs(CNN, seed=2), replicates=300, seed=1)
    assert vit.identifiable and cnn.identifiable and vit.reason == "fitted"
    for fit, (a, b, c) in ((vit, VIT), (cnn, CNN)):
        assert inside(fit.a, a) and inside(fit.b, b) and inside(fit.c, c), (fit.a, fit.b, fit.c)
        assert fit.b.low <= fit.b.value <= fit.b.high and fit.replicates == 300
        assert fit.rmse < 0.006  # about the noise
    # the intervals mean something: a wrong exponent or asymptote falls outside them
    assert not inside(vit.b, 0.45) and not inside(vit.b, 0.8) and not inside(vit.c, 0.06)
    crossing = sf.crossover(vit, cnn)
    truth = true_crossing(VIT, CNN, 100, 9000)
    assert crossing.status == "interpolated" and crossing.share > 0.95
    assert inside(crossing.size, truth) and crossing.size.high / crossing.size.low < 1.6, crossing
    assert "ViT overtakes CNN at" in crossing.text and "interpolated" in crossing.text
    # what 2x and 10x the largest size would give: inside the predicted intervals, and marked as extrapolations
    for p in sf.predictions(vit):
        assert p["x"] == 9000 * p["factor"] and p["low"] <= sf.power_law(p["x"], *VIT) <= p["high"]


def test_the_fit_is_the_least_squares_optimum():
    x, y = runs(VIT, seed=3)
    a, b, c, rss = sf.least_squares_fit(np.asarray(x, float), np.asarray(y, float))
    for db in (-0.05, 0.05):  # any other exponent with its best (a, c) fits worse
        u = np.power(np.asarray(x, float), -(b + db))
        design = np.stack([u, np.ones_like(u)], axis=1)
        other = np.linalg.lstsq(design, np.asarray(y), rcond=None)[1][0]
        assert other > rss
    assert rss == pytest.approx(float(((sf.power_law(np.asarray(x, float), a, b, c) - y) ** 2).sum()), rel=1e-9)


def test_a_crossing_beyond_the_measured_sizes_is_marked_extrapolated():
    small = [100, 160, 250, 400, 630]
    late, cnn_law = (4.0, 0.5, 0.02), (0.3, 0.2, 0.06)  # the ViT catches up only at about 1,400 images
    truth = true_crossing(late, cnn_law, 100, 1e5)
    assert truth > 1000
    vit = sf.fit_family("ViT", *runs(late, small, noise=0.002), replicates=200)
    cnn = sf.fit_family("CNN", *runs(cnn_law, small, noise=0.002, seed=5), replicates=200)
    crossing = sf.crossover(vit, cnn)
    assert crossing.status == "extrapolated" and crossing.size.value > 630 and "extrapolated" in crossing.text
    assert inside(crossing.size, truth), (crossing, truth)


def test_curves_that_never_cross_say_which_is_ahead():
    vit = sf.fit_family("ViT", *runs((1.0, 0.5, 0.01)), replicates=100)
    cnn = sf.fit_family("CNN", *runs((3.0, 0.5, 0.05), seed=4), replicates=100)
    crossing = sf.crossover(vit, cnn)
    assert crossing.status == "none" and crossing.size is None and "stays ahead of" in crossing.text


def test_one_seed_per_size_resamples_over_runs():
    fit = sf.fit_family("ViT", *runs(VIT, seeds=1, noise=0.002), replicates=200)
    assert fit.identifiable and fit.bootstrap.startswith("over runs") and inside(fit.b, VIT[1])


@pytest.mark.parametrize(
    ("x", "y", "reason"),
    [
        ([100, 100, 3800, 3800], [0.2, 0.21, 0.1, 0.11], "2 training-set sizes for 3 parameters"),
        ([100] * 4, [0.2] * 4, "1 training-set sizes for 3 parameters"),
        (SIZES * 2, list(0.15 + np.random.default_rng(0).normal(0, 0.01, 12)), "flat curve"),
        ([100, 300, 900], [0.3, 0.2, 0.15], "leave no residual"),
    ],
    ids=["two sizes", "one size", "flat", "no residual"],
)
def test_not_identifiable_fits_give_a_reason_instead_of_numbers(x, y, reason):
    fit = sf.fit_family("CNN", x, y, replicates=50)
    assert not fit.identifiable and reason in fit.reason and fit.reason.startswith("not identifiable")
    assert fit.b is None and sf.predictions(fit) == []
    assert "b" not in sf.as_dict(fit)
    other = sf.fit_family("ViT", *runs(VIT), replicates=50)
    crossing = sf.crossover(other, fit)
    assert crossing.status == "not identifiable" and crossing.size is None and reason in crossing.text


def test_resampling_seeds_keeps_the_standard_error_of_each_mean():
    """Two seeds per size: a plain bootstrap halves the variance of a size's mean; the widened one keeps s^2/m."""
    x = np.asarray([100.0, 100.0, 200.0, 200.0, 400.0, 400.0])
    y = np.asarray([0.30, 0.34, 0.20, 0.21, 0.12, 0.16])
    bx, by, how = sf._resamples(x, y, np.random.default_rng(0), 20000)
    assert how.startswith("over seeds") and (bx == x).all()  # each size keeps its count of runs
    for size in (100.0, 200.0, 400.0):
        means = by[:, x == size].mean(axis=1)
        assert means.var() == pytest.approx(y[x == size].var(ddof=1) / 2, rel=0.05)
        assert means.mean() == pytest.approx(y[x == size].mean(), abs=1e-3)


def test_a_bend_below_the_measured_sizes_keeps_the_asymptote_not_the_exponent():
    """All of the drop between the two smallest sizes, flat after it (ResNet-18 in the digits mini)."""
    x = SIZES * 2
    y = [(0.5 if n == 100 else 0.1) + 0.002 * (i % 2) for i, n in enumerate(x)]
    fit = sf.fit_family("CNN", x, y, replicates=100)
    assert fit.identifiable and not fit.exponent_identifiable and "exponent not identifiable" in fit.reason
    out = sf.as_dict(fit)
    assert out["b"] is None and out["a"] is None and out["c"]["low"] <= out["c"]["value"] <= out["c"]["high"]
    # least squares with b capped at 3 cannot bend as sharply as the data: close, not exact
    assert abs(float(fit.predict(9000)) - 0.101) < 0.01 and abs(float(fit.predict(100)) - 0.501) < 0.01
    vit = sf.fit_family("ViT", *runs(VIT), replicates=100)
    crossing = sf.crossover(vit, fit)  # the ViT's curve against the CNN's plateau
    assert crossing.size is not None and 0.09 < sf.power_law(crossing.size.value, *VIT) < 0.11
