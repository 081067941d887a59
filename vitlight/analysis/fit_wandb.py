"""The scaling fits in W&B: the tables `vitlight report` logs to its own run, and the dashboard panel that
draws the fitted curves from them.

The report's run is marked as the report's (job_type and tag "report"), not a trial: it is started with
the sweep variables of any enclosing `wandb agent` removed, so W&B never files it under a sweep, and it
logs no per-run summary (`data/train_size`, the sweep metric) that a trial panel plots. Only it has the
`report/fit_curves` table, so the fitted-curve panel draws from it alone.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from typing import Any

REPORT_JOB_TYPE = "report"
REPORT_TAG = "report"
REPORT_OF_KEY = "report_of"  # config key: the sweep a report run is of (the study dashboard selects it by this)
FIT_CURVES_KEY = "report/fit_curves"
FIT_TABLE_KEY = "report/fits"
CURVE_COLUMNS = ["family", "x", "fitted_error", "band_low", "band_high", "extrapolated"]
FIT_COLUMNS = ["family", "axis", "identifiable", "reason", "b", "b_low", "b_high", "c", "c_low", "c_high", "a"]
# variables by which wandb.init joins a run to a sweep (set by `wandb agent` in its children)
SWEEP_ENV = ("WANDB_SWEEP_ID", "WANDB_SWEEP_PARAM_PATH", "WANDB_RUN_ID")


@contextlib.contextmanager
def outside_sweep() -> Iterator[None]:
    """Starts the report's run as its own run even from a shell that a sweep agent set up."""
    saved = {key: os.environ.pop(key) for key in SWEEP_ENV if key in os.environ}
    try:
        yield
    finally:
        os.environ.update(saved)


def report_run_marks() -> dict[str, Any]:
    """wandb.init arguments that mark the report's own run."""
    return {"job_type": REPORT_JOB_TYPE, "tags": [REPORT_TAG]}


def fit_rows(fits_json: dict) -> list[list]:
    """One row per family and axis of report_fits.as_json's fits (None where not identifiable)."""
    rows = []
    for axis in ("train_size", "train_flops"):
        for family, fit in (fits_json.get(axis) or {}).items():
            values = [fit.get(name) or {} for name in ("b", "c", "a")]  # None: not identifiable
            b, c, a = values
            rows.append(
                [
                    family,
                    axis,
                    bool(fit["identifiable"]),
                    fit["reason"],
                    b.get("value"),
                    b.get("low"),
                    b.get("high"),
                    c.get("value"),
                    c.get("low"),
                    c.get("high"),
                    a.get("value"),
                ]
            )
    return rows


def log_fits(run: Any, fits_json: dict, curves: list[list]) -> None:
    """Logs the fit table and the fitted curves (the panel's data) to the report's run; the crossover and
    each family's exponent go to its summary."""
    import wandb

    table = wandb.Table(columns=CURVE_COLUMNS, data=curves)
    chart = wandb.plot.line(table, "x", "fitted_error", stroke="family", title="fitted a*n^-b + c per family")
    run.log(
        {
            FIT_TABLE_KEY: wandb.Table(columns=FIT_COLUMNS, data=fit_rows(fits_json)),
            FIT_CURVES_KEY: table,
            f"{FIT_CURVES_KEY}_chart": chart,
        }
    )
    crossing = fits_json.get("crossover")
    if crossing:
        run.summary["fit/crossover"] = crossing["text"]
        if crossing.get("size"):
            run.summary["fit/crossover_size"] = crossing["size"]["value"]
    for family, fit in (fits_json.get("train_size") or {}).items():
        if fit["identifiable"] and fit.get("b"):
            run.summary[f"fit/{family}/exponent"] = fit["b"]["value"]


def fit_curve_panel(metric: str) -> dict[str, Any]:
    """The dashboard spec's fitted-curve panel: W&B's line chart over the report run's curve table."""
    return {
        "type": "custom_chart",
        "title": f"fitted power laws: 1 - {metric} against training-set size (vitlight report)",
        "table": FIT_CURVES_KEY,
        "chart": "wandb/line/v0",
        "fields": {"x": "x", "y": "fitted_error", "stroke": "family"},
        "strings": {"title": f"1 - {metric}: fitted a*n^-b + c per family"},
    }


def to_panel(panel: dict[str, Any]) -> Any:
    """The spec's custom_chart panel as a wandb_workspaces CustomChart (built offline)."""
    import wandb_workspaces.reports.v2 as wr

    return wr.CustomChart(
        query={"summaryTable": {"tableKey": panel["table"]}},
        chart_name=panel["chart"],
        chart_fields=panel["fields"],
        chart_strings=panel["strings"],
    )
