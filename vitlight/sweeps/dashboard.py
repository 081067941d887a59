"""`vitlight dashboard FILE_OR_SWEEP_FOLDER`: a saved W&B workspace view built for one study.

    vitlight dashboard sweeps/scaling_data.yaml                 # spec -> runs/sweeps/scaling_data.dashboard.json
    vitlight dashboard runs/sweeps/scaling_data                 # the same, from the sweep folder
    vitlight dashboard runs/sweeps/scaling_data.dashboard.json --entity ME --project vitlight   # publish

The runs: those whose config holds `sweep_name` = the sweep's name, a key every trial's run gets
from its sweep file (under `wandb agent`, and offline before `wandb sync`), which a pipeline's
stage runs and a report run do not have; and the run of `vitlight report` on the sweep, whose config
holds `report_of` = the sweep's name (a workspace has one runset for all its panels, and the fitted
curves are in that run's table; it logs none of the keys the trial panels plot). The view: the sweep
metric against the training-set size and against the counted training FLOPs (log x; line plots over
the row each trial logs at its end, one line per model family, the mean over seeds with a standard-deviation band); a
parallel-coordinates panel on keys both kinds of run hold (the nested resolved config, the top-level
`config` key, the summary's `data/train_size`) and the metric; and the crossover table of
`vitlight report` (docs/results/<study>/report.md or <sweep folder>/report/report.md) as a
markdown panel under its own heading; and the fitted power laws per family from the report run's
table (vitlight.analysis.fit_wandb).

With W&B credentials (and without --offline) the view is saved to the W&B server with the
wandb-workspaces library and its URL printed; otherwise the spec is written as JSON beside the
sweep folder, and this command given that JSON with credentials publishes it unchanged.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any

from vitlight.analysis import fit_wandb
from vitlight.errors import ConfigError
from vitlight.sweeps.spec import SweepSpec, load_spec

SIZE_KEY = "data/train_size"
FLOPS_KEY = "compute/train_flops"
SWEEP_KEY = "sweep_name"
REPORT_KEY = fit_wandb.REPORT_OF_KEY
SEED = re.compile(r"(^|\.)seed(_everything)?$")
FAMILY_KEYS = ("model.init_args.model_name", "model.init_args.model_kwargs.patch_size", "model.init_args.preset")
PIPELINE_FAMILY = "stages.pretrain.model.model_name"  # the pipeline's run config: each stage's model description


def _config_key(name: str) -> str:
    """A sweep parameter as the resolved run config names it (`model.model_name` -> `model.init_args.model_name`)."""
    section, _, rest = name.partition(".")
    if section in ("model", "data") and rest and not rest.startswith(("init_args.", "class_path")):
        return f"{section}.init_args.{rest}"
    return name


def family_keys(spec: SweepSpec) -> list[str]:
    """Run config keys that tell model families apart: the model name, plus each architecture key the sweep varies
    (optimizer settings are not families). A pipeline's: the model keys it varies, else its pretraining model."""
    if spec.subcommand == "pipeline":
        models = [  # pretrain.model.preset, not pretrain.model.optimizer.lr
            p.name
            for p in spec.searched
            if p.name.split(".")[1:2] == ["model"] and not {"optimizer", "lr_scheduler"} & set(p.name.split("."))
        ]
        return models or [PIPELINE_FAMILY]
    varied = [_config_key(p.name) for p in spec.searched]
    architecture = [k for k in varied if k in FAMILY_KEYS or k.startswith("model.init_args.model_kwargs.")]
    return ["model.init_args.model_name", *[k for k in architecture if k != "model.init_args.model_name"]]


def column(name: str) -> dict[str, str]:
    """A searched parameter as a key that agent runs and offline runs both hold: W&B's own config key for a
    top-level name (`config`), the summary's count for `data.train_size`, else the nested resolved config key
    (W&B's flat `model.optimizer.lr` cannot be addressed by a panel)."""
    if "." not in name:
        return {"config": name}
    if name in ("data.train_size", "data.init_args.train_size"):
        return {"summary": SIZE_KEY}
    return {"config": _config_key(name)}


def crossover_table(spec: SweepSpec, folder: Path | None) -> str:
    """The crossover section of the study's `vitlight report`, or how to make it."""
    candidates = [Path("docs/results") / spec.name / "report.md"]
    if folder is not None:
        candidates.insert(0, folder / "report" / "report.md")
    for path in candidates:
        if path.is_file():
            text = path.read_text()
            match = re.search(r"^## Where ViT overtakes ResNet\n(.*?)(?=^## )", text, flags=re.M | re.S)
            if match:
                return f"### Where ViT overtakes ResNet ({path})\n{match.group(1).strip()}\n"
    return (
        f"### Where ViT overtakes ResNet\nNo report yet: `vitlight report runs/sweeps/{spec.name} --out "
        f"docs/results/{spec.name}`, then run `vitlight dashboard` again.\n"
    )


def build_spec(
    spec: SweepSpec, folder: Path | None = None, entity: str | None = None, project: str | None = None
) -> dict[str, Any]:
    """The workspace as plain data: what the offline JSON holds and what the online view is built from."""
    metric = spec.metric
    groupby = family_keys(spec)
    searched = [p.name for p in spec.searched if not SEED.search(p.name)]
    family = ", ".join(groupby)
    by_family = {"groupby": groupby, "aggregate": "mean", "spread": "stddev"}
    panels = [
        {
            "type": "line",
            "title": f"{metric} against training-set size: mean and stddev over seeds, a line per {family}",
            "x": SIZE_KEY,
            "y": metric,
            "log_x": True,
            **by_family,
        },
        {
            "type": "line",
            "title": f"{metric} against training FLOPs: mean and stddev over seeds, a line per {family}",
            "x": FLOPS_KEY,
            "y": metric,
            "log_x": True,
            **by_family,
        },
        {
            "type": "parallel_coordinates",
            "title": f"{spec.name}: parameters and {metric}",
            "columns": [column(name) for name in searched] + [{"summary": metric}],
        },
        {"type": "markdown", "title": "crossover (vitlight report)", "markdown": crossover_table(spec, folder)},
        fit_wandb.fit_curve_panel(metric),  # the report run's fitted power laws (vitlight.analysis.fit_wandb)
    ]
    return {
        "name": f"vitlight {spec.name}",
        "sweep": spec.name,
        "sweep_file": str(spec.path),
        "metric": metric,
        "goal": spec.goal,
        "entity": entity or spec.entity,
        "project": project or spec.project or "vitlight",
        # the trials, and the report's own run (its fitted curves): one runset serves every panel of a workspace
        "runset": {"groupby": groupby, "filter": {"any_config": [SWEEP_KEY, REPORT_KEY], "equals": spec.name}},
        "sections": [{"name": f"{spec.name} scaling", "panels": panels}],
    }


def _metric(axis: dict[str, str]) -> Any:
    import wandb_workspaces.reports.v2 as wr

    return wr.Config(axis["config"]) if "config" in axis else wr.SummaryMetric(axis["summary"])


def runset_filter(view: dict[str, Any]) -> Any:
    """The runs of the sweep, as a wandb-workspaces filter expression."""
    from wandb_workspaces import expr

    selection = view["runset"]["filter"]
    return expr.Or(*(expr.Config(key) == selection["equals"] for key in selection["any_config"]))


def _panel(panel: dict[str, Any]) -> Any:
    import wandb_workspaces.reports.v2 as wr

    if panel["type"] == "line":  # one row per run (logged at its end) holds x and y: a grouped line across runs
        single = panel["groupby"][0] if len(panel["groupby"]) == 1 else None  # else: the runset's grouping
        return wr.LinePlot(
            title=panel["title"],
            x=panel["x"],
            y=[panel["y"]],
            log_x=panel["log_x"],
            groupby=wr.Config(single) if single else None,
            aggregate=True,
            groupby_aggfunc=panel["aggregate"],
            groupby_rangefunc=panel["spread"],
            title_x=panel["x"],
            title_y=panel["y"],
        )
    if panel["type"] == "parallel_coordinates":
        columns = [wr.ParallelCoordinatesPlotColumn(metric=_metric(column)) for column in panel["columns"]]
        return wr.ParallelCoordinatesPlot(title=panel["title"], columns=columns)
    if panel["type"] == "markdown":  # a markdown panel has no title: it opens with its heading
        text = panel["markdown"]
        return wr.MarkdownPanel(markdown=text if text.startswith("#") else f"### {panel['title']}\n{text}")
    if panel["type"] == "custom_chart":
        return fit_wandb.to_panel(panel)
    raise ConfigError(
        f"dashboard: unknown panel type {panel['type']!r} in the spec "
        "(valid: line, parallel_coordinates, markdown, custom_chart)"
    )


def to_workspace(view: dict[str, Any]) -> Any:
    """The spec as a wandb_workspaces.workspaces.Workspace (built offline; .save() publishes it)."""
    import wandb_workspaces.workspaces as ws
    from wandb_workspaces import expr

    if not view.get("entity"):
        raise ConfigError("dashboard: no W&B entity; pass --entity NAME (your user or team)")
    section = view["sections"][0]
    return ws.Workspace(
        name=view["name"],
        entity=view["entity"],
        project=view["project"],
        sections=[ws.Section(name=section["name"], panels=[_panel(p) for p in section["panels"]], is_open=True)],
        runset_settings=ws.RunsetSettings(
            groupby=[expr.Config(key) for key in view["runset"]["groupby"]], filters=runset_filter(view)
        ),
    )


def _source(target: Path) -> tuple[dict[str, Any] | None, SweepSpec | None, Path | None]:
    """(a written spec, or the sweep spec and its folder) from a spec JSON, a sweep file or a sweep folder."""
    if target.suffix == ".json" and target.is_file():
        return json.loads(target.read_text()), None, None
    if target.is_dir():
        record = target / "sweep.json"
        if not record.is_file():
            raise ConfigError(
                f"dashboard: {target} is not a sweep folder (no sweep.json); "
                "give a sweeps/*.yaml file or runs/sweeps/NAME"
            )
        return None, load_spec(json.loads(record.read_text())["file"]), target
    if target.is_file():
        spec = load_spec(target)
        folder = Path("runs/sweeps") / spec.name
        return None, spec, folder if folder.is_dir() else None
    raise ConfigError(
        f"dashboard: {target} does not exist; give a sweeps/*.yaml file, a sweep folder or a *.dashboard.json spec"
    )


def main(argv: list[str]) -> int:
    from vitlight.cli_errors import CommandParser

    p = CommandParser.from_docstring("vitlight dashboard", __doc__)
    p.add_argument("target", help="a sweep file, a sweep folder (runs/sweeps/NAME) or a written *.dashboard.json")
    p.add_argument("--entity", default=None, help="W&B entity (default: the sweep file's)")
    p.add_argument("--project", default=None, help="W&B project (default: the sweep file's, else vitlight)")
    p.add_argument("--out", default=None, help="where the offline spec goes (default: beside the sweep folder)")
    p.add_argument("--offline", action="store_true", help="only write the spec, even with W&B credentials")
    args = p.parse_args(argv)
    view, spec, folder = _source(Path(args.target))
    if view is None:
        view = build_spec(spec, folder, args.entity, args.project)
    else:
        view.update({k: v for k, v in (("entity", args.entity), ("project", args.project)) if v})
    from vitlight.logging_wandb import choose_wandb_mode

    mode, reason = choose_wandb_mode()
    if mode == "online" and not args.offline:
        saved = to_workspace(view).save()
        print(f"dashboard saved: {saved.url}")
        return 0
    out = Path(args.out) if args.out else Path("runs/sweeps") / f"{view['sweep']}.dashboard.json"
    if folder is not None and not args.out:
        out = folder.parent / f"{folder.name}.dashboard.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(view, indent=1) + "\n")
    print(f"dashboard spec written: {out} (W&B {mode}: {reason})")
    print(
        f"  publish it: WANDB_MODE=online vitlight dashboard {out} --entity YOUR_ENTITY [--project {view['project']}]"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
