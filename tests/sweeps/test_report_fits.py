"""`vitlight report`'s scaling laws on run folders drawn from known power laws: the report.md section, the fit
plot, report.json and `--json`, the report's own W&B run (tables, marked as the report's), the dashboard's
fitted-curve panel, and the GPU study file's grid given the same report."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import numpy as np
import pytest
import yaml

from tests.conftest import ROOT
from tests.helpers.wandb_records import run_config
from tests.sweeps.test_report import CNN, VIT, write_run
from vitlight.analysis import fit_wandb
from vitlight.analysis.scaling_fit import power_law
from vitlight.cli import main
from vitlight.sweeps.dashboard import build_spec, runset_filter, to_workspace
from vitlight.sweeps.spec import load_spec

SIZES = [200, 500, 1200, 3000, 8000]
LAWS = {"vit": (6.0, 0.6, 0.04), "cnn": (0.9, 0.35, 0.10)}  # test error a * n^-b + c


def true_crossing() -> float:
    from scipy.optimize import brentq

    gap = lambda t: power_law(math.exp(t), *LAWS["vit"]) - power_law(math.exp(t), *LAWS["cnn"])  # noqa: E731
    return math.exp(brentq(gap, math.log(SIZES[0]), math.log(SIZES[-1])))


@pytest.fixture()
def law_sweep(tmp_path: Path) -> Path:
    root = tmp_path / "sweeps" / "laws"
    rng = np.random.default_rng(1)  # one fixed draw: nominal 95% intervals cover about 90% of draws (docs/sweeps.md)
    for kind, law in LAWS.items():
        for size in SIZES:
            for seed in range(3):
                error = power_law(size, *law) + rng.normal(0, 0.003)
                model = VIT if kind == "vit" else CNN
                write_run(root / "trials" / f"{kind}{size}{seed}", f"{kind}/run", model, size, seed, 1 - error)
    return root


def test_report_fits_the_laws_it_was_given(law_sweep: Path, tmp_path: Path, monkeypatch, capsys):
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SWEEP_ID", "abc123")  # as in a shell that a sweep agent set up
    import wandb

    real_init, started = wandb.init, []

    def init(**kwargs):  # the real wandb.init, recording how the report marks its run
        started.append({k: kwargs[k] for k in ("job_type", "tags")} if "abc123" not in str(os.environ) else {})
        return real_init(**kwargs)

    monkeypatch.setattr(wandb, "init", init)
    out = tmp_path / "report"
    assert main(["report", str(law_sweep), "--out", str(out), "--json", "--bootstrap", "300"]) == 0
    printed = json.loads(capsys.readouterr().out)  # --json: stdout is the fits alone
    fits = json.loads((out / "report.json").read_text())["fits"]
    assert printed == fits
    vit, cnn = fits["train_size"]["ViT-Ti/4 (d96 L4 h3)"], fits["train_size"]["ResNet-18"]
    for fit, (_, b, c) in ((vit, LAWS["vit"]), (cnn, LAWS["cnn"])):
        assert (
            fit["identifiable"]
            and fit["b"]["low"] <= b <= fit["b"]["high"]
            and fit["c"]["low"] <= c <= fit["c"]["high"]
        )
    crossing = fits["crossover"]
    assert (
        crossing["status"] == "interpolated" and crossing["size"]["low"] <= true_crossing() <= crossing["size"]["high"]
    )
    top = fits["predictions"]["ResNet-18"]
    assert [p["factor"] for p in top] == [2.0, 10.0] and all(p["extrapolated"] for p in top)
    # each run's compute differs here (2 epochs of its own set), so the compute fit is made too
    assert fits["train_flops"]["ResNet-18"]["identifiable"]
    text = (out / "report.md").read_text()
    assert "## Scaling laws" in text and "ViT-Ti/4 (d96 L4 h3) overtakes ResNet-18 at" in text
    assert "(extrapolated)" in text and "### Test error against training compute" in text
    for name in ("error_fit_vs_train_size.png", "error_fit_vs_compute.png"):
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and f"]({name})" in text
    # the report's own W&B run: the fit tables, tagged and typed as the report's, not joined to the sweep
    [run_file] = out.glob("wandb/offline-run-*/run-*.wandb")
    data = run_file.read_bytes()
    assert fit_wandb.FIT_CURVES_KEY.encode() in data and fit_wandb.FIT_TABLE_KEY.encode() in data
    assert b"abc123" not in data
    assert started == [{"job_type": "report", "tags": ["report"]}]
    # the study dashboard's runset takes it by `report_of` (the trials by `sweep_name`, which it lacks)
    config = run_config(run_file)
    assert config[fit_wandb.REPORT_OF_KEY] == "laws" and "sweep_name" not in config
    conditions = runset_filter({"runset": {"filter": {"any_config": ["sweep_name", "report_of"], "equals": "laws"}}})
    assert any(config.get(c.key.name) == c.value for c in conditions.items)
    assert os.environ["WANDB_SWEEP_ID"] == "abc123"  # put back for the shell


def test_one_compute_per_family_and_json_without_out(law_sweep: Path, capsys):
    for path in law_sweep.rglob("summary.json"):  # every size trained for the same steps, as the mini does
        summary = json.loads(path.read_text())
        path.write_text(json.dumps({**summary, "global_step": 100, "epochs": None}))
    assert main(["report", str(law_sweep), "--json", "--bootstrap", "100"]) == 0
    fits = json.loads(capsys.readouterr().out)
    for fit in fits["train_flops"].values():
        assert not fit["identifiable"] and "every run of this family trained with the same compute" in fit["reason"]
    assert fits["train_size"]["ResNet-18"]["identifiable"]
    assert not list(law_sweep.parent.rglob("report.md"))  # no --out: nothing written


def test_report_needs_out_or_json(law_sweep: Path, capsys):
    assert main(["report", str(law_sweep)]) == 2
    assert "vitlight: error: report: give --out DIR" in capsys.readouterr().err


def test_dashboard_draws_the_fitted_curves_from_the_report_table():
    spec = load_spec(ROOT / "sweeps" / "scaling_data_mini.yaml")
    panel = build_spec(spec)["sections"][0]["panels"][-1]
    assert panel == fit_wandb.fit_curve_panel(spec.metric) and panel["table"] == fit_wandb.FIT_CURVES_KEY
    chart = to_workspace({**build_spec(spec), "entity": "someone"}).sections[0].panels[-1]
    assert type(chart).__name__ == "CustomChart" and chart.query == {"summaryTable": {"tableKey": "report/fit_curves"}}
    assert chart.chart_fields == {"x": "x", "y": "fitted_error", "stroke": "family"}


def test_the_gpu_study_grid_gets_the_same_report(tmp_path: Path, capsys):
    """sweeps/scaling_data.yaml's grid (its four models, six sizes, two seeds) as synthetic runs."""
    spec = yaml.safe_load((ROOT / "sweeps" / "scaling_data.yaml").read_text())["parameters"]
    configs, sizes, seeds = (spec[k]["values"] for k in ("config", "data.train_size", "seed_everything"))
    laws = {"vit": [(8.0, 0.5, 0.06), (10.0, 0.55, 0.05)], "cnn": [(1.2, 0.3, 0.08), (1.5, 0.32, 0.07)]}
    rng = np.random.default_rng(1)
    root = tmp_path / "sweeps" / "scaling_data"
    counts = {"vit": 0, "cnn": 0}
    for config in configs:
        model = yaml.safe_load((ROOT / config).read_text())["model"]["init_args"]
        model = {k: v for k, v in model.items() if k in ("model_name", "model_kwargs", "cifar_stem")}
        kind = "vit" if model["model_name"].startswith("vit") else "cnn"
        law = laws[kind][counts[kind]]
        counts[kind] += 1
        for size in sizes:
            n = int(size * 50_000) if size <= 1 else int(size)
            for seed in seeds:
                error = power_law(n, *law) + rng.normal(0, 0.003)
                write_run(
                    root / f"{Path(config).stem}-{n}-{seed}", f"{Path(config).stem}/run", model, n, seed, 1 - error
                )
    assert main(["report", str(root), "--json", "--bootstrap", "100"]) == 0
    fits = json.loads(capsys.readouterr().out)
    assert len(fits["train_size"]) == 4 and all(fit["identifiable"] for fit in fits["train_size"].values())
    assert len(fits["pairs"]) == 4 and fits["crossover"]["status"] in ("interpolated", "extrapolated")
