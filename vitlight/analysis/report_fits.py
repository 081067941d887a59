"""The scaling-law part of `vitlight report`: per family a saturating power law of test error against
the data size (and against training compute where it varies within the family), the crossover of the
ViT's and the CNN's fitted curves, predictions at 2x and 10x the largest measured size, as JSON, as a
report.md section and as a log-log plot of the curves with their bootstrap bands over the runs.

The fitting itself is vitlight.analysis.scaling_fit; this module turns report records into its inputs.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from vitlight.analysis import scaling_fit as sf
from vitlight.analysis.report import RunRecord

FIT_PLOT = "error_fit_vs_train_size.png"
FIT_COMPUTE_PLOT = "error_fit_vs_compute.png"
EXTRAPOLATE = 10.0  # curves are drawn (dashed) to this factor beyond the largest measured size


def error_of(metric: str, value: float) -> float:
    """Test error from the report's metric: 1 - accuracy for an accuracy, else the metric itself (a loss)."""
    return 1.0 - value if "acc" in metric.rsplit("/", 1)[-1] else value


def error_name(metric: str) -> str:
    return f"1 - {metric}" if "acc" in metric.rsplit("/", 1)[-1] else metric


@dataclass
class StudyFits:
    metric: str
    unit: str
    size: dict[str, sf.PowerLawFit]
    compute: dict[str, sf.PowerLawFit]
    kinds: dict[str, str]
    pairs: list[sf.FitCrossover]
    headline: sf.FitCrossover | None
    predictions: dict[str, list[dict]]


def _fits(
    records: list[RunRecord], metric: str, axis: str, replicates: int, families: list[str]
) -> dict[str, sf.PowerLawFit]:
    out = {}
    for index, family in enumerate(families):
        runs = [r for r in records if r.family == family and metric in r.metrics]
        xs = [r.axis_size if axis == "train_size" else r.train_flops for r in runs]
        runs = [r for r, x in zip(runs, xs) if x]
        xs = [x for x in xs if x]
        errors = [error_of(metric, r.metrics[metric]) for r in runs]
        out[family] = sf.fit_family(family, xs, errors, axis=axis, replicates=replicates, seed=index)
    return out


def _compute_reason(fit: sf.PowerLawFit) -> sf.PowerLawFit:
    """One compute per family (every size trained for the same steps): say so rather than 'N computes'."""
    if not fit.identifiable and fit.n_x == 1:
        fit.reason = (
            f"not identifiable: every run of this family trained with the same compute ({fit.x_range[0]:.3g} FLOPs; "
            "the sweep trains every size for the same steps)"
        )
    return fit


def _best_at_top(fits: dict[str, sf.PowerLawFit], names: list[str]) -> str | None:
    fitted = [n for n in names if fits[n].identifiable]
    return min(fitted, key=lambda n: float(fits[n].predict(fits[n].x_range[1]))) if fitted else None


def fit_study(records: list[RunRecord], metric: str, unit: str, replicates: int = 1000) -> StudyFits:
    """Every family's fits, every ViT/CNN crossover, and the headline pair: the ViT and the CNN family with the
    lowest fitted error at their largest size (the only pair when there is one of each)."""
    families = sorted({r.family for r in records if metric in r.metrics})
    kinds = {r.family: r.kind for r in records}
    size = _fits(records, metric, "train_size", replicates, families)
    compute = {
        f: _compute_reason(fit) for f, fit in _fits(records, metric, "train_flops", replicates, families).items()
    }
    vits = [f for f in families if kinds.get(f) == "vit"]
    cnns = [f for f in families if kinds.get(f) == "cnn"]
    pairs = [sf.crossover(size[v], size[c], unit) for v in vits for c in cnns]
    headline = None
    if len(pairs) == 1:
        headline = pairs[0]
    elif pairs:
        best_vit, best_cnn = _best_at_top(size, vits), _best_at_top(size, cnns)
        headline = next((p for p in pairs if (p.first, p.second) == (best_vit, best_cnn)), None)
    predictions = {f: sf.predictions(fit) for f, fit in size.items()}
    return StudyFits(metric, unit, size, compute, kinds, pairs, headline, predictions)


def as_json(fits: StudyFits) -> dict:
    from dataclasses import asdict

    return {
        "metric": fits.metric,
        "error": error_name(fits.metric),
        "model": "error = a * x^-b + c (a, c >= 0), least squares over all runs; percentile bootstrap intervals",
        "level": sf.LEVEL,
        "train_size": {f: sf.as_dict(fit) for f, fit in fits.size.items()},
        "train_flops": {f: sf.as_dict(fit) for f, fit in fits.compute.items()},
        "crossover": asdict(fits.headline) if fits.headline else None,
        "pairs": [asdict(p) for p in fits.pairs],
        "predictions": {f: [{**p, "extrapolated": True} for p in preds] for f, preds in fits.predictions.items()},
    }


def _interval(value: sf.Interval | None, digits: str = ".3g") -> str:
    return "-" if value is None else f"{value.value:{digits}} [{value.low:{digits}}, {value.high:{digits}}]"


def _fit_table(fits: dict[str, sf.PowerLawFit], x_name: str) -> list[str]:
    lines = [
        f"| family | exponent b | asymptote c (irreducible error) | scale a ({x_name}^-b) | runs | fit RMSE |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for family, fit in fits.items():
        if fit.identifiable and not fit.exponent_identifiable:
            lines.append(
                f"| {family} | {fit.reason} | {_interval(fit.c)} | not identifiable | {fit.n_points} | {fit.rmse:.3g} |"
            )
        elif fit.identifiable:
            bound = (
                " (interval reaches the range's edge)"
                if fit.b.high >= sf.B_MAX * 0.99 or fit.b.low <= sf.B_MIN * 1.01
                else ""
            )
            lines.append(
                f"| {family} | {_interval(fit.b)}{bound} | {_interval(fit.c)} | {_interval(fit.a)} | {fit.n_points} | "
                f"{fit.rmse:.3g} |"
            )
        else:
            lines.append(f"| {family} | {fit.reason} | | | {fit.n_points} | |")
    return lines


def markdown(fits: StudyFits, plots: dict[str, str]) -> list[str]:
    """The report.md section: fit tables, the crossover of the fitted curves, the extrapolations and the plot."""
    err = error_name(fits.metric)
    level = f"{100 * sf.LEVEL:.0f}%"
    some = next((f for f in fits.size.values() if f.identifiable), None)
    how = f" Intervals: {level} percentile bootstrap {some.bootstrap}, {some.replicates} resamples." if some else ""
    lines = [
        "## Scaling laws",
        "",
        f"Per family, the saturating power law `E(n) = a * n^-b + c` of the test error E = {err} against the "
        f"{fits.unit} n, fitted by least squares over every seed's run (a, c >= 0, b in [{sf.B_MIN}, {sf.B_MAX}]): "
        f"b is the exponent, c the error it levels off at, a the scale. Values are the fit over all runs, "
        f"[low, high] its {level} interval.{how} A fit that its data cannot pin down says why instead.",
        "",
        f"### Test error against {fits.unit}",
        "",
        *_fit_table(fits.size, "n"),
        "",
        f"### Where the fitted curves cross ({level} interval)",
        "",
    ]
    others = [f"- {pair.text}" for pair in fits.pairs if pair is not fits.headline]
    if fits.headline:
        lines += [f"**{fits.headline.text}.**", *([""] + others if others else [])]
    else:
        lines += others or ["No ViT and CNN families to compare."]
    lines += [
        "",
        f"### What more data would buy (extrapolated beyond the largest measured size, {level} interval)",
        "",
        "| family | largest measured | error there (fit) | 2x: error | 10x: error |",
        "|---|---:|---:|---:|---:|",
    ]
    for family, fit in fits.size.items():
        preds = fits.predictions.get(family) or []
        if not preds:
            lines.append(f"| {family} | {fit.x_range[1]:,.0f} | - | not identifiable | not identifiable |")
            continue
        cells = [f"{p['error']:.3f} [{p['low']:.3f}, {p['high']:.3f}] at {p['x']:,.0f} (extrapolated)" for p in preds]
        lines.append(
            f"| {family} | {fit.x_range[1]:,.0f} | {float(fit.predict(fit.x_range[1])):.3f} | "
            + " | ".join(cells)
            + " |"
        )
    lines += ["", "### Test error against training compute", ""]
    lines += _fit_table(fits.compute, "FLOPs")
    lines += ["", *[f"![{name}]({file})" for name, file in plots.items()], ""]
    return lines


def plot_fits(
    fits: dict[str, sf.PowerLawFit],
    records: list[RunRecord],
    metric: str,
    axis: str,
    title: str,
    path: Path,
    crossing: sf.FitCrossover | None = None,
) -> Path:
    """Log-log: each run's error, each family's fitted curve (solid over the measured range, dashed to 10x
    beyond) with its bootstrap band, and the crossover with its interval."""
    from vitlight.analysis.figure_plots import pyplot

    plt = pyplot()
    figure, ax = plt.subplots(figsize=(7, 4.5))
    for index, (family, fit) in enumerate(fits.items()):
        color = f"C{index % 10}"
        runs = [r for r in records if r.family == family and metric in r.metrics]
        xs = [r.axis_size if axis == "train_size" else r.train_flops for r in runs]
        ax.scatter(
            [x for x in xs if x],
            [error_of(metric, r.metrics[metric]) for r, x in zip(runs, xs) if x],
            s=14,
            color=color,
            alpha=0.7,
        )
        if not fit.identifiable:
            ax.plot([], [], color=color, label=f"{family}: fit not identifiable")
            continue
        lo, hi = fit.x_range
        inside = np.geomspace(lo, hi, 100)
        beyond = np.geomspace(hi, hi * EXTRAPOLATE, 40)
        for xs_, style, label in (
            (
                inside,
                "-",
                f"{family}: b={fit.b.value:.2f}, c={fit.c.value:.3f}"
                if fit.exponent_identifiable
                else f"{family}: c={fit.c.value:.3f} (b not identifiable)",
            ),
            (beyond, "--", None),
        ):
            low, high = fit.band(xs_)
            ax.plot(xs_, fit.predict(xs_), style, color=color, label=label)
            ax.fill_between(xs_, low, high, color=color, alpha=0.15, linewidth=0)
    if crossing is not None and crossing.size is not None:
        ax.axvline(crossing.size.value, color="grey", linestyle=":", label=f"crossover ~{crossing.size.value:,.0f}")
        ax.axvspan(crossing.size.low, crossing.size.high, color="grey", alpha=0.12, linewidth=0)
    ax.set_xscale("log")
    ax.set_yscale("log")
    measured = [error_of(metric, r.metrics[metric]) for r in records if metric in r.metrics]
    if measured and min(measured) > 0:  # bands of loosely pinned fits stay in view, not over the whole axis
        ax.set_ylim(min(measured) / 3, min(max(measured) * 2, 1.0))
    unit = "training images" if axis == "train_size" else "training FLOPs"
    ax.set_xlabel(f"{unit} (log; dashed: extrapolated)")
    ax.set_ylabel(f"test error {error_name(metric)} (log)")
    ax.set_title(f"{title}: fitted a*n^-b + c, {100 * sf.LEVEL:.0f}% bootstrap bands", fontsize=9)
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=7)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)
    return path


def curve_rows(fits: StudyFits, points: int = 40) -> list[list]:
    """Rows (family, x, fitted error, band low, band high, extrapolated) of each fitted size curve: the table the
    W&B dashboard's fitted-curve panel draws."""
    rows = []
    for family, fit in fits.size.items():
        if not fit.identifiable:
            continue
        xs = np.geomspace(fit.x_range[0], fit.x_range[1] * EXTRAPOLATE, points)
        low, high = fit.band(xs)
        for x, y, lo, hi in zip(xs, fit.predict(xs), low, high):
            rows.append([family, float(x), float(y), float(lo), float(hi), bool(x > fit.x_range[1] * 1.0001)])
    return rows
