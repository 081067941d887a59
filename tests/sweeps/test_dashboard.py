"""`vitlight dashboard`: the workspace spec of each study (panels, axes, grouping), written offline beside the
sweep folder, and the same spec turned into wandb-workspaces objects (built, not saved: no network)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import ROOT
from vitlight.errors import ConfigError
from vitlight.sweeps.dashboard import FLOPS_KEY, SIZE_KEY, build_spec, main, to_workspace
from vitlight.sweeps.spec import load_spec

SWEEPS = sorted((ROOT / "sweeps").glob("*.yaml"))


@pytest.mark.parametrize("path", SWEEPS, ids=[p.stem for p in SWEEPS])
def test_each_study_gets_size_flops_parallel_and_crossover_panels(path: Path):
    spec = load_spec(path)
    view = build_spec(spec)
    size, flops, parallel, crossover = view["sections"][0]["panels"][:4]
    assert (size["x"], flops["x"]) == ({"summary": SIZE_KEY}, {"summary": FLOPS_KEY})
    assert size["y"] == flops["y"] == {"summary": spec.metric} and size["log_x"] and flops["log_x"]
    assert size["groupby"] == view["runset"]["groupby"] and size["groupby"][0] == "model.init_args.model_name"
    assert (size["aggregate"], size["spread"]) == ("mean", "stddev")
    searched = [p.name for p in spec.searched if "seed" not in p.name]
    assert parallel["columns"] == [{"config": name} for name in searched] + [{"summary": spec.metric}]
    assert crossover["type"] == "markdown" and "Where ViT overtakes ResNet" in crossover["markdown"]
    if any("patch_size" in p.name for p in spec.searched):  # model scaling: the varied architecture keys split families
        assert "model.init_args.model_kwargs.patch_size" in size["groupby"]


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
    assert kinds == ["ScatterPlot", "ScatterPlot", "ParallelCoordinatesPlot", "MarkdownPanel", "CustomChart"]
    size = workspace.sections[0].panels[0]
    assert (size.x.name, size.y.name, size.log_x) == (SIZE_KEY, "test/acc", True)
    assert [key.name for key in workspace.runset_settings.groupby] == ["model.init_args.model_name"]


def test_bad_targets_and_a_missing_entity_end_in_one_line(tmp_path: Path):
    with pytest.raises(ConfigError, match="does not exist"):
        main([str(tmp_path / "nope.yaml")])
    with pytest.raises(ConfigError, match="not a sweep folder"):
        main([str(tmp_path)])
    with pytest.raises(ConfigError, match="no W&B entity"):
        to_workspace(build_spec(load_spec(ROOT / "sweeps" / "scaling_data.yaml")))
