"""The scaling-study report's plots (accuracy against training images and against training FLOPs)
and its markdown page, from the records and points of vitlight.analysis.report."""

from __future__ import annotations

from pathlib import Path

from vitlight.analysis.figure_plots import pyplot
from vitlight.analysis.report import Crossover, Point, RunRecord, size_label


def _chance(axis, records: list[RunRecord]) -> None:
    classes = {r.num_classes for r in records if r.num_classes}
    if len(classes) == 1:
        axis.axhline(1 / classes.pop(), color="black", linewidth=0.8, linestyle="--", alpha=0.5, label="chance")


def plot_accuracy_vs_data(
    points: dict[str, list[Point]],
    metric: str,
    title: str,
    path: Path,
    headline: Crossover | None = None,
    records: list[RunRecord] | None = None,
) -> Path:
    """Mean over seeds per family (line), the min-max band, each run as a dot; log x axis."""
    plt = pyplot()
    figure, axis = plt.subplots(figsize=(7, 4.5))
    for index, (family, pts) in enumerate(points.items()):
        color = f"C{index % 10}"
        sizes = [p.train_size for p in pts]
        axis.plot(sizes, [p.mean for p in pts], "o-", color=color, label=family)
        axis.fill_between(sizes, [p.low for p in pts], [p.high for p in pts], color=color, alpha=0.15, linewidth=0)
        runs = [r for r in records or [] if r.family == family and metric in r.metrics]
        axis.scatter([r.axis_size for r in runs], [r.metrics[metric] for r in runs], s=10, color=color, alpha=0.5)
    _chance(axis, records or [])
    if headline is not None and headline.size:
        axis.axvline(headline.size, color="grey", linestyle=":", label=f"ViT overtakes ResNet (~{headline.size:,.0f})")
    all_sizes = sorted({p.train_size for pts in points.values() for p in pts})
    axis.set_xscale("log")
    axis.set_xticks(all_sizes, [f"{s:,}" for s in all_sizes])
    axis.minorticks_off()
    axis.set_xlabel(f"{size_label(records or [])} (log scale)")
    axis.set_ylabel(f"{metric} (mean over seeds; band: min-max)")
    axis.set_title(title, fontsize=10)
    axis.grid(alpha=0.3)
    axis.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)
    return path


def plot_accuracy_vs_compute(
    points: dict[str, list[Point]], records: list[RunRecord], metric: str, title: str, path: Path
) -> Path:
    """Each run at its training FLOPs; per family a line through the per-size means."""
    plt = pyplot()
    figure, axis = plt.subplots(figsize=(7, 4.5))
    for index, (family, pts) in enumerate(points.items()):
        color = f"C{index % 10}"
        runs = [r for r in records if r.family == family and r.train_flops and metric in r.metrics]
        axis.scatter([r.train_flops for r in runs], [r.metrics[metric] for r in runs], s=12, color=color, alpha=0.5)
        line = [p for p in pts if p.flops]
        axis.plot([p.flops for p in line], [p.mean for p in line], "o-", color=color, label=family)
    _chance(axis, records)
    axis.set_xscale("log")
    from matplotlib.ticker import NullFormatter

    axis.xaxis.set_minor_formatter(NullFormatter())
    transfer = " incl. pretraining" if any(r.is_transfer for r in records) else ""
    axis.set_xlabel(f"training compute{transfer}, FLOPs (forward + backward, counted on the meta device)")
    axis.set_ylabel(metric)
    axis.set_title(title, fontsize=10)
    axis.grid(alpha=0.3, which="both")
    axis.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)
    return path


def _cell(point: Point | None) -> str:
    if point is None:
        return "-"
    spread = f" ± {point.std:.3f}" if point.n > 1 else ""
    return f"{point.mean:.3f}{spread} ({point.n})"


def markdown(
    title: str,
    source: str,
    metric: str,
    records: list[RunRecord],
    points: dict[str, list[Point]],
    headline: Crossover | None,
    pairs: list[Crossover],
    plots: dict[str, str],
    skipped: list[str],
    others: list[RunRecord],
    command: str | None,
    sections: list[str] | None = None,
) -> str:
    families = list(points)
    sizes = sorted({p.train_size for pts in points.values() for p in pts})
    lookup = {(f, p.train_size): p for f, pts in points.items() for p in pts}
    walls = [r.wall_time_s for r in records if r.wall_time_s]
    total = f" Sum of the runs' own wall times (summary.json): {sum(walls) / 60:.1f} minutes." if walls else ""
    lines = [
        f"# {title}",
        "",
        f"{len(records)} finished runs from `{source}`; metric `{metric}`, mean ± sample standard "
        f"deviation over seeds (number of runs in parentheses).{total}",
    ]
    if command:
        lines += ["", "Reproduce:", "", "```", command, "```"]
    label = size_label(records)
    lines += [
        "",
        f"## {metric} against {'pretraining' if label == 'pretraining images' else 'training'}-set size",
        "",
        f"| {label} | " + " | ".join(families) + " |",
        "|---:|" + "---:|" * len(families),
    ]
    for size in sizes:
        lines.append(f"| {size:,} | " + " | ".join(_cell(lookup.get((f, size))) for f in families) + " |")
    lines += ["", "## Where ViT overtakes ResNet", ""]
    lines += [f"**{headline.text}.**" if headline else "No ViT and CNN families to compare.", ""]
    lines += [f"- {pair.text}" for pair in pairs]
    lines += ["", *sections] if sections else []
    lines += [
        "",
        "## Training compute",
        "",
        "FLOPs of one training step per image (forward + loss + backward, and for a frozen backbone only the head's "
        "backward; torch.utils.flop_counter on the meta device, math attention path) times the images each run "
        "trained on"
        + (
            "; for transfer runs plus the same count for their pretraining run."
            if any(r.is_transfer for r in records)
            else "."
        ),
        "",
        "| family | parameters | train FLOPs / image | " + " | ".join(f"{s:,} images: FLOPs" for s in sizes) + " |",
        "|---|---:|---:|" + "---:|" * len(sizes),
    ]
    for family in families:
        run = next((r for r in records if r.family == family), None)
        per_image = f"{run.flops_per_image / 1e9:.3g} G" if run and run.flops_per_image else "-"
        params = f"{run.parameters / 1e6:.2f} M" if run and run.parameters else "-"
        cells = [
            f"{lookup[(family, s)].flops:.3g}" if (family, s) in lookup and lookup[(family, s)].flops else "-"
            for s in sizes
        ]
        lines.append(f"| {family} | {params} | {per_image} | " + " | ".join(cells) + " |")
    lines += ["", "## Plots", ""] + [f"![{name}]({file})" for name, file in plots.items()]
    lines += [
        "",
        "## Runs",
        "",
        f"| run | family | training images | pretraining images | seed | {metric} | train FLOPs | wall time (s) |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in sorted(records, key=lambda r: (r.family, r.axis_size or 0, r.seed or 0)):
        flops = f"{r.train_flops:.3g}" if r.train_flops else "-"
        value = f"{r.metrics[metric]:.4f}" if metric in r.metrics else "-"
        wall = f"{r.wall_time_s:.0f}" if r.wall_time_s else "-"
        pretrain = r.pretrain_size if r.is_transfer else "-"
        lines.append(
            f"| {Path(r.run_dir).name} | {r.family} | {r.train_size} | {pretrain} | {r.seed} | {value} | {flops} | "
            f"{wall} |"
        )
    if others:
        lines += [
            "",
            "Runs on other datasets (not plotted): " + ", ".join(f"{r.experiment} ({r.dataset})" for r in others),
        ]
    if skipped:
        lines += ["", "Left out: " + "; ".join(skipped)]
    return "\n".join(lines) + "\n"
