"""`vitlight fit` end to end on a tiny real image folder: the run folder, summary.json, W&B offline run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml

from tests.conftest import EXPERIMENTS, SMOKE, write_image_folder
from tests.helpers.wandb_records import exit_codes, run_config, run_ids
from vitlight.cli import main

TINY_VIT = EXPERIMENTS / "quickstart.yaml"


def fit_on_folder(data_dir: Path, runs_dir: Path, *extra: str) -> int:
    return main(
        [
            "fit",
            "--config",
            str(TINY_VIT),
            "--config",
            str(SMOKE),
            "--data",
            "ImageFolder",
            "--data.data_dir",
            str(data_dir),
            "--data.num_workers",
            "0",
            "--data.batch_size",
            "8",
            "--data.image_size",
            "14",
            "--runs_dir",
            str(runs_dir),
            *extra,
        ]
    )


@pytest.fixture()
def image_folder(tmp_path: Path) -> Path:
    return write_image_folder(tmp_path / "images", per_class=12, size=16)


def only_run(runs_dir: Path, experiment: str = "quickstart") -> Path:
    runs = sorted((runs_dir / experiment).iterdir())
    assert len(runs) == 1, runs
    return runs[0]


def test_fit_writes_the_run_folder(image_folder: Path, tmp_path: Path, capsys):
    assert fit_on_folder(image_folder, tmp_path / "runs") == 0
    run = only_run(tmp_path / "runs")
    assert (run / "config.yaml").is_file()
    assert (run / "checkpoints" / "last.ckpt").is_file()
    summary = json.loads((run / "summary.json").read_text())
    assert summary["status"] == "finished"
    assert summary["experiment"] == "quickstart" and summary["run_id"] == run.name
    assert summary["seed"] == 0
    assert summary["train_size"] == 32  # the smoke config's data.train_size
    counts = summary["data"]["class_counts"]
    assert set(counts) == {"cat", "dog", "frog"} and sorted(counts.values()) == [10, 11, 11]
    assert 0.0 <= summary["test"]["test/acc"] <= 1.0
    assert "val/acc" in summary["best_validation"]
    assert summary["tested_checkpoint"]["which"].startswith("best by val/acc")
    assert Path(summary["tested_checkpoint"]["path"]).parent == run / "checkpoints"
    assert {"torch", "lightning", "timm"} <= set(summary["packages"])
    assert summary["wall_time_s"] > 0
    # the linked data attributes reached the model without being written in the YAML
    config = yaml.safe_load((run / "config.yaml").read_text())
    assert "num_classes" not in config["model"]["init_args"]
    hparams = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)["hyper_parameters"]
    assert (hparams["num_classes"], hparams["image_size"], hparams["channels"]) == (3, 14, 3)
    # W&B: one offline run, whose config has the nested sections, closed with exit code 0
    wandb_files = list((run / "wandb").glob("offline-run-*/run-*.wandb"))
    assert len(wandb_files) == 1
    wandb_config = run_config(wandb_files[0])
    assert wandb_config["model"]["init_args"]["model_kwargs"]["patch_size"] == 7
    assert wandb_config["data"]["class_path"].endswith("ImageFolder")
    assert wandb_config["trainer"]["max_epochs"] == 1
    assert run_ids(wandb_files[0]) == {summary["wandb_run_id"]}
    assert exit_codes(wandb_files[0]) == [0]
    assert "offline" in capsys.readouterr().err
    # the checkpoint carries the run config and loads without unpickling code
    checkpoint = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)
    assert checkpoint["vitlight_config"]["data"]["init_args"]["data_dir"] == str(image_folder)


def test_the_same_experiment_twice_in_a_row(image_folder: Path, tmp_path: Path):
    assert fit_on_folder(image_folder, tmp_path / "runs") == 0
    assert fit_on_folder(image_folder, tmp_path / "runs") == 0
    runs = sorted((tmp_path / "runs" / "quickstart").iterdir())
    assert len(runs) == 2
    assert all(json.loads((run / "summary.json").read_text())["status"] == "finished" for run in runs)


def test_wandb_disabled(image_folder: Path, tmp_path: Path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "disabled")
    assert fit_on_folder(image_folder, tmp_path / "runs") == 0
    run = only_run(tmp_path / "runs")
    assert not list(run.glob("wandb/*-run-*"))
    assert json.loads((run / "summary.json").read_text())["status"] == "finished"


def test_a_run_that_fails_its_start_checks_leaves_no_folder(image_folder: Path, tmp_path: Path):
    # a data folder without a test split fails in set-up, before the run has started: nothing stays behind
    # (a run that fails after its start is marked failed: tests/test_reliability.py, the non-finite loss)
    (image_folder / "test").rename(image_folder / "elsewhere")
    code = fit_on_folder(image_folder, tmp_path / "runs")
    assert code == 2
    assert not list((tmp_path / "runs" / "quickstart").glob("*"))


def test_print_config_round_trip(tmp_path: Path, capsys):
    args = ["fit", "--config", str(TINY_VIT), "--trainer.max_epochs", "7", "--data.batch_size", "16"]
    with pytest.raises(SystemExit) as exit_:
        main([*args, "--print_config"])
    assert exit_.value.code == 0
    printed = capsys.readouterr().out
    resolved = tmp_path / "resolved.yaml"
    resolved.write_text(printed)
    with pytest.raises(SystemExit):
        main(["fit", "--config", str(resolved), "--print_config"])
    again = capsys.readouterr().out
    assert yaml.safe_load(again) == yaml.safe_load(printed)
    assert yaml.safe_load(printed)["trainer"]["max_epochs"] == 7
    assert yaml.safe_load(printed)["data"]["init_args"]["batch_size"] == 16


def test_shared_sections_resolve_from_any_working_directory(tmp_path: Path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit):
        main(["fit", "--config", str(TINY_VIT), "--print_config"])
    printed = yaml.safe_load(capsys.readouterr().out)
    logger = printed["trainer"]["logger"]
    assert (logger[0] if isinstance(logger, list) else logger)["class_path"].endswith("WandbLogger")
    assert printed["trainer"]["callbacks"][0]["init_args"]["monitor"] == "val/acc"


def test_stacked_configs_last_wins(tmp_path: Path, capsys):
    override = tmp_path / "override.yaml"
    override.write_text("trainer:\n  max_epochs: 3\n")
    with pytest.raises(SystemExit):
        main(["fit", "--config", str(TINY_VIT), "--config", str(SMOKE), "--config", str(override), "--print_config"])
    printed = yaml.safe_load(capsys.readouterr().out)
    assert printed["trainer"]["max_epochs"] == 3
    assert printed["trainer"]["limit_train_batches"] == 2  # from the smoke config, still there
