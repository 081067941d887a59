"""`vitlight dashboard`: the workspace spec of each study (panels, axes, grouping), written offline beside the
sweep folder, and the same spec turned into wandb-workspaces objects (built, not saved: no network)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import ROOT
from vitlight.errors import ConfigError
from vitlight.sweeps.dashboard import FLOPS_KEY, SIZE_KEY, build_spec, family_keys, main, to_workspace
from vitlight.sweeps.spec import load_spec

SWEEPS = sorted((ROOT / "sweeps").glob("*.yaml"))


@pytest.mark.parametrize("path", SWEEPS, ids=[p.stem for p in SWEEPS])
def test_each_study_gets_size_flops_parallel_and_crossover_panels(path: Path):
    spec = load_spec(path)
    view = build_spec(spec)
    size, flops, parallel, crossover, fitted = view["sections"][0]["panels"]
    assert (size["type"], size["x"], flops["x"]) == ("line", SIZE_KEY, FLOPS_KEY)
    assert size["y"] == flops["y"] == spec.metric and size["log_x"] and flops["log_x"]
    assert size["groupby"] == view["runset"]["groupby"] == family_keys(spec)
    assert fitted["type"] == "custom_chart" and fitted["table"] == "report/fit_curves"
    assert (size["aggregate"], size["spread"]) == ("mean", "stddev")
    assert view["runset"]["filter"] == {"any_config": ["sweep_name", "report_of"], "equals": spec.name}
    searched = [p.name for p in spec.searched if "seed" not in p.name]
    assert parallel["columns"][-1] == {"summary": spec.metric} and len(parallel["columns"]) == len(searched) + 1
    for column in parallel["columns"]:  # W&B's flat `a.b` keys cannot be addressed by a panel: none is used
        assert "." not in column.get("config", "") or column["config"].startswith(("model.init_args", "pretrain."))
    assert crossover["type"] == "markdown" and "Where ViT overtakes ResNet" in crossover["markdown"]
    if spec.subcommand == "pipeline":
        assert size["groupby"] in (["stages.pretrain.model.model_name"], ["pretrain.model.preset"])
    else:
        assert size["groupby"][0] == "model.init_args.model_name"
    if any("patch_size" in p.name for p in spec.searched):  # model scaling: the varied architecture keys split families
        assert "model.init_args.model_kwargs.patch_size" in size["groupby"]


def test_the_workspace_keeps_grouping_aggregation_titles_and_filter_through_wandb_workspaces():
    """Built with wandb-workspaces, turned into the view W&B stores and loaded back by the library: nothing of
    the spec is dropped on the way."""
    import wandb_workspaces.workspaces as ws

    spec = load_spec(ROOT / "sweeps" / "scaling_model.yaml")
    view = build_spec(spec, entity="someone")
    stored = to_workspace(view)._to_model()  # what .save() uploads
    loaded = ws.Workspace._from_model(stored)
    size, flops, parallel, crossover, fitted = loaded.sections[0].panels
    assert type(fitted).__name__ == "CustomChart"  # the report run's fitted curves
    for panel, x in ((size, SIZE_KEY), (flops, FLOPS_KEY)):
        assert type(panel).__name__ == "LinePlot" and panel.log_x
        assert (panel.x.name, [y.name for y in panel.y]) == (x, [spec.metric])  # history keys: the end-of-run row
        assert (panel.groupby_aggfunc, panel.groupby_rangefunc, panel.aggregate) == ("mean", "stddev", True)
        assert panel.title.startswith(f"{spec.metric} against")
    assert parallel.title == f"{spec.name}: parameters and {spec.metric}"
    names = [column.metric.name for column in parallel.columns]
    assert names == ["model.init_args.model_name", "model.init_args.model_kwargs.patch_size", spec.metric]
    assert crossover.markdown.startswith("### ")  # its title
    assert [key.name for key in loaded.runset_settings.groupby] == family_keys(spec)
    # as W&B stores it: the trials, and the report's own run (the fitted curves' table)
    assert loaded.runset_settings.filters == (
        "Config(\"sweep_name\") == 'scaling_model' or Config(\"report_of\") == 'scaling_model'"
    )
    one_family = ws.Workspace._from_model(
        to_workspace(build_spec(load_spec(ROOT / "sweeps" / "scaling_data.yaml"), entity="x"))._to_model()
    )
    assert one_family.sections[0].panels[0].groupby.name == "model.init_args.model_name"


def test_offline_writes_the_spec_beside_the_sweep_folder_and_says_how_to_publish(tmp_path: Path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("WANDB_MODE", "offline")
    folder = tmp_path / "runs" / "sweeps" / "scaling_data"
    folder.mkdir(parents=True)
    (folder / "sweep.json").write_text(json.dumps({"file": str(ROOT / "sweeps" / "scaling_data.yaml")}))
    (folder / "report").mkdir()
    (folder / "report" / "report.md").write_text(
        "# r\n\n## Where ViT overtakes ResNet\n\n**ViT does not overtake ResNet.**\n\n## Training compute\n"
    )
    assert main([str(folder)]) == 0
    written = tmp_path / "runs" / "sweeps" / "scaling_data.dashboard.json"
    view = json.loads(written.read_text())
    assert "**ViT does not overtake ResNet.**" in view["sections"][0]["panels"][3]["markdown"]
    out = capsys.readouterr().out
    assert f"vitlight dashboard {written} --entity" in out
    # the written spec becomes the wandb-workspaces view unchanged
    workspace = to_workspace({**view, "entity": "someone"})
    kinds = [type(panel).__name__ for panel in workspace.sections[0].panels]
    assert kinds == ["LinePlot", "LinePlot", "ParallelCoordinatesPlot", "MarkdownPanel", "CustomChart"]
    size = workspace.sections[0].panels[0]
    assert (size.x, size.y, size.log_x) == (SIZE_KEY, ["test/acc"], True)
    assert [key.name for key in workspace.runset_settings.groupby] == ["model.init_args.model_name"]


def test_bad_targets_and_a_missing_entity_end_in_one_line(tmp_path: Path):
    with pytest.raises(ConfigError, match="does not exist"):
        main([str(tmp_path / "nope.yaml")])
    with pytest.raises(ConfigError, match="not a sweep folder"):
        main([str(tmp_path)])
    with pytest.raises(ConfigError, match="no W&B entity"):
        to_workspace(build_spec(load_spec(ROOT / "sweeps" / "scaling_data.yaml")))
