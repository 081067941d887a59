"""Experiment and sweep names become folder names: each must be one safe path component."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from tests.conftest import EXPERIMENTS, SMOKE
from vitlight.cli import main

ESCAPES = ["../../../x", "/tmp/absolute", ".."]


def one_error_line(capsys: pytest.CaptureFixture) -> str:
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("vitlight: error:")]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


@pytest.mark.parametrize("name", ESCAPES)
def test_an_experiment_name_that_is_not_one_folder_is_refused(name: str, tmp_path: Path, capsys):
    runs = tmp_path / "deep" / "runs"
    args = ["fit", "--config", str(EXPERIMENTS / "quickstart.yaml"), "--config", str(SMOKE), "--runs_dir", str(runs)]
    assert main([*args, "--experiment", name]) == 2
    line = one_error_line(capsys)
    assert f"experiment {name!r} is not a single folder name" in line
    assert not (tmp_path / "deep").exists() and not Path("/tmp/absolute").exists()


def test_an_experiment_name_from_a_shared_yaml_is_checked_too(tmp_path: Path, capsys):
    shared = tmp_path / "shared.yaml"
    shared.write_text("experiment: ../../escaped\n")
    args = ["fit", "--config", str(EXPERIMENTS / "quickstart.yaml"), "--config", str(shared), "--config", str(SMOKE)]
    assert main([*args, "--runs_dir", str(tmp_path / "runs")]) == 2
    assert "'../../escaped' is not a single folder name" in one_error_line(capsys)


@pytest.mark.parametrize("name", ["../../x", "/abs", "a/b"])
def test_a_sweep_name_that_is_not_one_folder_is_refused(name: str, tmp_path: Path, capsys):
    path = tmp_path / "sweep.yaml"
    config = {
        "name": name,
        "method": "grid",
        "metric": {"name": "test/acc", "goal": "maximize"},
        "parameters": {"seed_everything": {"values": [0]}},
        "command": ["${env}", "${interpreter}", "-m", "vitlight", "fit", "--config", str(SMOKE), "${args}"],
    }
    path.write_text(yaml.safe_dump(config))
    assert main(["sweep", str(path), "--sweeps_dir", str(tmp_path / "deep" / "sweeps")]) == 2
    assert f"name {name!r} is not a single folder name" in one_error_line(capsys)
    assert not (tmp_path / "deep").exists()
