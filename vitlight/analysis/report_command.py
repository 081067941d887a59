"""`vitlight report SWEEP_OR_RUNS_DIR --out DIR`: the scaling-study report of a sweep.

    vitlight report runs/sweeps/scaling_data_mini --out docs/results/scaling_data_mini
    vitlight report ENTITY/PROJECT/SWEEP_ID --out reports/scaling_data      # online: the W&B API

Writes DIR/report.md (tables: accuracy against training-set size per model family with the
mean and spread over seeds, training compute, the size where ViT overtakes ResNet or a plain
statement that it does not), DIR/accuracy_vs_train_size.png, DIR/accuracy_vs_compute.png and
DIR/report.json; and logs the plots and the runs as a wandb.Table to a W&B run (offline
without credentials, in OUT/wandb or --wandb_dir; WANDB_MODE=disabled turns it off).

Scaling laws (vitlight.analysis.report_fits): per model family a saturating power law of test error
against training-set size (and training compute where it varies within the family) with bootstrap
intervals, the crossover of the ViT's and the CNN's fitted curves, and the error predicted at 2x and
10x the largest size: a report.md section, DIR/error_fit_vs_train_size.png, report.json's "fits",
and tables in the report's W&B run (job_type and tag "report"). `--json` prints the fits to stdout
(for scripts; with no --out nothing is written).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path
from typing import Any

from vitlight.cli_errors import CommandParser
from vitlight.errors import ConfigError

DATA_PLOT = "accuracy_vs_train_size.png"
COMPUTE_PLOT = "accuracy_vs_compute.png"


def parser() -> argparse.ArgumentParser:
    p = CommandParser.from_docstring("vitlight report", __doc__)
    p.add_argument(
        "source",
        help="a sweep folder or runs folder (run folders found recursively), or ENTITY/PROJECT/SWEEP_ID online",
    )
    p.add_argument(
        "--out", default=None, help="folder for report.md, the plots and report.json (required without --json)"
    )
    p.add_argument("--metric", default="test/acc", help="the accuracy to report (default test/acc)")
    p.add_argument("--title", default=None, help="report title (default: from the source)")
    p.add_argument("--command", default=None, help="the command that produced the runs, quoted in the report")
    p.add_argument("--json", action="store_true", help="print the fitted scaling laws as JSON on stdout")
    p.add_argument(
        "--bootstrap", type=int, default=1000, help="bootstrap resamples for the fit intervals (default 1000)"
    )
    p.add_argument(
        "--wandb_dir", default=None, help="folder in which the report's W&B run makes its wandb/ folder (default: OUT)"
    )
    return p


def collect_online(path: str) -> list:
    """Runs of a W&B sweep through the public API (thin: the same records as summary.json gives)."""
    import wandb

    from vitlight.analysis.report import record_from

    records = []
    for run in wandb.Api().sweep(path).runs:
        if run.state != "finished":
            continue
        config = {k: v for k, v in dict(run.config).items()}
        summary_values = dict(run.summary)
        data = (config.get("data") or {}).get("init_args") or {}
        summary = {
            "status": "finished",
            "experiment": config.get("experiment"),
            "seed": config.get("seed_everything"),
            "train_size": summary_values.get("train_size") or data.get("train_size"),
            "global_step": summary_values.get("trainer/global_step"),
            "epochs": summary_values.get("epoch"),
            "data": {
                "dataset": str((config.get("data") or {}).get("class_path", "?")).rsplit(".", 1)[-1],
                "image_size": data.get("image_size") or 32,
                "num_classes": (config.get("model") or {}).get("init_args", {}).get("num_classes"),
                "channels": data.get("channels") or 3,
            },
            "model": {"model_name": (config.get("model") or {}).get("init_args", {}).get("model_name")},
            "test": {k: v for k, v in summary_values.items() if isinstance(k, str) and k.startswith("test/")},
        }
        records.append(record_from(summary, config, run.url))
    return records


def log_wandb(
    out: Path,
    wandb_dir: Path,
    title: str,
    metric: str,
    records: list,
    files: dict[str, Path],
    report: dict[str, Any],
    curves: list[list] | None = None,
) -> str | None:
    from vitlight.logging_wandb import apply_wandb_mode

    mode, _ = apply_wandb_mode()
    if mode == "disabled":
        return None
    import wandb

    from vitlight.analysis import fit_wandb

    wandb_dir.mkdir(parents=True, exist_ok=True)
    groups = sorted(
        {
            Path(r.run_dir).parts[i + 1]
            for r in records
            for i, part in enumerate(Path(r.run_dir).parts[:-1])
            if part == "sweeps"
        }
    )
    report_of = {fit_wandb.REPORT_OF_KEY: groups[0]} if len(groups) == 1 else {}  # the study dashboard's key
    with fit_wandb.outside_sweep():
        run = wandb.init(
            project="vitlight",
            dir=str(wandb_dir),
            name=f"report/{title}",
            mode=mode,
            group=groups[0] if len(groups) == 1 else None,
            config={"metric": metric, "runs": len(records), **report_of},
            **fit_wandb.report_run_marks(),
        )
    columns = [
        "run",
        "family",
        "kind",
        "dataset",
        "train_size",
        "seed",
        metric,
        "train_flops",
        "parameters",
        "wall_time_s",
    ]
    table = wandb.Table(columns=columns)
    for r in records:
        table.add_data(
            Path(r.run_dir).name,
            r.family,
            r.kind,
            r.dataset,
            r.train_size,
            r.seed,
            r.metrics.get(metric),
            r.train_flops,
            r.parameters,
            r.wall_time_s,
        )
    run.log({"report/runs": table, **{f"report/{name}": wandb.Image(str(path)) for name, path in files.items()}})
    if report.get("crossover"):
        run.summary["crossover"] = report["crossover"]["text"]
    if report.get("fits"):
        fit_wandb.log_fits(run, report["fits"], curves or [])
    run.finish()
    wandb.teardown()
    return mode


def main(argv: list[str]) -> int:
    from vitlight.analysis import report as rp
    from vitlight.analysis import report_fits, report_plots

    args = parser().parse_args(argv)
    if args.out is None and not args.json:
        raise ConfigError("report: give --out DIR for report.md and the plots, or --json for the fitted values")
    source = Path(args.source).expanduser()
    skipped: list[str] = []
    if source.exists():
        records, skipped = rp.collect_runs(source)
    elif re.fullmatch(r"[\w.-]+/[\w.-]+/\w+", args.source):
        records = collect_online(args.source)
    else:
        raise ConfigError(f"report: {args.source!r} is neither a folder nor ENTITY/PROJECT/SWEEP_ID")
    records = [r for r in records if r.subcommand == "fit"]
    if source.exists() and not any(args.metric in r.metrics for r in records):
        from vitlight.analysis.pipeline_report import collect_pipelines

        pipelines = collect_pipelines(source)  # e.g. the ImageGPT scaling sweep: its fit runs are pretraining stages
        if pipelines:
            return _pipeline_report(source, args, pipelines)
    if not records:
        raise ConfigError(f"report: no finished `vitlight fit` runs (summary.json) under {args.source!r}")
    dataset = rp.main_dataset(records)
    others = [r for r in records if r.dataset != dataset]
    records = [r for r in records if r.dataset == dataset]
    if not any(args.metric in r.metrics for r in records):
        have = sorted({k for r in records for k in r.metrics})
        raise ConfigError(f"report: no run has the metric {args.metric!r}; they have: {', '.join(have)}")
    title = args.title or f"{source.name if source.exists() else args.source}: {args.metric} on {dataset}"
    points = rp.aggregate(records, args.metric)
    kinds = {r.family: r.kind for r in records}
    unit = rp.size_unit(records)
    headline, pairs = rp.crossovers(points, kinds, unit)
    fits = report_fits.fit_study(records, args.metric, unit, replicates=args.bootstrap)
    fits_json = report_fits.as_json(fits)
    if args.json:
        print(json.dumps(fits_json, indent=2, default=str))
    if args.out is None:
        return 0
    out = Path(args.out).expanduser()
    out.mkdir(parents=True, exist_ok=True)
    files = {
        "accuracy_vs_train_size": report_plots.plot_accuracy_vs_data(
            points, args.metric, title, out / DATA_PLOT, headline, records
        ),
        "accuracy_vs_compute": report_plots.plot_accuracy_vs_compute(
            points, records, args.metric, title, out / COMPUTE_PLOT
        ),
    }
    fit_plots = {
        "error_fit_vs_train_size": report_fits.plot_fits(
            fits.size, records, args.metric, "train_size", title, out / report_fits.FIT_PLOT, fits.headline
        )
    }
    if any(fit.identifiable for fit in fits.compute.values()):
        fit_plots["error_fit_vs_compute"] = report_fits.plot_fits(
            fits.compute, records, args.metric, "train_flops", title, out / report_fits.FIT_COMPUTE_PLOT
        )
    report = {**rp.as_json(records, points, headline, pairs), "fits": fits_json}
    (out / "report.json").write_text(json.dumps(report, indent=2, default=str))
    text = report_plots.markdown(
        title,
        args.source,
        args.metric,
        records,
        points,
        headline,
        pairs,
        {name: path.name for name, path in files.items()},
        skipped,
        others,
        args.command,
        report_fits.markdown(fits, {name: path.name for name, path in fit_plots.items()}),
    )
    (out / "report.md").write_text(text)
    files.update(fit_plots)
    curves = report_fits.curve_rows(fits)
    mode = log_wandb(out, Path(args.wandb_dir or out).expanduser(), title, args.metric, records, files, report, curves)
    say = sys.stderr if args.json else sys.stdout  # --json keeps stdout for the JSON
    print(
        f"{len(records)} runs, {len(points)} model families; "
        + (headline.text if headline else "no ViT/CNN pair to compare")
        + (f"; fitted curves: {fits.headline.text}" if fits.headline else ""),
        file=say,
    )
    print(
        f"wrote {out / 'report.md'}, "
        + ", ".join(str(path) for path in files.values())
        + f", {out / 'report.json'}"
        + (f"; W&B run ({mode}) under {Path(args.wandb_dir or out) / 'wandb'}" if mode else ""),
        file=say,
    )
    return 0


def _pipeline_report(source: Path, args: argparse.Namespace, pipelines: list) -> int:
    """A sweep of `vitlight pipeline` trials: the metric (default probe/test_acc) against parameters and compute."""
    from vitlight.analysis import pipeline_report as pr

    have = sorted({k for r in pipelines for k in r.metrics})
    metric = (
        args.metric
        if args.metric in have
        else pr.PROBE_METRIC
        if args.metric == "test/acc" and pr.PROBE_METRIC in have
        else None
    )
    if args.out is None:
        raise ConfigError(
            "report: a sweep of `vitlight pipeline` trials has no power-law fits for --json; give --out DIR"
        )
    if metric is None:
        raise ConfigError(f"report: no pipeline has the metric {args.metric!r}; they have: {', '.join(have)}")
    out = Path(args.out).expanduser()
    title = args.title or f"{source.name}: {metric}"
    files = pr.write_report(pipelines, metric, title, out, args.source)
    print(
        f"{len(pipelines)} pipelines; wrote {out / 'report.md'}, "
        + ", ".join(str(path) for path in files.values())
        + f", {out / 'report.json'}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
