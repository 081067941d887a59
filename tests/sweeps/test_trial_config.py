"""A trial under a W&B sweep: its W&B config holds the full resolved config under keys the sweep did not lock."""

from __future__ import annotations

from pathlib import Path

import yaml

from tests.conftest import EXPERIMENTS, SMOKE, run_vitlight
from tests.helpers.wandb_records import run_config


def test_sweep_locked_keys_stay_and_the_resolved_config_is_complete(tmp_path: Path):
    # what W&B's agent hands a trial: the parameters in a file that wandb.init reads and locks
    params = tmp_path / "sweep-params.yaml"
    params.write_text(
        yaml.safe_dump(
            {
                "model.optimizer.lr": {"value": 0.0005},  # a flat dotted name, as the sweep files here use
                "data": {"value": {"batch_size": 8}},  # a nested block: the locked key holds only the searched part
            }
        )
    )
    result = run_vitlight(
        "fit",
        "--config",
        str(EXPERIMENTS / "quickstart.yaml"),
        "--config",
        str(SMOKE),
        "--data={'batch_size': 8}",
        "--model.optimizer.lr=0.0005",
        "--runs_dir",
        str(tmp_path / "runs"),
        cwd=tmp_path,
        env={"WANDB_SWEEP_PARAM_PATH": str(params), "WANDB_MODE": "offline"},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "was locked by" not in result.stderr
    (run_file,) = (tmp_path / "runs" / "quickstart").glob("*/wandb/offline-run-*/run-*.wandb")
    config = run_config(run_file)
    assert config["model.optimizer.lr"] == 0.0005 and config["data"] == {"batch_size": 8}  # the sweep's, as locked
    assert config["model"]["init_args"]["optimizer"]["init_args"]["lr"] == 0.0005  # full, resolved sections
    assert config["model"]["init_args"]["model_name"] == "vit_tiny_patch16_224"
    assert config["trainer"]["max_epochs"] == 1 and "seed_everything" in config
    assert config["resolved"]["data"]["class_path"] == "vitlight.data.EmbeddedDigits"
    assert config["resolved"]["data"]["init_args"]["batch_size"] == 8
