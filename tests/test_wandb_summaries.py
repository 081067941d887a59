"""W&B summaries mean what a sweep needs: best val/acc and val/loss over the run, the tested checkpoint's
test metrics, and every sweep file's metric among the keys a vitlight run gives W&B (offline run files)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import ROOT, smoke_fit_on_folder, write_image_folder
from tests.helpers.wandb_records import read_records, run_config
from vitlight.cli import main
from vitlight.sweeps.dashboard import build_spec
from vitlight.sweeps.spec import load_spec
from vitlight.tools.pipeline import STAGES
from vitlight.wandb_summaries import BEST_SUMMARIES

SWEEPS = sorted((ROOT / "sweeps").glob("*.yaml"))
pytestmark = pytest.mark.slow  # one real `vitlight fit` (about 10-30 s on 2 cores) shared by every test here


def key_of(item) -> str:
    return item.key or "/".join(item.nested_key)  # W&B may send "val/acc" as the nested key ["val", "acc"]


def records_of(run: Path) -> tuple[dict[str, str], dict[str, object], set[str]]:
    """(metric definitions: key -> summary kind, summary updates, keys in the history) of the run's W&B file."""
    (path,) = list((run / "wandb").glob("offline-run-*/run-*.wandb"))
    defined, summary, history = {}, {}, set()
    for record in read_records(path):
        kind = record.WhichOneof("record_type")
        if kind == "metric" and record.metric.name:
            kinds = [k for k in ("max", "min", "last", "mean", "best") if getattr(record.metric.summary, k)]
            if kinds:
                defined[record.metric.name] = kinds[0]
        elif kind == "summary":
            summary.update({key_of(item): json.loads(item.value_json) for item in record.summary.update})
        elif kind == "history":
            history.update(key_of(item) for item in record.history.item)
    return defined, summary, history


def history_rows(run: Path) -> list[dict[str, object]]:
    (path,) = list((run / "wandb").glob("offline-run-*/run-*.wandb"))
    rows = []
    for record in read_records(path):
        if record.WhichOneof("record_type") == "history":
            rows.append({key_of(item): json.loads(item.value_json) for item in record.history.item})
    return rows


def train_step_flops_per_image() -> float:
    from vitlight.analysis.flops import count_training_flops
    from vitlight.tasks.backbones import create_backbone

    kwargs = {
        "patch_size": 7,
        "embed_dim": 128,
        "depth": 6,
        "num_heads": 4,
    }  # quickstart.yaml's ViT, 3 classes at 14 px
    return (
        count_training_flops(
            lambda: create_backbone("vit_tiny_patch16_224", 3, 14, 3, kwargs), (2, 3, 14, 14)
        ).train_step
        / 2
    )


@pytest.fixture(scope="module")
def fitted_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("summaries")
    images = write_image_folder(tmp / "images", per_class=12, size=16)
    assert (
        main(
            [
                *smoke_fit_on_folder(images),
                "--data.batch_size",
                "8",
                "--trainer.max_epochs",
                "2",
                "--trainer.check_val_every_n_epoch",
                "1",
                "--runs_dir",
                str(tmp / "runs"),
            ]
        )
        == 0
    )
    (run,) = list((tmp / "runs" / "quickstart").iterdir())
    return run


def test_validation_summaries_are_the_best_and_test_metrics_are_the_tested_checkpoints(fitted_run: Path):
    defined, summary, history = records_of(fitted_run)
    assert (
        {key: defined.get(key) for key in BEST_SUMMARIES}
        == BEST_SUMMARIES
        == {"val/acc": "max", "val/acc_top5": "max", "val/loss": "min"}
    )
    assert {"val/acc", "val/loss"} <= history  # the history W&B's sweep controller and hyperband read stays numeric
    # at the end, the plain best values: a number a runs table and the sweep controller read, and the max beside it
    best = json.loads((fitted_run / "summary.json").read_text())["best_validation"]
    assert summary["val/acc"] == summary["val/acc_max"] == pytest.approx(best["val/acc"])
    assert summary["val/loss"] == summary["val/loss_min"] and isinstance(summary["val/loss"], float)
    record = json.loads((fitted_run / "summary.json").read_text())
    tested = record["test"]
    assert tested and {key: summary[key] for key in tested} == pytest.approx(tested)
    # the dashboards' axes: the training images as a count, and the counted training FLOPs
    assert summary["data/train_size"] == record["train_size"] == 32
    per_image = train_step_flops_per_image()
    assert summary["compute/train_flops"] == pytest.approx(per_image * record["global_step"] * 8)


def test_the_confusion_matrix_is_wandbs_chart(fitted_run: Path):
    (path,) = list((fitted_run / "wandb").glob("offline-run-*/run-*.wandb"))
    charts = {}
    for record in read_records(path):
        if record.WhichOneof("record_type") == "config":
            for item in record.config.update:
                if list(item.nested_key[:2]) == ["_wandb", "visualize"]:
                    charts[item.nested_key[2]] = json.loads(item.value_json)["panel_config"]["panelDefId"]
    assert charts["test/confusion_matrix"] == "wandb/confusion_matrix/v1"  # wandb.plot.confusion_matrix
    assert charts["test/per_class_accuracy"] == "wandb/bar/v0"


@pytest.mark.parametrize("path", SWEEPS, ids=[p.stem for p in SWEEPS])
def test_each_sweep_metric_is_a_key_the_run_gives_wandb(path: Path, fitted_run: Path):
    spec = load_spec(path)
    if spec.subcommand == "pipeline":  # the pipeline's own run: `<stage>/<metric>` of each stage's summary
        stage, _, metric = spec.metric.partition("/")
        assert stage in STAGES and metric, spec.metric
        return
    _, summary, history = records_of(fitted_run)
    assert spec.metric in history | set(summary), f"{path.name}: metric {spec.metric} is never logged by `vitlight fit`"


@pytest.mark.parametrize("path", SWEEPS, ids=[p.stem for p in SWEEPS])
def test_dashboard_axes_and_grouping_keys_exist_in_a_logged_run(path: Path, fitted_run: Path):
    spec = load_spec(path)
    if spec.subcommand == "pipeline":  # the pipeline's run: tests/sweeps/test_wandb_runs.py
        return
    view = build_spec(spec)
    _, summary, _ = records_of(fitted_run)
    (wandb_file,) = list((fitted_run / "wandb").glob("offline-run-*/run-*.wandb"))
    config = run_config(wandb_file)
    for key in view["runset"]["groupby"]:  # W&B shows nested config keys dotted
        node = config
        for part in key.split("."):
            assert isinstance(node, dict) and part in node, (
                f"{path.name}: grouping key {key} is not in a run's W&B config"
            )
            node = node[part]
    _, _, history = records_of(fitted_run)
    for panel in view["sections"][0]["panels"][:2]:  # the line plots read x and y from one history row
        assert {panel["x"], panel["y"]} <= history and panel["x"] in summary
    rows = [row for row in history_rows(fitted_run) if view["sections"][0]["panels"][0]["x"] in row]
    assert len(rows) == 1 and spec.metric in rows[0]
