"""`vitlight pipeline`: stage flags, the key check a sweep uses, and one real pretrain -> transfer run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import EXPERIMENTS, SMOKE
from vitlight.cli import main
from vitlight.errors import ConfigError
from vitlight.tools.pipeline import argument_problem, fit_argv, parse

QUICKSTART = str(EXPERIMENTS / "quickstart.yaml")


def test_stage_flags_route_to_their_stage():
    args = parse(
        [
            "--pretrain",
            QUICKSTART,
            "--pretrain",
            str(SMOKE),
            "--pretrain.data.train_size=64",
            "--finetune",
            QUICKSTART,
            "--finetune={'model': {'optimizer': {'lr': 0.01}}}",
            "--probe",
            "all",
            "--probe.l2",
            "1e-3",
            "--seed",
            "3",
        ]
    )
    assert args.configs["pretrain"] == [QUICKSTART, str(SMOKE)]
    assert fit_argv(args, "pretrain", "R", None) == [
        "fit",
        "--config",
        QUICKSTART,
        "--config",
        str(SMOKE),
        "--seed_everything=3",
        "--data.train_size=64",
        "--runs_dir=R",
    ]
    assert fit_argv(args, "finetune", "R", "c.ckpt")[3:] == [
        "--model.init_args.checkpoint_path=c.ckpt",
        "--seed_everything=3",
        "--model.optimizer.lr=0.01",
        "--runs_dir=R",
    ]
    assert args.overrides["probe"] == ["--l2", "1e-3"] and args.probe_layers == "all"
    with pytest.raises(ConfigError, match="--pretrain CONFIG is required"):
        parse(["--finetune", QUICKSTART])
    with pytest.raises(ConfigError, match="unknown flag --pretrian"):
        parse(["--pretrian", QUICKSTART])


def test_argument_problem_names_the_stage_and_key():
    assert argument_problem(["--pretrain", QUICKSTART, "--pretrain.data.train_size=64"]) is None
    problem = argument_problem(
        ["--pretrain", QUICKSTART, "--linear_probe", QUICKSTART, "--linear_probe.model.optimizer.lrr=1"]
    )
    assert problem == "linear_probe stage: unknown key"


@pytest.mark.slow  # three stages in one process: ~45 s on 2 busy cores
def test_pretrain_then_linear_probe_and_layer_probe(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("WANDB_RUN_GROUP", "group-x")
    runs = tmp_path / "runs"
    code = main(
        [
            "pipeline",
            "--pretrain",
            QUICKSTART,
            "--pretrain",
            str(SMOKE),
            "--linear_probe",
            QUICKSTART,
            "--linear_probe",
            str(SMOKE),
            "--linear_probe.model.freeze_backbone=true",
            "--probe",
            "-1",
            "--probe.data.train_size",
            "40",
            "--probe.baseline",
            "none",
            "--probe.max_iter",
            "20",
            "--checkpoint",
            "last",
            "--runs_dir",
            str(runs),
            "--experiment",
            "transfer",
        ]
    )
    assert code == 0
    (summary_path,) = (runs / "transfer").glob("*/summary.json")
    summary = json.loads(summary_path.read_text())
    assert summary["status"] == "finished" and summary["subcommand"] == "pipeline"
    assert set(summary["stages"]) == {"pretrain", "linear_probe", "probe"}
    for key in ("pretrain/test/acc", "linear_probe/test/acc", "probe/test_acc"):
        assert 0.0 <= summary["metrics"][key] <= 1.0
    pretrain_run = Path(summary["stages"]["pretrain"]["run_dir"])
    probe_config = json.loads((Path(summary["stages"]["linear_probe"]["run_dir"]) / "summary.json").read_text())
    assert probe_config["model"]["class"] == "ImageClassifier"
    tested = (Path(summary["stages"]["linear_probe"]["run_dir"]) / "config.yaml").read_text()
    assert (
        str(pretrain_run / "checkpoints" / "last.ckpt") in tested
    )  # the probe started from the pretraining checkpoint
    assert list(summary_path.parent.glob("wandb/offline-run-*")), "the pipeline's metrics go to a W&B run"


def test_stage_settings_become_nested_config_sections():
    """The pipeline's W&B config holds `pretrain.model.preset` nested, the key a dashboard panel can address."""
    from vitlight.tools.pipeline import nested_overrides

    args = parse(["--pretrain", QUICKSTART, "--pretrain.model.preset=igpt-tiny", "--pretrain.trainer.max_epochs=8"])
    args.overrides["pretrain"].append("--data.data_dir=[unclosed")
    assert nested_overrides(args) == {
        "pretrain": {"model": {"preset": "igpt-tiny"}, "trainer": {"max_epochs": 8}, "data": {"data_dir": "[unclosed"}}
    }
