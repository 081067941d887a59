"""Saturating power laws fitted to a scaling study: E(x) = a * x^-b + c for test error E against
training-set size (Hestness et al. 2017) or training compute (Zhai et al. 2022, without their
offset d), with bootstrap intervals, the crossover of two families' curves, and extrapolations.

numpy and scipy only. The fit profiles the exponent: for a fixed b the model is linear in (a, c),
so (a, c) >= 0 have a closed-form least-squares solution (or one on the boundary a = 0 or c = 0)
and only b is searched (a log grid over [B_MIN, B_MAX], refined twice around the best), for all
bootstrap resamples at once in numpy: a thousand refits take well under a second per family.

A fit is refused, with the reason, where its numbers would mean nothing: fewer distinct x than
parameters (3), a flat curve (error not falling with x by more than its noise), or an exponent
stuck at the edge of its range (the bend of the curve lies outside the measured range).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from scipy.optimize import brentq
from scipy.stats import f as f_distribution

B_MIN, B_MAX = 0.02, 3.0
PARAMETERS = 3  # a, b, c
LEVEL = 0.95


@dataclass
class Interval:
    value: float
    low: float
    high: float


@dataclass
class PowerLawFit:
    """One family's fit. `identifiable` False: `reason` says why, and the numbers are None."""

    family: str
    axis: str  # "train_size" or "train_flops"
    identifiable: bool
    reason: str
    n_points: int  # runs fitted
    n_x: int  # distinct x values
    x_range: tuple[float, float]
    a: Interval | None = None
    b: Interval | None = None
    c: Interval | None = None
    rmse: float | None = None
    bootstrap: str = ""  # how the intervals were resampled
    replicates: int = 0  # bootstrap fits that succeeded
    # False: b ran to the edge of its range; a and b mean nothing, c and the curve over the measured x do
    exponent_identifiable: bool = True
    # the bootstrap's parameter draws (rows a, b, c), kept for bands and crossovers; not written to JSON
    draws: np.ndarray | None = field(default=None, repr=False)

    def predict(self, x: np.ndarray | float) -> np.ndarray:
        return power_law(np.asarray(x, dtype=float), self.a.value, self.b.value, self.c.value)

    def band(self, x: np.ndarray, level: float = LEVEL) -> tuple[np.ndarray, np.ndarray]:
        """Pointwise percentile band of the bootstrap curves at x."""
        curves = power_law(np.asarray(x, dtype=float)[None, :], *(self.draws[:, i, None] for i in range(3)))
        tail = 100 * (1 - level) / 2
        return np.percentile(curves, tail, axis=0), np.percentile(curves, 100 - tail, axis=0)


def power_law(x: np.ndarray, a: float | np.ndarray, b: float | np.ndarray, c: float | np.ndarray) -> np.ndarray:
    return a * np.power(x, -b) + c


def _solve_ac(u: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For each row of u (= x^-b on one b), the least-squares (a, c) >= 0 of y ~ a*u + c, and its residual sum."""
    mu, my = u.mean(-1), y.mean(-1)
    var = ((u - mu[..., None]) ** 2).sum(-1)
    cov = ((u - mu[..., None]) * (y - my[..., None])).sum(-1)
    a = np.where(var > 0, cov / np.where(var > 0, var, 1.0), 0.0)
    c = my - a * mu
    # boundary solutions where the free one breaks a constraint: a = 0 (constant), or c = 0 (pure power)
    a0_c = np.maximum(my, 0.0)
    c0_a = np.maximum((u * y).sum(-1) / np.maximum((u * u).sum(-1), 1e-300), 0.0)
    candidates = [(a, c), (np.zeros_like(a), a0_c), (c0_a, np.zeros_like(a))]
    best_rss = np.full(a.shape, np.inf)
    best_a, best_c = np.zeros_like(a), np.zeros_like(a)
    for ca, cc in candidates:
        ok = (ca >= 0) & (cc >= 0)
        rss = (((ca[..., None] * u + cc[..., None]) - y) ** 2).sum(-1)
        better = ok & (rss < best_rss)
        best_rss = np.where(better, rss, best_rss)
        best_a, best_c = np.where(better, ca, best_a), np.where(better, cc, best_c)
    return best_a, best_c, best_rss


def fit_many(x: np.ndarray, y: np.ndarray, rounds: int = 3, points: int = 48) -> np.ndarray:
    """Least-squares (a, b, c, rss) of a x^-b + c to each row of x and y (R x N), a, c >= 0, b in [B_MIN, B_MAX]:
    b on a log grid, then twice on a finer grid around each row's best (all rows at once).

    x is scaled by each row's geometric mean inside (so a stays of order y), and a scaled back."""
    x, y = np.atleast_2d(x).astype(float), np.atleast_2d(y).astype(float)
    scale = np.exp(np.log(x).mean(-1))
    z = x / scale[:, None]
    log_lo, log_hi = np.full(x.shape[0], math.log(B_MIN)), np.full(x.shape[0], math.log(B_MAX))
    for _ in range(rounds):
        grid = np.exp(np.linspace(log_lo, log_hi, points, axis=-1))  # R x G
        u = np.power(z[:, None, :], -grid[:, :, None])  # R x G x N
        _, _, rss = _solve_ac(u, np.broadcast_to(y[:, None, :], u.shape))
        k = rss.argmin(-1)
        step = (log_hi - log_lo) / (points - 1)
        centre = np.log(grid[np.arange(x.shape[0]), k])
        log_lo = np.maximum(centre - step, math.log(B_MIN))
        log_hi = np.minimum(centre + step, math.log(B_MAX))
    b = np.exp(centre)
    a, c, rss = _solve_ac(np.power(z, -b[:, None]), y)
    return np.stack([a * scale**b, b, c, rss], axis=-1)


def least_squares_fit(x: np.ndarray, y: np.ndarray) -> tuple[float, float, float, float]:
    """(a, b, c, rss) of one data set (see fit_many)."""
    a, b, c, rss = fit_many(np.asarray(x)[None, :], np.asarray(y)[None, :])[0]
    return float(a), float(b), float(c), float(rss)


def _flat(y: np.ndarray, rss: float) -> str | None:
    """Why the curve is flat, or None: the power law must fit better than a constant (an F test of the
    2 extra parameters at the 5% level)."""
    rss0, dof = float(((y - y.mean()) ** 2).sum()), y.size - PARAMETERS
    if rss0 <= rss * (1 + 1e-9):
        return "flat curve: the power law fits no better than a constant error"
    if rss <= 0:
        return None  # an exact fit of a curve that changes
    statistic = ((rss0 - rss) / (PARAMETERS - 1)) / (rss / dof)
    p_value = float(f_distribution.sf(statistic, PARAMETERS - 1, dof))
    if p_value > 0.05:
        return f"flat curve: the power law fits no better than a constant error (F test p = {p_value:.2g})"
    return None


def _resamples(
    x: np.ndarray, y: np.ndarray, rng: np.random.Generator, count: int
) -> tuple[np.ndarray, np.ndarray, str]:
    """(x, y) of `count` bootstrap resamples (count x runs each). Every x has two or more seeds: the seeds of
    each x drawn with replacement, their deviations from that x's mean widened by sqrt(m / (m - 1)) for m
    seeds (a plain bootstrap of m values shrinks their variance by (m - 1) / m: by half with two seeds).
    Else: runs drawn with replacement among all runs."""
    groups = [np.flatnonzero(x == value) for value in np.unique(x)]
    if all(g.size >= 2 for g in groups):
        ys = y.copy()
        for g in groups:
            ys[g] = y[g].mean() + math.sqrt(g.size / (g.size - 1)) * (y[g] - y[g].mean())
        index = np.concatenate([g[rng.integers(0, g.size, size=(count, g.size))] for g in groups], axis=1)
        return x[index], ys[index], "over seeds within each x (deviations widened by sqrt(m/(m-1)))"
    index = rng.integers(0, x.size, size=(count, x.size))
    return x[index], y[index], "over runs (some x has a single seed)"


def fit_family(
    family: str,
    x: list[float],
    error: list[float],
    axis: str = "train_size",
    replicates: int = 1000,
    seed: int = 0,
    level: float = LEVEL,
) -> PowerLawFit:
    """The saturating power law of `error` against `x` over all runs, with percentile bootstrap intervals."""
    xs, ys = np.asarray(x, dtype=float), np.asarray(error, dtype=float)
    keep = np.isfinite(xs) & np.isfinite(ys) & (xs > 0)
    xs, ys = xs[keep], ys[keep]
    distinct = int(np.unique(xs).size)
    result = PowerLawFit(
        family, axis, False, "", int(xs.size), distinct, (float(xs.min()), float(xs.max())) if xs.size else (0.0, 0.0)
    )
    name = "training-set sizes" if axis == "train_size" else "distinct training computes"
    if distinct < PARAMETERS:
        result.reason = f"not identifiable: {distinct} {name} for {PARAMETERS} parameters (a, b, c)"
        return result
    if xs.size <= PARAMETERS:
        result.reason = (
            f"not identifiable: {xs.size} runs for {PARAMETERS} parameters leave no residual to judge the fit"
        )
        return result
    a, b, c, rss = least_squares_fit(xs, ys)
    flat = _flat(ys, rss)
    if flat:
        result.reason = f"not identifiable: {flat}"
        return result
    if b <= B_MIN * 1.01 or b >= B_MAX * 0.99:
        result.exponent_identifiable = False
        result.reason = (
            f"exponent not identifiable: it runs to the edge of its range (b = {b:.3g}, allowed {B_MIN}-{B_MAX}), "
            "the curve's bend lies outside the measured sizes; the asymptote c and the curve over them are fitted"
        )
    rng = np.random.default_rng(seed)
    bx, by, how = _resamples(xs, ys, rng, replicates)
    enough = np.asarray([np.unique(row).size >= PARAMETERS for row in bx], dtype=bool)
    draws = fit_many(bx[enough], by[enough])[:, :3] if enough.any() else np.zeros((0, 3))
    if len(draws) < replicates // 2:
        result.reason = f"not identifiable: only {len(draws)} of {replicates} bootstrap resamples could be fitted"
        return result
    tail = 100 * (1 - level) / 2
    arr = draws
    lows, highs = np.percentile(arr, tail, axis=0), np.percentile(arr, 100 - tail, axis=0)
    result.identifiable = True
    result.reason = result.reason or "fitted"
    result.a, result.b, result.c = (Interval(v, float(lo), float(hi)) for v, lo, hi in zip((a, b, c), lows, highs))
    result.rmse = math.sqrt(rss / xs.size)
    result.bootstrap, result.replicates, result.draws = how, len(draws), arr
    return result


@dataclass
class FitCrossover:
    """Where `first` (the ViT) becomes better than `second` (the CNN) on their fitted curves."""

    first: str
    second: str
    status: str  # "interpolated", "extrapolated", "none", "not identifiable"
    size: Interval | None
    share: float  # share of bootstrap resamples in which the curves cross in the search range
    text: str


def _crossing(f, g, lo: float, hi: float) -> float | None:
    """The largest x in [lo, hi] where f - g turns from positive (first worse) to negative (first better)."""
    t = np.linspace(math.log(lo), math.log(hi), 400)
    d = f(np.exp(t)) - g(np.exp(t))
    turns = np.flatnonzero((d[:-1] > 0) & (d[1:] <= 0))
    if turns.size == 0:
        return None
    k = int(turns[-1])
    if d[k + 1] == 0:
        return float(np.exp(t[k + 1]))
    return float(math.exp(brentq(lambda s: float(f(math.exp(s)) - g(math.exp(s))), t[k], t[k + 1])))


def crossover(
    first: PowerLawFit, second: PowerLawFit, unit: str = "training images", span: float = 100.0
) -> FitCrossover:
    """The crossover of two fitted curves, searched from min/span to max*span of the measured x, with the
    percentile interval of the same crossing over paired bootstrap resamples; interpolated inside the
    x both families measured, else extrapolated."""
    label = f"{first.family} against {second.family}"
    if not (first.identifiable and second.identifiable):
        why = "; ".join(f"{f.family}: {f.reason}" for f in (first, second) if not f.identifiable)
        return FitCrossover(
            first.family, second.family, "not identifiable", None, 0.0, f"{label}: no crossover ({why})"
        )
    measured = (max(first.x_range[0], second.x_range[0]), min(first.x_range[1], second.x_range[1]))
    lo, hi = min(first.x_range[0], second.x_range[0]) / span, max(first.x_range[1], second.x_range[1]) * span
    point = _crossing(first.predict, second.predict, lo, hi)
    rows = min(first.draws.shape[0], second.draws.shape[0])
    found = []
    for i in range(rows):
        p, q = first.draws[i], second.draws[i]
        x = _crossing(lambda v, p=p: power_law(v, *p), lambda v, q=q: power_law(v, *q), lo, hi)
        if x is not None:
            found.append(x)
    share = len(found) / rows if rows else 0.0
    if point is None:
        ahead = first.predict(measured[1]) < second.predict(measured[1])
        where = "ahead of" if ahead else "behind"
        return FitCrossover(
            first.family,
            second.family,
            "none",
            None,
            share,
            f"{first.family}'s fitted curve stays {where} {second.family}'s from {lo:,.3g} to {hi:,.3g} {unit} "
            f"(it crosses in {100 * share:.0f}% of bootstrap resamples)",
        )
    tail = 100 * (1 - LEVEL) / 2
    low, high = (
        (float(np.percentile(found, tail)), float(np.percentile(found, 100 - tail))) if found else (point, point)
    )
    status = "interpolated" if measured[0] <= point <= measured[1] else "extrapolated"
    note = "" if share >= LEVEL else f"; the curves cross in only {100 * share:.0f}% of bootstrap resamples"
    return FitCrossover(
        first.family,
        second.family,
        status,
        Interval(point, low, high),
        share,
        f"{first.family} overtakes {second.family} at {point:,.0f} {unit} ({100 * LEVEL:.0f}% interval "
        f"{low:,.0f}-{high:,.0f}; {status}, measured {measured[0]:,.0f}-{measured[1]:,.0f}){note}",
    )


def predictions(fit: PowerLawFit, factors: tuple[float, ...] = (2.0, 10.0)) -> list[dict]:
    """Predicted error at factor x the largest measured x, with the bootstrap interval; all extrapolations."""
    if not fit.identifiable:
        return []
    top = fit.x_range[1]
    xs = np.asarray([top * f for f in factors])
    low, high = fit.band(xs)
    return [
        {"factor": f, "x": float(x), "error": float(fit.predict(x)), "low": float(lo), "high": float(hi)}
        for f, x, lo, hi in zip(factors, xs, low, high)
    ]


def as_dict(fit: PowerLawFit) -> dict:
    """JSON-ready fit (no bootstrap draws)."""
    out = {
        "family": fit.family,
        "axis": fit.axis,
        "identifiable": fit.identifiable,
        "reason": fit.reason,
        "runs": fit.n_points,
        "distinct_x": fit.n_x,
        "x_range": list(fit.x_range),
    }
    if fit.identifiable:
        out["exponent_identifiable"] = fit.exponent_identifiable
        for name in ("a", "b", "c"):
            value = getattr(fit, name)
            usable = name == "c" or fit.exponent_identifiable
            out[name] = {"value": value.value, "low": value.low, "high": value.high} if usable else None
        out.update(rmse=fit.rmse, bootstrap=fit.bootstrap, replicates=fit.replicates, level=LEVEL)
    return out
