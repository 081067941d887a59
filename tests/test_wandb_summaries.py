"""W&B summaries mean what a sweep needs: best val/acc and val/loss over the run, the tested checkpoint's
test metrics, and every sweep file's metric among the keys a vitlight run gives W&B (offline run files)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import EXPERIMENTS, ROOT, SMOKE, write_image_folder
from tests.helpers.wandb_records import read_records
from vitlight.cli import main
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


@pytest.fixture(scope="module")
def fitted_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("summaries")
    images = write_image_folder(tmp / "images", per_class=12, size=16)
    assert main(["fit", "--config", str(EXPERIMENTS / "quickstart.yaml"), "--config", str(SMOKE), "--data", "ImageFolder",
                 "--data.data_dir", str(images), "--data.num_workers", "0", "--data.batch_size", "8", "--data.image_size", "14",
                 "--trainer.max_epochs", "2", "--trainer.check_val_every_n_epoch", "1", "--runs_dir", str(tmp / "runs")]) == 0
    (run,) = list((tmp / "runs" / "quickstart").iterdir())
    return run


def test_validation_summaries_are_the_best_and_test_metrics_are_the_tested_checkpoints(fitted_run: Path):
    defined, summary, history = records_of(fitted_run)
    assert {key: defined.get(key) for key in BEST_SUMMARIES} == BEST_SUMMARIES == {"val/acc": "max", "val/acc_top5": "max", "val/loss": "min"}
    assert {"val/acc", "val/loss"} <= history  # the history W&B's sweep controller and hyperband read stays numeric
    tested = json.loads((fitted_run / "summary.json").read_text())["test"]
    assert tested and {key: summary[key] for key in tested} == pytest.approx(tested)


@pytest.mark.parametrize("path", SWEEPS, ids=[p.stem for p in SWEEPS])
def test_each_sweep_metric_is_a_key_the_run_gives_wandb(path: Path, fitted_run: Path):
    spec = load_spec(path)
    if spec.subcommand == "pipeline":  # the pipeline's own run: `<stage>/<metric>` of each stage's summary
        stage, _, metric = spec.metric.partition("/")
        assert stage in STAGES and metric, spec.metric
        return
    _, summary, history = records_of(fitted_run)
    assert spec.metric in history | set(summary), f"{path.name}: metric {spec.metric} is never logged by `vitlight fit`"
